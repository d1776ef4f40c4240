use se_core::Lang;

/// Errors from table regression, series loading and forecasting.
///
/// `Display` gives the English message; [`AnalyticsError::message`] gives it in
/// the operator's language. Every message names the value that failed and
/// what to do next.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The CSV reader failed (bad quoting, unequal field counts, I/O).
    Csv(#[from] csv::Error),
    /// The file has a header but no data row.
    EmptyTable { source_name: String },
    /// A column named on the command line is not in the header.
    ColumnNotFound {
        column: String,
        option: String,
        available: Vec<String>,
    },
    /// A cell of a numeric column does not parse as a finite number.
    InvalidNumber {
        line: u64,
        column: String,
        value: String,
    },
    /// A cell that the model needs is empty.
    MissingValue { line: u64, column: String },
    /// A feature column has no value in any row.
    EmptyColumn { column: String },
    /// A test row has a category that the training rows do not have.
    UnseenCategory {
        line: u64,
        column: String,
        value: String,
        known: Vec<String>,
    },
    /// A category has no code in the ordinal map given for its column.
    UnmappedCategory {
        line: u64,
        column: String,
        value: String,
    },
    /// The `--ordinal-map` text does not follow `Column=Level:code,...;...`.
    InvalidOrdinalMap { part: String, reason: String },
    /// Fewer rows than parameters, so least squares has no unique solution.
    TooFewRows { rows: usize, parameters: usize },
    /// Some predictor columns are exact linear combinations of others.
    Collinear { columns: Vec<String> },
    /// A time cell does not parse with the given or default format.
    InvalidTimestamp {
        line: u64,
        value: String,
        format: Option<String>,
        reason: String,
    },
    /// The time zone name is not in the time zone database.
    UnknownTimeZone { name: String },
    /// A date on the command line does not parse.
    InvalidDate { value: String },
    /// The horizon is not a positive whole number of hours.
    InvalidHorizon { value: String },
    /// The prediction interval level is not strictly between 0 and 1.
    InvalidLevel { value: f64 },
    /// No row had a usable value.
    EmptySeries,
    /// The rows are spaced further apart than one hour.
    CoarserThanHourly { step_minutes: i64 },
    /// A model name on the command line is not known.
    UnknownModel { name: String, known: Vec<String> },
    /// The first backtest origin leaves less history than a model needs.
    InsufficientHistory {
        model: String,
        needed_hours: usize,
        available_hours: usize,
        earliest: String,
    },
    /// The start date leaves no full forecast horizon inside the data.
    NoBacktestWindows {
        from: String,
        last: String,
        horizon_hours: usize,
    },
    /// A forecasting library failed to fit or predict.
    ModelFailed { model: String, reason: String },
}

