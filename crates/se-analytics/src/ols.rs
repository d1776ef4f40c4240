//! Ordinary least squares on a table with numeric and categorical columns.
//!
//! Column kinds are decided on the training table: a column is numeric when at
//! least half of its non-empty cells parse as numbers, and categorical
//! otherwise. A numeric column's other cells are then reported as invalid
//! numbers, not silently read as categories. Columns named in the ordinal map
//! or in `categorical` are always categorical.
//!
//! Categorical columns are encoded in one of two ways:
//! - one-hot: one 0/1 column per level except the first level seen, which is
//!   the baseline absorbed by the intercept (keeping it would make the dummies
//!   sum to the intercept column);
//! - ordinal: one column of codes, taken from the ordinal map when the column
//!   has an entry, else 1, 2, 3… in order of first appearance.
//!
//! A category in the test table that the training table lacks is an error
//! ([`AnalyticsError::UnseenCategory`]): the model has no coefficient for it.

use std::collections::HashSet;
use std::str::FromStr;

use nalgebra::{DMatrix, DVector};
use serde::Serialize;

use crate::error::{AnalyticsError, Result};
use crate::linear::LeastSquaresFit;
use crate::metrics::{r_squared, ErrorMetrics};
use crate::table::{parse_number, Table};

/// Encoding of categorical columns that have no ordinal-map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// One 0/1 column per level, first level dropped.
    #[default]
    OneHot,
    /// One column of integer codes in order of first appearance.
    Ordinal,
}

/// Explicit ordinal codes: per column, a code for each level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrdinalMap {
    entries: Vec<(String, Vec<(String, f64)>)>,
}

impl OrdinalMap {
    fn levels(&self, column: &str) -> Option<&[(String, f64)]> {
        self.entries
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, levels)| levels.as_slice())
    }

    /// Column names that have an entry.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, _)| name.as_str())
    }
}

/// Parses `Column=LevelA:1,LevelB:2;Other column=X:0,Y:1`. Names may contain
/// spaces; the code is what follows the last `:` of each level.
impl FromStr for OrdinalMap {
    type Err = AnalyticsError;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = |part: &str, reason: &str| AnalyticsError::InvalidOrdinalMap {
            part: part.to_string(),
            reason: reason.to_string(),
        };
        let mut entries: Vec<(String, Vec<(String, f64)>)> = Vec::new();
        for part in text
            .split(';')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (column, levels_text) = part
                .split_once('=')
                .ok_or_else(|| invalid(part, "missing \"=\" after the column name"))?;
            let column = column.trim();
            if column.is_empty() {
                return Err(invalid(part, "the column name is empty"));
            }
            if entries.iter().any(|(name, _)| name == column) {
                return Err(invalid(part, "the column appears twice"));
            }
            let mut levels: Vec<(String, f64)> = Vec::new();
            for level_text in levels_text
                .split(',')
                .map(str::trim)
                .filter(|level| !level.is_empty())
            {
                let (level, code) = level_text
                    .rsplit_once(':')
                    .ok_or_else(|| invalid(part, "a level has no \":code\""))?;
                let level = level.trim();
                let code: f64 = code
                    .trim()
                    .parse()
                    .ok()
                    .filter(|code: &f64| code.is_finite())
                    .ok_or_else(|| invalid(part, "a code is not a number"))?;
                if levels.iter().any(|(name, _)| name == level) {
                    return Err(invalid(part, "a level appears twice"));
                }
                levels.push((level.to_string(), code));
            }
            if levels.is_empty() {
                return Err(invalid(part, "the column has no levels"));
            }
            entries.push((column.to_string(), levels));
        }
        Ok(Self { entries })
    }
}

/// Target column and encoding options of a table regression.
#[derive(Debug, Clone, Default)]
pub struct TableRegressionOptions {
    pub target: String,
    pub encoding: Encoding,
    pub ordinal_map: OrdinalMap,
    /// Columns to treat as categorical even if their cells are numbers.
    pub categorical: Vec<String>,
}

