//! The optional configuration file of `serve` (`--config FILE`): sites, and
//! which MQTT topics belong to which device of which site.
//!
//! Every problem in the file is reported at once, each with where it is, the
//! value and the fix, before the server starts anything. The annotated
//! example `smart-energy.example.toml` at the top of the repository is parsed
//! by a test, so it stays valid.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use se_core::DeviceId;
use se_decode::DeviceMapping;
use se_store::{site_rules, Retention, Site, Store};
use se_web::RecommendationSchedule;

/// Contents of the configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub recommendations: RecommendationsConfig,
}

/// The `[recommendations]` section: when the savings recommenders run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationsConfig {
    /// Time between runs over every site, such as "1h".
    #[serde(default, deserialize_with = "duration_text")]
    pub interval: Option<String>,
    /// Delay from server start to the first run, such as "1m".
    #[serde(default, deserialize_with = "duration_text")]
    pub first_run_after: Option<String>,
    /// Readings before each run that the recommenders read, such as "7d".
    #[serde(default, deserialize_with = "duration_text")]
    pub history: Option<String>,
}

impl RecommendationsConfig {
    /// Returns the schedule of the background task, with defaults where unset.
    pub fn schedule(&self) -> Result<RecommendationSchedule, String> {
        let defaults = RecommendationSchedule::default();
        Ok(RecommendationSchedule {
            interval: self.interval.as_deref().map_or(Ok(defaults.interval), parse_run_interval)?,
            first_run_after: self.first_run_after.as_deref().map_or(Ok(defaults.first_run_after), super::parse_duration)?,
            history: self.history.as_deref().map_or(Ok(defaults.history), parse_history)?,
        })
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(Err(error)) = self.interval.as_deref().map(parse_run_interval) {
            problems.push(format!("recommendations.interval: {error}"));
        }
        if let Some(Err(error)) = self.first_run_after.as_deref().map(super::parse_duration) {
            problems.push(format!("recommendations.first_run_after: {error}"));
        }
        if let Some(Err(error)) = self.history.as_deref().map(parse_history) {
            problems.push(format!("recommendations.history: {error}"));
        }
        problems
    }
}

/// Parses the history that the recommenders read: from 1 hour to 366 days,
/// where a day is 24 hours.
pub fn parse_history(text: &str) -> Result<Duration, String> {
    parse_bounded_duration(text, Duration::from_secs(3_600), Duration::from_secs(366 * 86_400), "1h to 366d, such as 7d, 72h or 14d")
}

/// Parses the time between two recommendation runs: from 1 minute to 30
/// days, because each run reads the whole history of every site.
pub fn parse_run_interval(text: &str) -> Result<Duration, String> {
    parse_bounded_duration(text, Duration::from_secs(60), Duration::from_secs(30 * 86_400), "1m to 30d, such as 1h or 1d")
}

/// Parses a duration such as "90s", "2h" or "7d", where a day is 24 hours,
/// and checks that it lies in `min..=max`. The error message quotes `range`.
fn parse_bounded_duration(text: &str, min: Duration, max: Duration, range: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}; use a duration from {range}");
    let span: jiff::Span = text.trim().parse().map_err(|_| invalid())?;
    let duration = span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).map_err(|_| invalid())?;
    Duration::try_from(duration)
        .ok()
        .filter(|duration| (min..=max).contains(duration))
        .ok_or_else(invalid)
}

/// The `[store]` section: background compaction and retention.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Time between compaction passes, such as "30s".
    #[serde(default, deserialize_with = "duration_text")]
    pub compact_interval: Option<String>,
    /// Time between retention passes, such as "10m".
    #[serde(default, deserialize_with = "duration_text")]
    pub retention_interval: Option<String>,
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// How long each resolution is kept: a duration such as "30d", or "forever".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(default, deserialize_with = "duration_text")]
    pub raw: Option<String>,
    #[serde(default, rename = "1m", deserialize_with = "duration_text")]
    pub minute: Option<String>,
    #[serde(default, rename = "1h", deserialize_with = "duration_text")]
    pub hour: Option<String>,
    #[serde(default, rename = "1d", deserialize_with = "duration_text")]
    pub day: Option<String>,
}

