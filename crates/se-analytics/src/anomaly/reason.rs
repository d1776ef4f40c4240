//! The facts behind each anomaly and their wording in English and French.

use serde::{Deserialize, Serialize};

use se_core::{ChannelName, DeviceId, Lang, Metric};

use crate::text::{duration, metric_name, number, of_metric_fr, percent, subject};

/// Bound of a range that a value broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Min,
    Max,
}

/// The facts behind an anomaly, with the numbers its message shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AnomalyReason {
    /// The reading farthest from the forecast in the segment.
    ForecastDeviation { actual: f64, forecast: f64, score: f64, points: usize },
    /// `hours` consecutive hourly means far from the same hours on earlier
    /// days. `actual` is the mean of the farthest hour, and `expected` is
    /// the median of that hour on the earlier days.
    PatternDeviation { actual: f64, expected: f64, score: f64, hours: usize },
    /// The highest-scoring reading of a spike, with the medians of the readings before and after it.
    Spike { value: f64, before: f64, after: f64, score: f64, points: usize },
    /// The highest-scoring reading of a spike against the power its load implies.
    LoadSpike { value: f64, expected: f64, load: Metric, score: f64, points: usize },
    /// The value stayed at `value` for `duration_ms`.
    Stuck { value: f64, duration_ms: i64, points: usize, peers_vary: bool },
    /// `count` values were NaN or infinite.
    NotANumber { count: usize },
    /// `count` values broke `bound`; `worst` is the farthest one.
    OutOfRange { worst: f64, bound: Bound, limit: f64, count: usize },
    /// No reading for `gap_ms` where the device usually sends one every `usual_interval_ms`.
    Silent { gap_ms: i64, usual_interval_ms: i64, ongoing: bool },
    /// Median relative excess of power over what the peers draw at the same
    /// load, in percent, and the same figure over the baseline window when
    /// the detector compared the device with its own past.
    PeerExcess { excess_pct: f64, baseline_excess_pct: Option<f64>, load: Metric, peers: usize, rig_mates: bool },
    /// Hashrate per watt, in MH/s per W, over the baseline and recent windows.
    EfficiencyDrift { baseline: f64, recent: f64, drop_pct: f64 },
    /// Share of wall power that does not reach the GPUs, in percent.
    PsuLoss { baseline_share_pct: f64, recent_share_pct: f64, excess_pct: f64 },
}