#[derive(Debug, Clone)]
enum ColumnEncoder {
    Numeric {
        name: String,
    },
    /// `levels[0]` is the baseline and gets no column.
    OneHot {
        name: String,
        levels: Vec<String>,
    },
    Ordinal {
        name: String,
        codes: Vec<(String, f64)>,
        from_map: bool,
    },
}

impl ColumnEncoder {
    fn name(&self) -> &str {
        match self {
            ColumnEncoder::Numeric { name }
            | ColumnEncoder::OneHot { name, .. }
            | ColumnEncoder::Ordinal { name, .. } => name,
        }
    }

    fn parameter_names(&self) -> Vec<String> {
        match self {
            ColumnEncoder::OneHot { name, levels } => levels
                .iter()
                .skip(1)
                .map(|level| format!("{name}={level}"))
                .collect(),
            other => vec![other.name().to_string()],
        }
    }

    fn write(&self, cell: &str, line: u64, output: &mut Vec<f64>) -> Result<()> {
        match self {
            ColumnEncoder::Numeric { name } => output.push(parse_number(cell, line, name)?),
            ColumnEncoder::OneHot { name, levels } => {
                let index = level_index(levels.iter().map(String::as_str), cell, line, name)?;
                output
                    .extend((1..levels.len()).map(|level| if level == index { 1.0 } else { 0.0 }));
            }
            ColumnEncoder::Ordinal {
                name,
                codes,
                from_map,
            } => {
                if cell.is_empty() {
                    return Err(AnalyticsError::MissingValue {
                        line,
                        column: name.clone(),
                    });
                }
                match codes.iter().find(|(level, _)| level == cell) {
                    Some((_, code)) => output.push(*code),
                    None if *from_map => {
                        return Err(AnalyticsError::UnmappedCategory {
                            line,
                            column: name.clone(),
                            value: cell.to_string(),
                        })
                    }
                    None => {
                        return Err(AnalyticsError::UnseenCategory {
                            line,
                            column: name.clone(),
                            value: cell.to_string(),
                            known: codes.iter().map(|(level, _)| level.clone()).collect(),
                        })
                    }
                }
            }
        }
        Ok(())
    }
}

fn level_index<'a>(
    levels: impl Iterator<Item = &'a str> + Clone,
    cell: &str,
    line: u64,
    column: &str,
) -> Result<usize> {
    if cell.is_empty() {
        return Err(AnalyticsError::MissingValue {
            line,
            column: column.to_string(),
        });
    }
    levels
        .clone()
        .position(|level| level == cell)
        .ok_or_else(|| AnalyticsError::UnseenCategory {
            line,
            column: column.to_string(),
            value: cell.to_string(),
            known: levels.map(str::to_string).collect(),
        })
}

/// Maps table rows to design-matrix rows; built from the training table and
/// reused unchanged on test tables.
#[derive(Debug, Clone)]
struct TableEncoder {
    target: String,
    columns: Vec<ColumnEncoder>,
}