impl AnalyticsError {
    /// Formats the message in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        match lang {
            Lang::En => self.english(),
            Lang::Fr => self.french(),
        }
    }

    fn english(&self) -> String {
        use AnalyticsError::*;
        match self {
            Csv(error) => format!("could not read the CSV file: {error}; check quoting and that every row has as many fields as the header"),
            EmptyTable { source_name } => format!("{source_name} has no data rows; supply a header line followed by at least one row"),
            ColumnNotFound { column, option, available } => format!(
                "column \"{column}\" given by {option} was not found; available columns: {}; check the spelling and case",
                quote_list(available)
            ),
            InvalidNumber { line, column, value } => format!(
                "invalid number \"{value}\" at line {line}, column \"{column}\"; write a plain number such as 12.5 or remove the row"
            ),
            MissingValue { line, column } => {
                format!("missing value at line {line}, column \"{column}\"; fill the cell or remove the row")
            }
            EmptyColumn { column } => format!(
                "column \"{column}\" has no values; fill it or remove it from --feature-columns"
            ),
            UnseenCategory { line, column, value, known } => format!(
                "unknown category \"{value}\" at line {line}, column \"{column}\": the training rows only have {}; add rows with this category to the training file or remove the row",
                quote_list(known)
            ),
            UnmappedCategory { line, column, value } => format!(
                "category \"{value}\" at line {line}, column \"{column}\" has no code in --ordinal-map; add \"{value}:<code>\" to the entry for \"{column}\""
            ),
            InvalidOrdinalMap { part, reason } => format!(
                "invalid --ordinal-map entry \"{part}\": {reason}; write it as \"Column=LevelA:1,LevelB:2;Other column=X:0,Y:1\""
            ),
            TooFewRows { rows, parameters } => format!(
                "the training table has {rows} rows but the model has {parameters} parameters; supply at least {parameters} rows or use fewer columns"
            ),
            Collinear { columns } => format!(
                "columns {} are collinear (one is a linear combination of the others), so their coefficients are not unique; drop one of them",
                quote_list(columns)
            ),
            InvalidTimestamp { line, value, format, reason } => match format {
                Some(format) => format!(
                    "invalid time \"{value}\" at line {line} for format \"{format}\" ({reason}); fix --time-format, for example \"%m/%d/%y %H:%M\""
                ),
                None => format!(
                    "invalid time \"{value}\" at line {line} ({reason}); pass --time-format, for example \"%m/%d/%y %H:%M\", or use ISO 8601 such as 2017-01-31 13:00"
                ),
            },
            UnknownTimeZone { name } => format!(
                "unknown time zone \"{name}\"; use an IANA name such as UTC, Europe/Paris or Africa/Casablanca"
            ),
            InvalidDate { value } => format!("invalid date \"{value}\"; write it as YYYY-MM-DD, for example 2017-10-01"),
            InvalidHorizon { value } => format!(
                "invalid horizon \"{value}\"; give a positive whole number of hours such as 24h, 48h or 1d"
            ),
            InvalidLevel { value } => format!(
                "invalid prediction interval level {value}; give a fraction strictly between 0 and 1 such as 0.8 or 0.95"
            ),
            EmptySeries => "the file has no row with both a valid time and a value; check --time-column and --value-column".to_string(),
            CoarserThanHourly { step_minutes } => format!(
                "rows are {step_minutes} minutes apart, but forecasting works on hourly data; supply hourly or finer rows"
            ),
            UnknownModel { name, known } => format!(
                "unknown model \"{name}\"; choose from {}",
                quote_list(known)
            ),
            InsufficientHistory { model, needed_hours, available_hours, earliest } => format!(
                "model {model} needs {needed_hours} hours of history before the first origin but only {available_hours} are available; pass --from {earliest} or later"
            ),
            NoBacktestWindows { from, last, horizon_hours } => format!(
                "no {horizon_hours}-hour window starting at a midnight on or after {from} fits before the last hour of data ({last}); pass an earlier --from or a shorter --horizon"
            ),
            ModelFailed { model, reason } => format!("model {model} failed: {reason}; drop it from --models or check the data for long gaps"),
        }
    }

    fn french(&self) -> String {
        use AnalyticsError::*;
        match self {
            Csv(error) => format!("lecture du fichier CSV impossible : {error} ; vérifiez les guillemets et que chaque ligne a autant de champs que l'en-tête"),
            EmptyTable { source_name } => format!("{source_name} ne contient aucune ligne de données ; fournissez un en-tête suivi d'au moins une ligne"),
            ColumnNotFound { column, option, available } => format!(
                "colonne « {column} » donnée par {option} introuvable ; colonnes disponibles : {} ; vérifiez l'orthographe et la casse",
                quote_list(available)
            ),
            InvalidNumber { line, column, value } => format!(
                "nombre invalide « {value} » à la ligne {line}, colonne « {column} » ; écrivez un nombre simple comme 12.5 ou supprimez la ligne"
            ),
            MissingValue { line, column } => {
                format!("valeur manquante à la ligne {line}, colonne « {column} » ; remplissez la cellule ou supprimez la ligne")
            }
            EmptyColumn { column } => format!(
                "la colonne « {column} » n'a aucune valeur ; remplissez-la ou retirez-la de --feature-columns"
            ),
            UnseenCategory { line, column, value, known } => format!(
                "catégorie inconnue « {value} » à la ligne {line}, colonne « {column} » : les données d'entraînement n'ont que {} ; ajoutez des lignes de cette catégorie au fichier d'entraînement ou supprimez la ligne",
                quote_list(known)
            ),
            UnmappedCategory { line, column, value } => format!(
                "la catégorie « {value} » à la ligne {line}, colonne « {column} » n'a pas de code dans --ordinal-map ; ajoutez « {value}:<code> » à l'entrée de « {column} »"
            ),
            InvalidOrdinalMap { part, reason } => format!(
                "entrée --ordinal-map invalide « {part} » : {reason} ; écrivez-la sous la forme « Colonne=NiveauA:1,NiveauB:2;Autre colonne=X:0,Y:1 »"
            ),
            TooFewRows { rows, parameters } => format!(
                "la table d'entraînement a {rows} lignes mais le modèle a {parameters} paramètres ; fournissez au moins {parameters} lignes ou utilisez moins de colonnes"
            ),
            Collinear { columns } => format!(
                "les colonnes {} sont colinéaires (l'une est combinaison linéaire des autres), leurs coefficients ne sont donc pas uniques ; retirez l'une d'elles",
                quote_list(columns)
            ),
            InvalidTimestamp { line, value, format, reason } => match format {
                Some(format) => format!(
                    "heure invalide « {value} » à la ligne {line} pour le format « {format} » ({reason}) ; corrigez --time-format, par exemple « %m/%d/%y %H:%M »"
                ),
                None => format!(
                    "heure invalide « {value} » à la ligne {line} ({reason}) ; passez --time-format, par exemple « %m/%d/%y %H:%M », ou utilisez l'ISO 8601 comme 2017-01-31 13:00"
                ),
            },
            UnknownTimeZone { name } => format!(
                "fuseau horaire inconnu « {name} » ; utilisez un nom IANA comme UTC, Europe/Paris ou Africa/Casablanca"
            ),
            InvalidDate { value } => format!("date invalide « {value} » ; écrivez-la AAAA-MM-JJ, par exemple 2017-10-01"),
            InvalidHorizon { value } => format!(
                "horizon invalide « {value} » ; donnez un nombre entier positif d'heures comme 24h, 48h ou 1d"
            ),
            InvalidLevel { value } => format!(
                "niveau d'intervalle de prévision invalide {value} ; donnez une fraction strictement entre 0 et 1 comme 0.8 ou 0.95"
            ),
            EmptySeries => "le fichier n'a aucune ligne avec une heure et une valeur valides ; vérifiez --time-column et --value-column".to_string(),
            CoarserThanHourly { step_minutes } => format!(
                "les lignes sont espacées de {step_minutes} minutes, mais la prévision travaille sur des données horaires ; fournissez des lignes horaires ou plus fines"
            ),
            UnknownModel { name, known } => format!(
                "modèle inconnu « {name} » ; choisissez parmi {}",
                quote_list(known)
            ),
            InsufficientHistory { model, needed_hours, available_hours, earliest } => format!(
                "le modèle {model} demande {needed_hours} heures d'historique avant la première origine mais seules {available_hours} sont disponibles ; passez --from {earliest} ou plus tard"
            ),
            NoBacktestWindows { from, last, horizon_hours } => format!(
                "aucune fenêtre de {horizon_hours} heures commençant à minuit le {from} ou après ne tient avant la dernière heure de données ({last}) ; passez un --from plus tôt ou un --horizon plus court"
            ),
            ModelFailed { model, reason } => format!("échec du modèle {model} : {reason} ; retirez-le de --models ou cherchez de longs trous dans les données"),
        }
    }
}

impl std::fmt::Display for AnalyticsError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.english())
    }
}

fn quote_list(items: &[String]) -> String {
    items
        .iter()
        .map(|item| format!("\"{item}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

pub type Result<T> = std::result::Result<T, AnalyticsError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_message_names_value() {
        let error = AnalyticsError::InvalidNumber {
            line: 7,
            column: "Power".to_string(),
            value: "12,5".to_string(),
        };
        let message = error.message(Lang::Fr);
        assert!(message.contains("« 12,5 »"), "{message}");
        assert!(message.contains("ligne 7"), "{message}");
    }

    #[test]
    fn display_is_english_message() {
        let error = AnalyticsError::MissingValue {
            line: 3,
            column: "Power".to_string(),
        };
        assert_eq!(error.to_string(), error.message(Lang::En));
    }
}