impl AnomalyReason {
    /// Renders the reason for the series of `device`, `channel` and `metric`.
    pub fn message(&self, device: &DeviceId, channel: &ChannelName, metric: Metric, lang: Lang) -> String {
        let subject = subject(device, channel, lang);
        let unit = metric.unit();
        let quantity = metric_name(metric, lang);
        let of_quantity = of_metric_fr(metric);
        match (self, lang) {
            (AnomalyReason::ForecastDeviation { actual, forecast, score, points }, Lang::En) => format!(
                "{subject}: {quantity} reached {} {unit} where {} {unit} was forecast ({} robust deviations, {points} reading{})",
                number(*actual, 1, lang),
                number(*forecast, 1, lang),
                number(*score, 1, lang),
                if *points == 1 { "" } else { "s" }
            ),
            (AnomalyReason::ForecastDeviation { actual, forecast, score, points }, Lang::Fr) => format!(
                "{subject} : {quantity} à {} {unit} pour {} {unit} prévus ({} écarts robustes, {points} mesure{})",
                number(*actual, 1, lang),
                number(*forecast, 1, lang),
                number(*score, 1, lang),
                if *points == 1 { "" } else { "s" }
            ),
            (AnomalyReason::PatternDeviation { actual, expected, score, hours }, Lang::En) => format!(
                "{subject}: {quantity} differed from its usual daily pattern for {hours} hour{}, at worst {} {unit} in an hour that usually averages {} {unit} ({} robust deviations)",
                if *hours == 1 { "" } else { "s" },
                number(*actual, 1, lang),
                number(*expected, 1, lang),
                number(*score, 1, lang)
            ),
            (AnomalyReason::PatternDeviation { actual, expected, score, hours }, Lang::Fr) => format!(
                "{subject} : {quantity} s'écarte de son profil journalier habituel pendant {hours} heure{}, au pire {} {unit} sur une heure qui fait d'habitude {} {unit} en moyenne ({} écarts robustes)",
                if *hours == 1 { "" } else { "s" },
                number(*actual, 1, lang),
                number(*expected, 1, lang),
                number(*score, 1, lang)
            ),
            (AnomalyReason::Spike { value, before, after, score, points }, Lang::En) => format!(
                "{subject}: {quantity} jumped to {} {unit} for {points} reading{}, against about {} {unit} before and {} {unit} after ({} robust deviations)",
                number(*value, 1, lang),
                if *points == 1 { "" } else { "s" },
                number(*before, 1, lang),
                number(*after, 1, lang),
                number(*score, 1, lang)
            ),
            (AnomalyReason::Spike { value, before, after, score, points }, Lang::Fr) => format!(
                "{subject} : pic {of_quantity} à {} {unit} sur {points} mesure{}, contre environ {} {unit} avant et {} {unit} après ({} écarts robustes)",
                number(*value, 1, lang),
                if *points == 1 { "" } else { "s" },
                number(*before, 1, lang),
                number(*after, 1, lang),
                number(*score, 1, lang)
            ),
            (AnomalyReason::LoadSpike { value, expected, load, score, points }, Lang::En) => format!(
                "{subject}: {quantity} jumped to {} {unit} for {points} reading{} while its {} implies about {} {unit} ({} robust deviations)",
                number(*value, 1, lang),
                if *points == 1 { "" } else { "s" },
                metric_name(*load, lang),
                number(*expected, 1, lang),
                number(*score, 1, lang)
            ),
            (AnomalyReason::LoadSpike { value, expected, load, score, points }, Lang::Fr) => format!(
                "{subject} : pic {of_quantity} à {} {unit} sur {points} mesure{} alors que son {} correspond à environ {} {unit} ({} écarts robustes)",
                number(*value, 1, lang),
                if *points == 1 { "" } else { "s" },
                load_noun_fr(*load),
                number(*expected, 1, lang),
                number(*score, 1, lang)
            ),
            (AnomalyReason::Stuck { value, duration_ms, points, peers_vary }, Lang::En) => format!(
                "{subject}: {quantity} stayed at exactly {} {unit} for {} ({points} readings) while {}",
                number(*value, 1, lang),
                duration(*duration_ms, lang),
                if *peers_vary { "its peers kept changing" } else { "it usually changes at every reading" }
            ),
            (AnomalyReason::Stuck { value, duration_ms, points, peers_vary }, Lang::Fr) => format!(
                "{subject} : {quantity} reste à exactement {} {unit} pendant {} ({points} mesures) alors que {}",
                number(*value, 1, lang),
                duration(*duration_ms, lang),
                if *peers_vary { "ses pairs continuent de varier" } else { "la valeur change d'habitude à chaque mesure" }
            ),
            (AnomalyReason::NotANumber { count: 1 }, Lang::En) => format!("{subject}: 1 {quantity} reading is not a number (NaN or infinite)"),
            (AnomalyReason::NotANumber { count }, Lang::En) => format!("{subject}: {count} {quantity} readings are not a number (NaN or infinite)"),
            (AnomalyReason::NotANumber { count: 1 }, Lang::Fr) => format!("{subject} : 1 mesure {of_quantity} n'est pas un nombre (NaN ou infini)"),
            (AnomalyReason::NotANumber { count }, Lang::Fr) => {
                format!("{subject} : {count} mesures {of_quantity} ne sont pas des nombres (NaN ou infini)")
            }
            (AnomalyReason::OutOfRange { worst, bound, limit, count }, Lang::En) => {
                let (side, name, extreme) = match bound {
                    Bound::Min => ("below", "minimum", "down to"),
                    Bound::Max => ("above", "maximum", "up to"),
                };
                let limit = number(*limit, 1, lang);
                let worst = number(*worst, 1, lang);
                if *count == 1 {
                    format!("{subject}: 1 {quantity} reading is {side} the possible {name} of {limit} {unit}, at {worst} {unit}")
                } else {
                    format!("{subject}: {count} {quantity} readings are {side} the possible {name} of {limit} {unit}, {extreme} {worst} {unit}")
                }
            }
            (AnomalyReason::OutOfRange { worst, bound, limit, count }, Lang::Fr) => {
                let (verb_one, verb_many, name) = match bound {
                    Bound::Min => ("est sous le", "sont sous le", "minimum"),
                    Bound::Max => ("dépasse le", "dépassent le", "maximum"),
                };
                let limit = number(*limit, 1, lang);
                let worst = number(*worst, 1, lang);
                if *count == 1 {
                    format!("{subject} : 1 mesure {of_quantity} {verb_one} {name} possible de {limit} {unit}, à {worst} {unit}")
                } else {
                    format!("{subject} : {count} mesures {of_quantity} {verb_many} {name} possible de {limit} {unit}, jusqu'à {worst} {unit}")
                }
            }
            (AnomalyReason::Silent { gap_ms, usual_interval_ms, ongoing }, Lang::En) => format!(
                "{subject}: no {quantity} reading {} {} while it usually sends one every {}",
                if *ongoing { "for the last" } else { "for" },
                duration(*gap_ms, lang),
                duration(*usual_interval_ms, lang)
            ),
            (AnomalyReason::Silent { gap_ms, usual_interval_ms, ongoing }, Lang::Fr) => format!(
                "{subject} : aucune mesure {of_quantity} {} {} alors qu'il en envoie une toutes les {} d'habitude",
                if *ongoing { "depuis" } else { "pendant" },
                duration(*gap_ms, lang),
                duration(*usual_interval_ms, lang)
            ),
            (AnomalyReason::PeerExcess { excess_pct, baseline_excess_pct, load, peers, rig_mates }, Lang::En) => {
                let group = if *rig_mates { "its rig mates" } else { "same-model peers" };
                let peers = if *peers == 1 { "1 peer".to_owned() } else { format!("{peers} peers") };
                let load = metric_name(*load, lang);
                match baseline_excess_pct {
                    Some(before) => format!(
                        "{subject} now draws {} more than {group} at the same {load}, against {} before ({peers})",
                        percent(*excess_pct, lang),
                        percent(*before, lang)
                    ),
                    None => format!("{subject} draws {} more than {group} at the same {load} ({peers})", percent(*excess_pct, lang)),
                }
            }
            (AnomalyReason::PeerExcess { excess_pct, baseline_excess_pct, load, peers, rig_mates }, Lang::Fr) => {
                let group = if *rig_mates { "les autres GPU de sa machine" } else { "ses pairs du même modèle" };
                let peers = if *peers == 1 { "1 pair".to_owned() } else { format!("{peers} pairs") };
                let load = same_load_fr(*load);
                match baseline_excess_pct {
                    Some(before) => format!(
                        "{subject} consomme maintenant {} de plus que {group} {load}, contre {} avant ({peers})",
                        percent(*excess_pct, lang),
                        percent(*before, lang)
                    ),
                    None => format!("{subject} consomme {} de plus que {group} {load} ({peers})", percent(*excess_pct, lang)),
                }
            }
            (AnomalyReason::EfficiencyDrift { baseline, recent, drop_pct }, Lang::En) => format!(
                "{subject}: hashrate per watt fell by {} from {} to {} MH/s per W",
                percent(*drop_pct, lang),
                number(*baseline, 3, lang),
                number(*recent, 3, lang)
            ),
            (AnomalyReason::EfficiencyDrift { baseline, recent, drop_pct }, Lang::Fr) => format!(
                "{subject} : le hashrate par watt a baissé de {}, de {} à {} MH/s par W",
                percent(*drop_pct, lang),
                number(*baseline, 3, lang),
                number(*recent, 3, lang)
            ),
            (AnomalyReason::PsuLoss { baseline_share_pct, recent_share_pct, excess_pct }, Lang::En) => format!(
                "{subject}: the power lost between the wall meter and the GPUs grew from {} to {} of the wall power ({} more than expected at this load)",
                percent(*baseline_share_pct, lang),
                percent(*recent_share_pct, lang),
                percent_points(*excess_pct, lang)
            ),
            (AnomalyReason::PsuLoss { baseline_share_pct, recent_share_pct, excess_pct }, Lang::Fr) => format!(
                "{subject} : la puissance perdue entre le compteur au mur et les GPU est passée de {} à {} de la puissance au mur ({} de plus qu'attendu à cette charge)",
                percent(*baseline_share_pct, lang),
                percent(*recent_share_pct, lang),
                percent_points(*excess_pct, lang)
            ),
        }
    }
}