/// Reads a duration field as text. A bare number gets an error that names
/// it and shows it with a unit, because TOML's own message ("invalid type:
/// integer") does not say that durations are quoted text such as "5s".
fn duration_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct Text;

    impl serde::de::Visitor<'_> for Text {
        type Value = Option<String>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a duration in quotes, such as \"30s\", \"10m\" or \"7d\"")
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(Some(value.to_owned()))
        }

        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Err(bare_whole_number(value))
        }

        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
            Err(bare_whole_number(value))
        }

        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
            Err(E::custom(format!("invalid duration {value}: a duration needs a unit and quotes, such as \"{value}h\" or \"{value}d\"")))
        }
    }

    deserializer.deserialize_any(Text)
}

/// Error for a duration written as a whole number without unit or quotes.
fn bare_whole_number<E: serde::de::Error>(value: impl std::fmt::Display) -> E {
    E::custom(format!("invalid duration {value}: a duration needs a unit and quotes, such as \"{value}s\", \"{value}m\" or \"{value}d\""))
}

/// Default time between compaction passes.
pub const DEFAULT_COMPACT_INTERVAL: Duration = Duration::from_secs(30);
/// Default time between retention passes.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(600);

/// Parses a retention: "forever", or a duration in which a day is 24 hours.
pub fn parse_retention(text: &str) -> Result<Option<i64>, String> {
    if text.trim().eq_ignore_ascii_case("forever") {
        return Ok(None);
    }
    let invalid = || format!("invalid retention {text:?}; use a duration such as 30d, 12h or 366d, or \"forever\"");
    let span: jiff::Span = text.trim().parse().map_err(|_| invalid())?;
    let duration = span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).map_err(|_| invalid())?;
    let ms = i64::try_from(duration.as_millis()).map_err(|_| invalid())?;
    if ms <= 0 {
        return Err(format!("invalid retention {text:?}; it must be greater than zero, or \"forever\""));
    }
    Ok(Some(ms))
}

impl StoreConfig {
    /// Retention of each resolution, with the engine's defaults where unset.
    pub fn retention(&self) -> Result<Retention, String> {
        let defaults = Retention::DEFAULT;
        let pick = |value: &Option<String>, default: Option<i64>| value.as_deref().map_or(Ok(default), parse_retention);
        Ok(Retention {
            raw_ms: pick(&self.retention.raw, defaults.raw_ms)?,
            minute_ms: pick(&self.retention.minute, defaults.minute_ms)?,
            hour_ms: pick(&self.retention.hour, defaults.hour_ms)?,
            day_ms: pick(&self.retention.day, defaults.day_ms)?,
        })
    }

    pub fn compact_interval(&self) -> Result<Duration, String> {
        self.compact_interval.as_deref().map_or(Ok(DEFAULT_COMPACT_INTERVAL), super::parse_duration)
    }

    pub fn retention_interval(&self) -> Result<Duration, String> {
        self.retention_interval.as_deref().map_or(Ok(DEFAULT_RETENTION_INTERVAL), super::parse_duration)
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(error) = self.compact_interval() {
            problems.push(format!("store.compact_interval: {error}"));
        }
        if let Err(error) = self.retention_interval() {
            problems.push(format!("store.retention_interval: {error}"));
        }
        for (name, value) in [("raw", &self.retention.raw), ("1m", &self.retention.minute), ("1h", &self.retention.hour), ("1d", &self.retention.day)] {
            if let Some(Err(error)) = value.as_deref().map(parse_retention) {
                problems.push(format!("store.retention.{name}: {error}"));
            }
        }
        problems
    }
}

/// One site and the devices whose topics it maps.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub id: String,
    pub name: String,
    /// IANA time zone that sets the local day of the site's totals.
    pub time_zone: String,
    /// ISO 4217 code, such as EUR or TND.
    pub currency: String,
    /// Grid emission factor in g CO2 per kWh.
    #[serde(default)]
    pub co2_g_per_kwh: Option<f64>,
    #[serde(default)]
    pub devices: Vec<DeviceMapping>,
}