impl TableEncoder {
    fn from_training(table: &Table, options: &TableRegressionOptions) -> Result<Self> {
        let target_index = table.column_index(&options.target, "--target")?;
        for column in options.ordinal_map.columns() {
            let index = table.column_index(column, "--ordinal-map")?;
            if index == target_index {
                return Err(AnalyticsError::InvalidOrdinalMap {
                    part: column.to_string(),
                    reason: "the target column cannot be encoded".to_string(),
                });
            }
        }
        for column in &options.categorical {
            table.column_index(column, "--categorical")?;
        }

        let mut columns = Vec::new();
        for (index, name) in table.headers().iter().enumerate() {
            if index == target_index {
                continue;
            }
            let cells = || {
                table
                    .rows()
                    .iter()
                    .map(move |row| row.cells[index].as_str())
            };
            let encoder = if let Some(levels) = options.ordinal_map.levels(name) {
                ColumnEncoder::Ordinal {
                    name: name.clone(),
                    codes: levels.to_vec(),
                    from_map: true,
                }
            } else if options.categorical.contains(name) || !is_mostly_numeric(cells()) {
                let levels = levels_in_order(cells());
                match options.encoding {
                    Encoding::OneHot => ColumnEncoder::OneHot {
                        name: name.clone(),
                        levels,
                    },
                    Encoding::Ordinal => ColumnEncoder::Ordinal {
                        name: name.clone(),
                        codes: levels
                            .into_iter()
                            .zip(1..)
                            .map(|(level, code)| (level, f64::from(code)))
                            .collect(),
                        from_map: false,
                    },
                }
            } else {
                ColumnEncoder::Numeric { name: name.clone() }
            };
            columns.push(encoder);
        }
        Ok(Self {
            target: options.target.clone(),
            columns,
        })
    }

    /// Names of the design-matrix columns, intercept first.
    fn parameter_names(&self) -> Vec<String> {
        std::iter::once(INTERCEPT.to_string())
            .chain(self.columns.iter().flat_map(ColumnEncoder::parameter_names))
            .collect()
    }

    /// Builds the design matrix (intercept column first) and the target vector.
    /// `option` names where the table came from, for missing-column errors.
    fn encode(&self, table: &Table, option: &str) -> Result<(DMatrix<f64>, DVector<f64>)> {
        let target_index = table.column_index(&self.target, option)?;
        let indices = self
            .columns
            .iter()
            .map(|column| table.column_index(column.name(), option))
            .collect::<Result<Vec<_>>>()?;
        let width = self.parameter_names().len();
        let mut values = Vec::with_capacity(table.rows().len() * width);
        let mut targets = Vec::with_capacity(table.rows().len());
        for row in table.rows() {
            values.push(1.0);
            for (column, &index) in self.columns.iter().zip(&indices) {
                column.write(&row.cells[index], row.line, &mut values)?;
            }
            targets.push(parse_number(
                &row.cells[target_index],
                row.line,
                &self.target,
            )?);
        }
        Ok((
            DMatrix::from_row_slice(table.rows().len(), width, &values),
            DVector::from_vec(targets),
        ))
    }
}

const INTERCEPT: &str = "(intercept)";

fn is_mostly_numeric<'a>(cells: impl Iterator<Item = &'a str>) -> bool {
    let (mut numeric, mut non_empty) = (0usize, 0usize);
    for cell in cells.filter(|cell| !cell.is_empty()) {
        non_empty += 1;
        if cell.parse::<f64>().is_ok() {
            numeric += 1;
        }
    }
    non_empty > 0 && 2 * numeric >= non_empty
}

fn levels_in_order<'a>(cells: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    cells
        .filter(|cell| !cell.is_empty() && seen.insert(*cell))
        .map(str::to_string)
        .collect()
}

/// A named coefficient of the fitted model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coefficient {
    /// Column name, or `Column=Level` for a one-hot level.
    pub name: String,
    pub value: f64,
}

/// Encoding of one categorical column, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoricalSummary {
    pub column: String,
    /// Levels with their codes (ordinal) or 0 for the one-hot baseline and 1
    /// for the other levels.
    pub levels: Vec<(String, f64)>,
    pub one_hot: bool,
}

/// Fit quality on one table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    pub rows: usize,
    pub mse: f64,
    pub rmse: f64,
    pub mae: f64,
    /// `None` when the target is constant on this table.
    pub r_squared: Option<f64>,
}

/// A fitted least-squares model of one table column on the others.
#[derive(Debug, Clone)]
pub struct TableModel {
    encoder: TableEncoder,
    fit: LeastSquaresFit,
    training: Evaluation,
}