fn percent_points(value: f64, lang: Lang) -> String {
    match lang {
        Lang::En => format!("{} percentage points", number(value, 1, lang)),
        Lang::Fr => format!("{} points de pourcentage", number(value, 1, lang)),
    }
}

/// "at the same load" in French, where the adjective agrees with the noun.
fn same_load_fr(load: Metric) -> String {
    match load {
        Metric::Hashrate => "à hashrate égal".to_owned(),
        Metric::Utilization => "à utilisation égale".to_owned(),
        other => format!("à {} égale", other.key()),
    }
}

/// Names a load metric without its article, for use after a French possessive.
fn load_noun_fr(load: Metric) -> &'static str {
    match load {
        Metric::Hashrate => "hashrate",
        Metric::Utilization => "utilisation",
        _ => "charge",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_message_contracts_de_le() {
        let device = DeviceId::parse("rig-01").unwrap();
        let channel = ChannelName::parse("gpu2").unwrap();
        let reason = AnomalyReason::Silent { gap_ms: 600_000, usual_interval_ms: 30_000, ongoing: true };
        let message = reason.message(&device, &channel, Metric::Hashrate, Lang::Fr);
        assert!(message.contains("aucune mesure du hashrate depuis 10 min"), "{message}");
        let message = reason.message(&device, &channel, Metric::Power, Lang::Fr);
        assert!(message.contains("aucune mesure de la puissance depuis"), "{message}");
    }

    #[test]
    fn single_reading_messages_are_singular() {
        let device = DeviceId::parse("rig-01").unwrap();
        let channel = ChannelName::parse("gpu2").unwrap();
        let reason = AnomalyReason::OutOfRange { worst: 720.0, bound: Bound::Max, limit: 385.0, count: 1 };
        let message = reason.message(&device, &channel, Metric::Power, Lang::En);
        assert_eq!(message, "GPU 2 of rig-01: 1 power reading is above the possible maximum of 385.0 W, at 720.0 W");
        let message = reason.message(&device, &channel, Metric::Power, Lang::Fr);
        assert_eq!(message, "Le GPU 2 de rig-01 : 1 mesure de la puissance dépasse le maximum possible de 385,0 W, à 720,0 W");

        let reason = AnomalyReason::NotANumber { count: 1 };
        let message = reason.message(&device, &channel, Metric::Power, Lang::En);
        assert_eq!(message, "GPU 2 of rig-01: 1 power reading is not a number (NaN or infinite)");
        let message = reason.message(&device, &channel, Metric::Power, Lang::Fr);
        assert_eq!(message, "Le GPU 2 de rig-01 : 1 mesure de la puissance n'est pas un nombre (NaN ou infini)");

        let reason = AnomalyReason::ForecastDeviation { actual: 400.0, forecast: 250.0, score: 9.0, points: 1 };
        let message = reason.message(&device, &channel, Metric::Power, Lang::En);
        assert!(message.ends_with("(9.0 robust deviations, 1 reading)"), "{message}");
        let message = reason.message(&device, &channel, Metric::Power, Lang::Fr);
        assert!(message.ends_with("(9,0 écarts robustes, 1 mesure)"), "{message}");

        let reason = AnomalyReason::PatternDeviation { actual: 95.6, expected: 211.6, score: 30.6, hours: 1 };
        let message = reason.message(&device, &channel, Metric::Power, Lang::En);
        assert_eq!(message, "GPU 2 of rig-01: power differed from its usual daily pattern for 1 hour, at worst 95.6 W in an hour that usually averages 211.6 W (30.6 robust deviations)");
        let message = reason.message(&device, &channel, Metric::Power, Lang::Fr);
        assert_eq!(message, "Le GPU 2 de rig-01 : la puissance s'écarte de son profil journalier habituel pendant 1 heure, au pire 95,6 W sur une heure qui fait d'habitude 211,6 W en moyenne (30,6 écarts robustes)");
    }
}
