//! `smart-energy model`: regression on tables.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use se_analytics::ols::{Evaluation, TableModel};
use se_analytics::{AnalyticsError, Encoding, OrdinalMap, Table, TableRegressionOptions};
use se_core::Lang;

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Fit ordinary least squares of one column on all the others and print
    /// the coefficients with training (and test) errors.
    Fit(FitArgs),
}

#[derive(Debug, Args)]
pub struct FitArgs {
    /// Training table: CSV with a header line.
    file: PathBuf,
    /// Column to predict; every other column is a predictor.
    #[arg(long)]
    target: String,
    /// Table to evaluate the fitted model on, with the same columns in any order.
    /// A category it has that the training table lacks is an error.
    #[arg(long)]
    test: Option<PathBuf>,
    /// Encoding of text columns that have no --ordinal-map entry: one 0/1 column
    /// per level except the first (onehot), or codes 1, 2, 3… in order of first
    /// appearance (ordinal).
    #[arg(long, value_enum, default_value_t = EncodingArg::Onehot)]
    encoding: EncodingArg,
    /// Explicit codes for categorical columns, such as
    /// "Building=Residential:1,Commercial:2;Day of Week=Weekday:1,Weekend:0".
    /// Columns listed here always use these codes.
    #[arg(long)]
    ordinal_map: Option<String>,
    /// Comma-separated columns to treat as categories even though their cells are numbers.
    #[arg(long, value_delimiter = ',')]
    categorical: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EncodingArg {
    Onehot,
    Ordinal,
}

pub fn run(command: ModelCommand) -> anyhow::Result<()> {
    let lang = operator_lang();
    match command {
        ModelCommand::Fit(args) => fit(&args, lang),
    }
}

fn fit(args: &FitArgs, lang: Lang) -> anyhow::Result<()> {
    let localize = |error: AnalyticsError| anyhow!(error.message(lang));
    let ordinal_map = match &args.ordinal_map {
        Some(text) => text.parse::<OrdinalMap>().map_err(localize)?,
        None => OrdinalMap::default(),
    };
    let options = TableRegressionOptions {
        target: args.target.clone(),
        encoding: match args.encoding {
            EncodingArg::Onehot => Encoding::OneHot,
            EncodingArg::Ordinal => Encoding::Ordinal,
        },
        ordinal_map,
        categorical: args.categorical.clone(),
    };

    let train = read_table(&args.file, lang)?;
    let model = TableModel::fit(&train, &options).map_err(localize)?;
    let test = match &args.test {
        Some(path) => {
            let table = read_table(path, lang)?;
            Some(model.evaluate(&table).map_err(localize)?)
        }
        None => None,
    };
    let report = format_report(&model, test.as_ref(), lang)?;
    write_stdout(&report, lang)
}

fn read_table(path: &Path, lang: Lang) -> anyhow::Result<Table> {
    let file = open_file(path, lang)?;
    Table::from_reader(file, &path.display().to_string())
        .map_err(|error| anyhow!(error.message(lang)))
}

/// Opens an input file with a bilingual error naming the path.
pub(crate) fn open_file(path: &Path, lang: Lang) -> anyhow::Result<File> {
    File::open(path).map_err(|error| match lang {
        Lang::En => anyhow!("could not open {}: {error}; check the path", path.display()),
        Lang::Fr => anyhow!(
            "impossible d'ouvrir {} : {error} ; vérifiez le chemin",
            path.display()
        ),
    })
}

/// Language for operator messages, from `LC_ALL`, `LC_MESSAGES` or `LANG`
/// (first one set): French for `fr…` locales, English otherwise.
pub(crate) fn operator_lang() -> Lang {
    let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.is_empty())
        .unwrap_or_default();
    if locale.to_ascii_lowercase().starts_with("fr") {
        Lang::Fr
    } else {
        Lang::En
    }
}

/// Picks the English or French form of a label.
pub(crate) fn label(lang: Lang, english: &'static str, french: &'static str) -> &'static str {
    match lang {
        Lang::En => english,
        Lang::Fr => french,
    }
}

/// Writes a finished report to standard output. A closed pipe (as with
/// `| head`) ends the output quietly instead of failing.
pub(crate) fn write_stdout(text: &str, lang: Lang) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(match lang {
            Lang::En => anyhow!("could not write to standard output: {error}"),
            Lang::Fr => anyhow!("écriture sur la sortie standard impossible : {error}"),
        }),
        Ok(()) => Ok(()),
    }
}

/// Formats a number with six decimals, or in scientific notation when it is
/// too small for that to show anything.
pub(crate) fn format_number(value: f64) -> String {
    if value != 0.0 && value.abs() < 1e-3 {
        format!("{value:.3e}")
    } else {
        format!("{value:.6}")
    }
}

fn format_report(
    model: &TableModel,
    test: Option<&Evaluation>,
    lang: Lang,
) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    let training = model.training_evaluation();
    writeln!(
        out,
        "{}: {} ~ {} {}, {} {}",
        label(lang, "Model", "Modèle"),
        model.target(),
        model.coefficients().len(),
        label(lang, "predictors", "prédicteurs"),
        training.rows,
        label(lang, "training rows", "lignes d'entraînement"),
    )?;

    let categorical = model.categorical_columns();
    if !categorical.is_empty() {
        writeln!(
            out,
            "{}",
            label(lang, "Categorical columns:", "Colonnes catégorielles :")
        )?;
        for column in categorical {
            let levels: Vec<String> = if column.one_hot {
                column
                    .levels
                    .iter()
                    .map(|(level, _)| level.clone())
                    .collect()
            } else {
                column
                    .levels
                    .iter()
                    .map(|(level, code)| format!("{level}={code}"))
                    .collect()
            };
            let kind = if column.one_hot {
                label(lang, "one-hot, baseline", "one-hot, référence")
            } else {
                label(lang, "ordinal", "ordinal")
            };
            let baseline = if column.one_hot {
                format!(" {}", levels.first().cloned().unwrap_or_default())
            } else {
                String::new()
            };
            writeln!(
                out,
                "  {} ({kind}{baseline}): {}",
                column.column,
                levels.join(", ")
            )?;
        }
    }

    writeln!(out, "{}", label(lang, "Coefficients:", "Coefficients :"))?;
    let width = model
        .coefficients()
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(11);
    writeln!(
        out,
        "  {:<width$}  {:>18}",
        "(intercept)",
        format_number(model.intercept())
    )?;
    for coefficient in model.coefficients() {
        writeln!(
            out,
            "  {:<width$}  {:>18}",
            coefficient.name,
            format_number(coefficient.value)
        )?;
    }

    format_evaluation(
        &mut out,
        label(lang, "Train", "Entraînement"),
        &training,
        lang,
    )?;
    if let Some(test) = test {
        format_evaluation(&mut out, label(lang, "Test", "Test"), test, lang)?;
    }
    Ok(out)
}

fn format_evaluation(
    out: &mut String,
    name: &str,
    evaluation: &Evaluation,
    lang: Lang,
) -> std::fmt::Result {
    let r_squared = evaluation.r_squared.map_or_else(
        || {
            label(
                lang,
                "undefined (constant target)",
                "indéfini (cible constante)",
            )
            .to_string()
        },
        format_number,
    );
    writeln!(
        out,
        "{name}: {} {}, MSE {}, RMSE {}, MAE {}, R² {r_squared}",
        evaluation.rows,
        label(lang, "rows", "lignes"),
        format_number(evaluation.mse),
        format_number(evaluation.rmse),
        format_number(evaluation.mae),
    )?;
    Ok(())
}