impl TableModel {
    /// Encodes `train` and fits the target on all other columns plus an intercept.
    ///
    /// # Errors
    /// Missing columns, invalid or missing cells (with line and column),
    /// fewer rows than parameters, or collinear columns.
    pub fn fit(train: &Table, options: &TableRegressionOptions) -> Result<Self> {
        let encoder = TableEncoder::from_training(train, options)?;
        let (x, y) = encoder.encode(train, train.source_name())?;
        let fit = LeastSquaresFit::fit(&x, &y, &encoder.parameter_names())?;
        let training = evaluate(&fit, &x, &y);
        Ok(Self {
            encoder,
            fit,
            training,
        })
    }

    pub fn target(&self) -> &str {
        &self.encoder.target
    }

    pub fn intercept(&self) -> f64 {
        self.fit.coefficients()[0]
    }

    /// Coefficients in column order, without the intercept.
    pub fn coefficients(&self) -> Vec<Coefficient> {
        self.encoder
            .parameter_names()
            .into_iter()
            .zip(self.fit.coefficients().iter())
            .skip(1)
            .map(|(name, &value)| Coefficient { name, value })
            .collect()
    }

    /// Encoding of each categorical column.
    pub fn categorical_columns(&self) -> Vec<CategoricalSummary> {
        self.encoder
            .columns
            .iter()
            .filter_map(|column| match column {
                ColumnEncoder::Numeric { .. } => None,
                ColumnEncoder::OneHot { name, levels } => Some(CategoricalSummary {
                    column: name.clone(),
                    levels: levels
                        .iter()
                        .enumerate()
                        .map(|(i, level)| (level.clone(), if i == 0 { 0.0 } else { 1.0 }))
                        .collect(),
                    one_hot: true,
                }),
                ColumnEncoder::Ordinal { name, codes, .. } => Some(CategoricalSummary {
                    column: name.clone(),
                    levels: codes.clone(),
                    one_hot: false,
                }),
            })
            .collect()
    }

    /// Fit quality on the training table.
    pub fn training_evaluation(&self) -> Evaluation {
        self.training
    }

    /// Fit quality on another table with the same columns (in any order).
    pub fn evaluate(&self, table: &Table) -> Result<Evaluation> {
        let (x, y) = self.encoder.encode(table, table.source_name())?;
        Ok(evaluate(&self.fit, &x, &y))
    }
}