/// Reads each section, site and device mapping of a configuration file on
/// its own and lists those that are of the wrong shape, so that one wrong
/// value does not hide the others. Returns nothing for a TOML syntax error,
/// whose own message gives the line.
fn type_problems(text: &str) -> Vec<String> {
    fn check<T: serde::de::DeserializeOwned>(problems: &mut Vec<String>, place: &str, value: &toml::Value) {
        if let Err(error) = value.clone().try_into::<T>() {
            problems.push(format!("{place}: {}", error.message().trim_end()));
        }
    }

    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for (key, value) in &table {
        match key.as_str() {
            "store" => check::<StoreConfig>(&mut problems, "store", value),
            "recommendations" => check::<RecommendationsConfig>(&mut problems, "recommendations", value),
            "sites" => {
                let Some(sites) = value.as_array() else {
                    problems.push("sites: write each site as a [[sites]] table".to_owned());
                    continue;
                };
                for (index, site) in sites.iter().enumerate() {
                    let Some(fields) = site.as_table() else {
                        problems.push(format!("sites[{index}]: write each site as a [[sites]] table"));
                        continue;
                    };
                    // The site without its devices, then each device on its own.
                    let mut site_only = fields.clone();
                    let devices = site_only.remove("devices");
                    check::<SiteConfig>(&mut problems, &format!("sites[{index}]"), &toml::Value::Table(site_only));
                    match devices {
                        Some(toml::Value::Array(devices)) => {
                            for (device_index, device) in devices.iter().enumerate() {
                                check::<DeviceMapping>(&mut problems, &format!("sites[{index}].devices[{device_index}]"), device);
                            }
                        }
                        Some(_) => problems.push(format!("sites[{index}].devices: write each device as a [[sites.devices]] table")),
                        None => {}
                    }
                }
            }
            other => problems.push(format!("unknown section or key `{other}`; expected sites, store or recommendations")),
        }
    }
    problems
}