fn evaluate(fit: &LeastSquaresFit, x: &DMatrix<f64>, y: &DVector<f64>) -> Evaluation {
    let predicted = fit.predict(x);
    let metrics = ErrorMetrics::compute(y.as_slice(), predicted.as_slice());
    Evaluation {
        rows: y.len(),
        mse: metrics.map_or(0.0, |m| m.mse),
        rmse: metrics.map_or(0.0, |m| m.rmse),
        mae: metrics.map_or(0.0, |m| m.mae),
        r_squared: r_squared(y.as_slice(), predicted.as_slice()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact coefficients of the generated target.
    const INTERCEPT_TRUE: f64 = 250.0;
    const AREA_TRUE: f64 = 0.8;
    const PEOPLE_TRUE: f64 = -3.5;
    const OFFICE_TRUE: f64 = 120.0;
    const PLANT_TRUE: f64 = 410.0;
    const WEEKEND_TRUE: f64 = -60.0;

    /// Builds a table whose target is an exact linear function of its columns:
    /// target = 250 + 0.8·area − 3.5·people + 120·[office] + 410·[plant] − 60·[weekend].
    fn generated_csv(rows: usize, offset: usize) -> String {
        let kinds = ["home", "office", "plant"];
        let days = ["weekday", "weekend"];
        let mut csv = String::from("Kind,Area,People,Day,Load\n");
        for i in offset..offset + rows {
            let kind = kinds[i % 3];
            let day = days[(i / 3) % 2];
            let area = 100.0 + ((i * 37) % 900) as f64;
            let people = ((i * 13) % 50) as f64;
            let kind_effect = match kind {
                "office" => OFFICE_TRUE,
                "plant" => PLANT_TRUE,
                _ => 0.0,
            };
            let day_effect = if day == "weekend" { WEEKEND_TRUE } else { 0.0 };
            let load =
                INTERCEPT_TRUE + AREA_TRUE * area + PEOPLE_TRUE * people + kind_effect + day_effect;
            csv.push_str(&format!("{kind},{area},{people},{day},{load}\n"));
        }
        csv
    }

    fn table(csv: &str) -> Table {
        Table::from_reader(csv.as_bytes(), "generated.csv").unwrap()
    }

    fn options() -> TableRegressionOptions {
        TableRegressionOptions {
            target: "Load".to_string(),
            ..Default::default()
        }
    }

    fn coefficient(model: &TableModel, name: &str) -> f64 {
        model
            .coefficients()
            .into_iter()
            .find(|c| c.name == name)
            .map(|c| c.value)
            .unwrap()
    }

    /// Exact data in f64: coefficients agree to about 1e-9 relative error.
    const TOLERANCE: f64 = 1e-6;

    #[test]
    fn one_hot_fit_recovers_coefficients() {
        let model = TableModel::fit(&table(&generated_csv(60, 0)), &options()).unwrap();
        assert!(
            (model.intercept() - INTERCEPT_TRUE).abs() < TOLERANCE,
            "intercept {}",
            model.intercept()
        );
        assert!((coefficient(&model, "Area") - AREA_TRUE).abs() < TOLERANCE);
        assert!((coefficient(&model, "People") - PEOPLE_TRUE).abs() < TOLERANCE);
        assert!((coefficient(&model, "Kind=office") - OFFICE_TRUE).abs() < TOLERANCE);
        assert!((coefficient(&model, "Kind=plant") - PLANT_TRUE).abs() < TOLERANCE);
        assert!((coefficient(&model, "Day=weekend") - WEEKEND_TRUE).abs() < TOLERANCE);
    }

    #[test]
    fn one_hot_drops_first_level() {
        let model = TableModel::fit(&table(&generated_csv(60, 0)), &options()).unwrap();
        let names: Vec<String> = model.coefficients().into_iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            vec!["Kind=office", "Kind=plant", "Area", "People", "Day=weekend"]
        );
    }

    #[test]
    fn ordinal_map_fit_recovers_coefficients() {
        // With codes home=0, office=1, plant=2 the kind effect is not linear in
        // the code, so use a map that makes it linear: 0, 120, 410 scaled by 10.
        let map: OrdinalMap = "Kind=home:0,office:12,plant:41;Day=weekday:0,weekend:1"
            .parse()
            .unwrap();
        let options = TableRegressionOptions {
            encoding: Encoding::Ordinal,
            ordinal_map: map,
            ..options()
        };
        let model = TableModel::fit(&table(&generated_csv(60, 0)), &options).unwrap();
        assert!((coefficient(&model, "Kind") - 10.0).abs() < TOLERANCE);
        assert!((coefficient(&model, "Day") - WEEKEND_TRUE).abs() < TOLERANCE);
        assert!((model.intercept() - INTERCEPT_TRUE).abs() < TOLERANCE);
    }

    #[test]
    fn exact_fit_has_zero_test_error() {
        let model = TableModel::fit(&table(&generated_csv(60, 0)), &options()).unwrap();
        let evaluation = model.evaluate(&table(&generated_csv(20, 500))).unwrap();
        assert!(evaluation.mse < 1e-12, "test MSE {}", evaluation.mse);
        assert!((evaluation.r_squared.unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn default_ordinal_codes_follow_first_appearance() {
        let options = TableRegressionOptions {
            encoding: Encoding::Ordinal,
            ..options()
        };
        let model = TableModel::fit(&table(&generated_csv(60, 0)), &options).unwrap();
        let kind = model
            .categorical_columns()
            .into_iter()
            .find(|c| c.column == "Kind")
            .unwrap();
        let expected = vec![
            ("home".to_string(), 1.0),
            ("office".to_string(), 2.0),
            ("plant".to_string(), 3.0),
        ];
        assert_eq!(kind.levels, expected);
    }

    #[test]
    fn missing_target_column_rejected() {
        let options = TableRegressionOptions {
            target: "Power".to_string(),
            ..options()
        };
        let error = TableModel::fit(&table(&generated_csv(10, 0)), &options).unwrap_err();
        assert!(
            matches!(error, AnalyticsError::ColumnNotFound { ref column, .. } if column == "Power")
        );
    }

    #[test]
    fn text_in_numeric_column_names_cell() {
        let mut csv = generated_csv(10, 0);
        csv.push_str("home,12O,3,weekday,400\n");
        let error = TableModel::fit(&table(&csv), &options()).unwrap_err();
        match error {
            AnalyticsError::InvalidNumber {
                line,
                column,
                value,
            } => {
                assert_eq!(line, 12);
                assert_eq!(column, "Area");
                assert_eq!(value, "12O");
            }
            other => panic!("expected InvalidNumber, got {other:?}"),
        }
    }

    #[test]
    fn unseen_test_category_rejected() {
        let model = TableModel::fit(&table(&generated_csv(60, 0)), &options()).unwrap();
        let test = table("Kind,Area,People,Day,Load\nshop,100,1,weekday,300\n");
        let error = model.evaluate(&test).unwrap_err();
        assert!(
            matches!(error, AnalyticsError::UnseenCategory { ref value, line: 2, .. } if value == "shop")
        );
    }

    #[test]
    fn unmapped_category_rejected() {
        let map: OrdinalMap = "Kind=home:1,office:2".parse().unwrap();
        let options = TableRegressionOptions {
            ordinal_map: map,
            ..options()
        };
        let error = TableModel::fit(&table(&generated_csv(10, 0)), &options).unwrap_err();
        assert!(
            matches!(error, AnalyticsError::UnmappedCategory { ref value, .. } if value == "plant")
        );
    }

    #[test]
    fn too_few_rows_rejected() {
        // Six parameters (intercept, two kind dummies, area, people, weekend).
        let error = TableModel::fit(&table(&generated_csv(5, 0)), &options()).unwrap_err();
        assert!(matches!(
            error,
            AnalyticsError::TooFewRows {
                rows: 5,
                parameters: 6
            }
        ));
    }

    #[test]
    fn constant_ordinal_column_is_collinear() {
        let csv = "Site,Area,Load\nA,1,2\nA,2,4\nA,3,6\n";
        let options = TableRegressionOptions {
            encoding: Encoding::Ordinal,
            ..options()
        };
        let options = TableRegressionOptions {
            target: "Load".to_string(),
            ..options
        };
        let error = TableModel::fit(&table(csv), &options).unwrap_err();
        assert!(
            matches!(error, AnalyticsError::Collinear { ref columns } if columns.contains(&"Site".to_string()))
        );
    }

    #[test]
    fn test_columns_may_be_reordered() {
        let model = TableModel::fit(&table(&generated_csv(60, 0)), &options()).unwrap();
        let test = table("Load,Day,People,Area,Kind\n330,weekday,0,100,home\n");
        let evaluation = model.evaluate(&test).unwrap();
        assert!(evaluation.mse < 1e-12, "test MSE {}", evaluation.mse);
    }

    #[test]
    fn ordinal_map_parses_spaces_in_names() {
        let map: OrdinalMap = "Day of Week=Weekday:1, Weekend:0".parse().unwrap();
        assert_eq!(
            map.levels("Day of Week").unwrap()[1],
            ("Weekend".to_string(), 0.0)
        );
    }

    #[test]
    fn ordinal_map_without_code_rejected() {
        let error = "Day=Weekday".parse::<OrdinalMap>().unwrap_err();
        assert!(matches!(error, AnalyticsError::InvalidOrdinalMap { .. }));
    }
}