impl ServerConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<ServerConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let config: ServerConfig = match toml::from_str(&text) {
            Ok(config) => config,
            Err(error) => {
                // serde stops at the first wrong value; list one per section, site and device instead.
                let problems = type_problems(&text);
                if problems.is_empty() {
                    anyhow::bail!("invalid configuration file {}: {error}", path.display());
                }
                anyhow::bail!("invalid configuration file {}:\n  - {}", path.display(), problems.join("\n  - "));
            }
        };
        let problems = config.problems();
        if !problems.is_empty() {
            anyhow::bail!("invalid configuration file {}:\n  - {}", path.display(), problems.join("\n  - "));
        }
        Ok(config)
    }

    /// Lists every problem, each naming its place, the value and the fix.
    fn problems(&self) -> Vec<String> {
        let mut problems = self.store.problems();
        problems.extend(self.recommendations.problems());
        let mut site_ids = HashSet::new();
        let mut topics = HashSet::new();
        for (index, site) in self.sites.iter().enumerate() {
            let place = format!("sites[{index}]");
            if !site_rules::is_valid_site_id(&site.id) {
                problems.push(format!("{place}.id {:?} is invalid: use 1 to 64 letters, digits, '-' or '_'", site.id));
            }
            if !site_ids.insert(site.id.as_str()) {
                problems.push(format!("{place}.id {:?} is used by another site: give each site its own id", site.id));
            }
            if !site_rules::is_valid_site_name(&site.name) {
                problems.push(format!("{place}.name is empty or longer than {} characters", site_rules::MAX_SITE_NAME_CHARS));
            }
            if !site_rules::is_valid_time_zone(&site.time_zone) {
                problems.push(format!("{place}.time_zone {:?} is not an IANA time zone: use a name such as Europe/Paris", site.time_zone));
            }
            if !site_rules::is_valid_currency(&site.currency) {
                problems.push(format!("{place}.currency {:?} is invalid: use an ISO 4217 code such as EUR or TND", site.currency));
            }
            if site.co2_g_per_kwh.is_some_and(|factor| !site_rules::is_valid_co2_factor(factor)) {
                problems.push(format!("{place}.co2_g_per_kwh must be from 0 to {} g/kWh", site_rules::MAX_CO2_G_PER_KWH));
            }
            for (device_index, mapping) in site.devices.iter().enumerate() {
                let device_place = format!("{place}.devices[{device_index}]");
                if let Err(error) = mapping.validate() {
                    problems.push(format!("{device_place}.topic: {error}"));
                }
                if !topics.insert(mapping.topic.as_str()) {
                    problems.push(format!("{device_place}.topic {:?} is mapped twice: keep one rule per topic filter", mapping.topic));
                }
            }
        }
        problems
    }

    /// Topic-to-device rules of every site, in file order.
    pub fn mappings(&self) -> Vec<DeviceMapping> {
        self.sites.iter().flat_map(|site| site.devices.iter().cloned()).collect()
    }

    /// Creates or updates the sites and assigns their devices. A site's
    /// tariff is kept, because it is edited in the web UI, not in the file.
    pub async fn apply(&self, store: &dyn Store) -> anyhow::Result<()> {
        for site in &self.sites {
            let tariff_json = store.site(&site.id).await?.and_then(|existing| existing.tariff_json);
            let record = Site {
                id: site.id.clone(),
                name: site.name.trim().to_owned(),
                time_zone: site.time_zone.clone(),
                currency: site.currency.clone(),
                tariff_json,
                co2_g_per_kwh: site.co2_g_per_kwh,
            };
            store.upsert_site(&record).await?;
            let devices: HashSet<&DeviceId> = site.devices.iter().map(|mapping| &mapping.device).collect();
            for device in devices {
                store.assign_device(device, &site.id).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../../smart-energy.example.toml");

    fn parse(text: &str) -> ServerConfig {
        toml::from_str(text).expect("parse the configuration")
    }

    #[test]
    fn store_section_parses_retention() {
        let config = parse("[store]\ncompact_interval = \"5s\"\n[store.retention]\nraw = \"7d\"\n1m = \"forever\"\n");
        assert_eq!(config.problems(), Vec::<String>::new());
        let retention = config.store.retention().unwrap();
        assert_eq!(retention.raw_ms, Some(7 * 86_400_000));
        assert_eq!(retention.minute_ms, None);
        assert_eq!(retention.hour_ms, None);
        assert_eq!(config.store.compact_interval().unwrap(), Duration::from_secs(5));
    }

    #[test]
    fn store_section_reports_bad_values() {
        let config = parse("[store]\ncompact_interval = \"soon\"\n[store.retention]\nraw = \"-3d\"\n1h = \"a year\"\n");
        let problems = config.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("store.compact_interval"), "{}", problems[0]);
        assert!(problems[0].contains("soon"), "{}", problems[0]);
        assert!(problems.iter().any(|problem| problem.contains("store.retention.raw") && problem.contains("-3d")), "{problems:?}");
        assert!(problems.iter().any(|problem| problem.contains("store.retention.1h") && problem.contains("forever")), "{problems:?}");
    }

    #[test]
    fn recommendations_section_parses() {
        let config = parse("[recommendations]\ninterval = \"30m\"\nfirst_run_after = \"5s\"\nhistory = \"14d\"\n");
        assert_eq!(config.problems(), Vec::<String>::new());
        let schedule = config.recommendations.schedule().unwrap();
        assert_eq!(schedule.interval, Duration::from_secs(1_800));
        assert_eq!(schedule.first_run_after, Duration::from_secs(5));
        assert_eq!(schedule.history, Duration::from_secs(14 * 86_400));
    }

    #[test]
    fn recommendations_defaults() {
        let schedule = parse("").recommendations.schedule().unwrap();
        assert_eq!(schedule, RecommendationSchedule::default());
        assert_eq!(schedule.interval, Duration::from_secs(3_600));
        assert_eq!(schedule.history, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn recommendations_bad_values_named() {
        let config = parse("[recommendations]\ninterval = \"hourly\"\nfirst_run_after = \"0s\"\nhistory = \"-2d\"\n");
        let problems = config.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("recommendations.interval: invalid duration \"hourly\""), "{}", problems[0]);
        assert!(problems[1].starts_with("recommendations.first_run_after: "), "{}", problems[1]);
        assert!(problems[1].contains("greater than zero"), "{}", problems[1]);
        assert!(problems[2].starts_with("recommendations.history: invalid duration \"-2d\""), "{}", problems[2]);
        assert!(problems[2].contains("from 1h to 366d"), "{}", problems[2]);
        let error = toml::from_str::<ServerConfig>("[recommendations]\nevery = \"1h\"\n").unwrap_err();
        assert!(error.to_string().contains("every"), "{error}");
    }

    #[test]
    fn shape_errors_listed_together() {
        let text = "[[sites]]\nid = \"a\"\nname = \"A\"\ntime_zone = \"UTC\"\ncurrency = \"EUR\"\ntarif = 3\n\
                    [[sites.devices]]\ndevice = \"esp32 salle\"\ntopic = \"x/#\"\n\
                    [store]\ncompact_interval = 30\n";
        assert!(toml::from_str::<ServerConfig>(text).is_err());

        let problems = type_problems(text);

        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|problem| problem.starts_with("sites[0]: ") && problem.contains("tarif")), "{problems:?}");
        assert!(problems.iter().any(|problem| problem.starts_with("sites[0].devices[0]: ") && problem.contains("esp32 salle")), "{problems:?}");
        assert!(problems.iter().any(|problem| problem.starts_with("store: ") && problem.contains("\"30s\"")), "{problems:?}");
        assert!(type_problems("[[sites]\n").is_empty(), "a syntax error keeps TOML's own message");
    }

    #[test]
    fn bare_number_duration_shows_the_unit() {
        for (text, field) in [
            ("[recommendations]\ninterval = 5\n", "interval"),
            ("[store]\ncompact_interval = 30\n", "compact_interval"),
            ("[store.retention]\nraw = 2.5\n", "raw"),
        ] {
            let error = toml::from_str::<ServerConfig>(text).unwrap_err().to_string();
            assert!(error.contains(field), "names the field: {error}");
            assert!(error.contains("needs a unit and quotes"), "{error}");
        }
        let error = toml::from_str::<ServerConfig>("[recommendations]\ninterval = 5\n").unwrap_err().to_string();
        assert!(error.contains("\"5s\""), "shows the value with a unit: {error}");
        let error = toml::from_str::<ServerConfig>("[store.retention]\n1d = true\n").unwrap_err().to_string();
        assert!(error.contains("a duration in quotes"), "{error}");
    }

    #[test]
    fn recommendation_interval_bounds() {
        assert_eq!(parse_run_interval("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_run_interval("1m"), Ok(Duration::from_secs(60)));
        for text in ["500ms", "59s", "31d", "banana"] {
            let error = parse_run_interval(text).unwrap_err();
            assert!(error.contains(&format!("{text:?}")), "{error}");
            assert!(error.contains("from 1m to 30d"), "{error}");
        }
    }

    #[test]
    fn history_bounds() {
        assert_eq!(parse_history("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_history("0d").is_err());
        assert!(parse_history("100000000d").is_err());
        assert!(parse_history("367d").is_err());
    }

    #[test]
    fn example_file_is_valid() {
        let config = parse(EXAMPLE);
        assert_eq!(config.problems(), Vec::<String>::new());
        assert!(!config.mappings().is_empty());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let config = parse(
            r#"
            [[sites]]
            id = "bad id"
            name = ""
            time_zone = "Mars/Olympus"
            currency = "euro"
            co2_g_per_kwh = 90000
            devices = [{ topic = "tele/#/x", device = "plug" }, { topic = "a/b", device = "p1" }, { topic = "a/b", device = "p2" }]
            "#,
        );
        let problems = config.problems();
        assert_eq!(problems.len(), 7, "{problems:#?}");
        assert!(problems[0].contains("sites[0].id \"bad id\""));
        assert!(problems.iter().any(|p| p.contains("Mars/Olympus")));
        assert!(problems.iter().any(|p| p.contains("\"euro\"")));
        assert!(problems.iter().any(|p| p.contains("devices[0].topic")));
        assert!(problems.iter().any(|p| p.contains("mapped twice")));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let error = toml::from_str::<ServerConfig>("[[sites]]\nid = \"a\"\nname = \"A\"\ntime_zone = \"UTC\"\ncurrency = \"EUR\"\ntarif = 3\n").unwrap_err();
        assert!(error.to_string().contains("tarif"), "{error}");
    }

    #[test]
    fn invalid_device_id_is_rejected() {
        let error = toml::from_str::<ServerConfig>(
            "[[sites]]\nid = \"a\"\nname = \"A\"\ntime_zone = \"UTC\"\ncurrency = \"EUR\"\ndevices = [{ topic = \"x/#\", device = \"bad id\" }]\n",
        )
        .unwrap_err();
        assert!(error.to_string().contains("bad id"), "{error}");
    }
}
