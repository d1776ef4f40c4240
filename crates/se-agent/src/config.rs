//! Agent configuration: a TOML file, then command-line flags over it.
//!
//! Every problem is collected and reported at once, so an operator fixes the
//! file in one pass. The annotated reference is in docs/agent.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use se_core::DeviceId;

use crate::sources::miner::DEFAULT_TREX_URL;
use crate::sources::rapl::DEFAULT_POWERCAP_DIR;
use crate::AgentError;

/// Default time between two messages.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Minimum interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Maximum interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Default buffer directory, relative to the working directory.
pub const DEFAULT_BUFFER_DIR: &str = "smart-energy-agent-data";
/// Default buffer bound: about 55,000 messages of an 8-GPU rig, three days at 5 s.
pub const DEFAULT_BUFFER_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Minimum buffer bound, in bytes.
pub const MIN_BUFFER_MAX_BYTES: u64 = 16 * 1024;
/// Default number of simulated GPUs.
pub const DEFAULT_SIMULATED_GPUS: u32 = 8;
/// Maximum number of simulated GPUs.
pub const MAX_SIMULATED_GPUS: u32 = 64;
/// Default MQTT port.
pub const DEFAULT_MQTT_PORT: u16 = 1883;

/// The configuration file as written. Every field is optional; flags and
/// defaults fill the gaps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub device: Option<String>,
    pub site: Option<String>,
    pub interval: Option<String>,
    #[serde(default)]
    pub mqtt: MqttSection,
    #[serde(default)]
    pub buffer: BufferSection,
    #[serde(default)]
    pub gpu: GpuSection,
    #[serde(default)]
    pub cpu: CpuSection,
    #[serde(default)]
    pub miner: MinerSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    pub broker: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub keep_alive: Option<String>,
    pub reconnect_min: Option<String>,
    pub reconnect_max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferSection {
    pub dir: Option<PathBuf>,
    pub max_bytes: Option<u64>,
}

/// Source of GPU readings, as written in the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuSourceKind {
    Nvml,
    Simulate,
    Off,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSection {
    pub source: Option<GpuSourceKind>,
    pub simulated_gpus: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuSection {
    pub rapl: Option<bool>,
    pub powercap_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerSection {
    pub api: Option<String>,
    pub api_timeout: Option<String>,
    pub stop_command: Option<Vec<String>>,
    pub start_command: Option<Vec<String>>,
    pub command_timeout: Option<String>,
}

/// Values given on the command line; each replaces the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub broker: Option<String>,
    pub device: Option<String>,
    pub site: Option<String>,
    pub interval: Option<Duration>,
    pub buffer_dir: Option<PathBuf>,
    pub buffer_max_bytes: Option<u64>,
    /// `--simulate[=GPUS]`: simulate this many GPUs.
    pub simulate: Option<u32>,
    pub miner_api: Option<String>,
}

/// GPU source chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuMode {
    /// Real NVIDIA GPUs through NVML.
    Nvml,
    /// Simulated GPUs.
    Simulate { gpus: u32 },
    /// No GPU readings and no GPU commands.
    Off,
}

/// MQTT connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: Duration,
    /// First wait before reconnecting; doubled after each failure up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

/// Miner API and control settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinerSettings {
    /// T-Rex summary URL; `None` turns hashrate reading off.
    pub api: Option<String>,
    pub api_timeout: Duration,
    /// Program and arguments run by `stop_miner`; no shell is involved.
    pub stop_command: Option<Vec<String>>,
    /// Program and arguments run by `start_miner`.
    pub start_command: Option<Vec<String>>,
    /// Time a miner command may run before it is killed.
    pub command_timeout: Duration,
}

/// The complete, checked agent configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub device: DeviceId,
    pub site: Option<String>,
    pub interval: Duration,
    pub mqtt: MqttSettings,
    pub buffer_dir: PathBuf,
    pub buffer_max_bytes: u64,
    pub gpu: GpuMode,
    /// Powercap directory to read RAPL from; `None` turns CPU power off.
    pub rapl: Option<PathBuf>,
    pub miner: MinerSettings,
}

impl AgentConfig {
    /// Returns a configuration with every default, for a broker at `host:port`.
    pub fn new(device: DeviceId, host: &str, port: u16, buffer_dir: &Path) -> AgentConfig {
        AgentConfig {
            device,
            site: None,
            interval: DEFAULT_INTERVAL,
            mqtt: MqttSettings {
                host: host.to_owned(),
                port,
                username: None,
                password: None,
                keep_alive: Duration::from_secs(30),
                reconnect_min: Duration::from_secs(1),
                reconnect_max: Duration::from_secs(30),
            },
            buffer_dir: buffer_dir.to_owned(),
            buffer_max_bytes: DEFAULT_BUFFER_MAX_BYTES,
            gpu: GpuMode::Nvml,
            rapl: Some(PathBuf::from(DEFAULT_POWERCAP_DIR)),
            miner: MinerSettings {
                api: None,
                api_timeout: Duration::from_secs(2),
                stop_command: None,
                start_command: None,
                command_timeout: Duration::from_secs(60),
            },
        }
    }
}

/// Parses a duration such as `5s`, `500ms` or `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let span: jiff::Span = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {text:?}; use a number with a unit, such as 5s, 500ms or 2m"))?;
    let signed = jiff::SignedDuration::try_from(span).map_err(|error| format!("invalid duration {text:?}: {error}"))?;
    Duration::try_from(signed).map_err(|_| format!("invalid duration {text:?}; it must not be negative"))
}

/// One configuration problem, for the operator, in English and in French.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub en: String,
    pub fr: String,
}

impl Problem {
    pub fn new(en: impl Into<String>, fr: impl Into<String>) -> Problem {
        Problem { en: en.into(), fr: fr.into() }
    }
}

/// A parsed configuration file and the problems found in it. Keys with a
/// problem are left out of `file`, so that the other values can still be
/// checked and every problem reported at once.
#[derive(Debug, Default)]
pub struct ParsedFile {
    pub file: AgentFile,
    pub problems: Vec<Problem>,
}

/// Deserializes a document, returning the message of the first problem.
fn deserialize(table: &toml::Table) -> Result<AgentFile, String> {
    toml::Value::Table(table.clone()).try_into::<AgentFile>().map_err(|error| error.message().to_owned())
}

/// Returns the problem of `value` at `path`, checked in a document that contains only that key.
fn check_alone(path: &[&str], value: toml::Value) -> Option<Problem> {
    let mut document = value;
    for key in path.iter().rev() {
        document = toml::Value::Table(toml::Table::from_iter([((*key).to_owned(), document)]));
    }
    let toml::Value::Table(table) = document else { return None };
    deserialize(&table).err().map(|message| toml_problem(&path.join("."), &message))
}

/// Wraps a message of the TOML parser, which exists in English only.
fn toml_problem(path: &str, message: &str) -> Problem {
    Problem::new(format!("{path}: {message}"), format!("{path} : valeur rejetée par l'analyseur TOML : {message}"))
}

/// Parses the configuration file text. A TOML syntax error stops parsing;
/// unknown keys and values of the wrong type are all collected.
pub fn parse_file(text: &str) -> Result<ParsedFile, Vec<Problem>> {
    let mut table: toml::Table = toml::from_str(text).map_err(|error| {
        let detail = error.to_string().trim_end().to_owned();
        vec![Problem::new(format!("invalid TOML: {detail}"), format!("TOML invalide : {detail}"))]
    })?;
    if let Ok(file) = deserialize(&table) {
        return Ok(ParsedFile { file, problems: Vec::new() });
    }

    let mut problems = Vec::new();
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let Some(value) = table.get_mut(&key) else { continue };
        let reported_before = problems.len();
        if let toml::Value::Table(section) = value {
            let inner_keys: Vec<String> = section.keys().cloned().collect();
            for inner in inner_keys {
                let Some(inner_value) = section.get(&inner).cloned() else { continue };
                if let Some(problem) = check_alone(&[&key, &inner], inner_value) {
                    problems.push(problem);
                    section.remove(&inner);
                }
            }
        }
        let Some(value) = table.get(&key).cloned() else { continue };
        if let Some(problem) = check_alone(&[&key], value) {
            // An unknown section whose keys were already reported one by one is not reported again.
            if problems.len() == reported_before {
                problems.push(problem);
            }
            table.remove(&key);
        }
    }
    match deserialize(&table) {
        Ok(file) => Ok(ParsedFile { file, problems }),
        Err(message) => {
            problems.push(toml_problem("file", &message));
            Err(problems)
        }
    }
}

/// Reads and parses the configuration file at `path`.
pub fn load_file(path: &Path) -> Result<ParsedFile, AgentError> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::ConfigRead { path: path.to_owned(), source })?;
    parse_file(&text).map_err(|problems| AgentError::Config { origin: path.display().to_string(), problems })
}

/// Broker address and credentials from an `mqtt://[USER[:PASSWORD]@]HOST[:PORT]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Parses a broker URL.
pub fn parse_broker_url(url: &str) -> Result<BrokerUrl, Problem> {
    let invalid = |reason: &str, reason_fr: &str| {
        Problem::new(
            format!("invalid broker URL {url:?}: {reason}; use mqtt://HOST:PORT"),
            format!("URL de broker invalide {url:?} : {reason_fr} ; utilisez mqtt://HÔTE:PORT"),
        )
    };
    let rest = url.strip_prefix("mqtt://").ok_or_else(|| invalid("the scheme must be mqtt://", "le schéma doit être mqtt://"))?;
    let rest = rest.trim_end_matches('/');
    let (credentials, host_port) = match rest.rsplit_once('@') {
        Some((credentials, host_port)) => (Some(credentials), host_port),
        None => (None, rest),
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| invalid("the port must be a number from 1 to 65535", "le port doit être un nombre de 1 à 65535"))?;
            (host, port)
        }
        None => (host_port, DEFAULT_MQTT_PORT),
    };
    if host.is_empty() || host.contains('/') {
        return Err(invalid("the host is missing", "l'hôte manque"));
    }
    let (username, password) = match credentials.map(|credentials| credentials.split_once(':')) {
        Some(Some((user, password))) => (Some(user.to_owned()), Some(password.to_owned())),
        Some(None) => (credentials.map(str::to_owned), None),
        None => (None, None),
    };
    Ok(BrokerUrl { host: host.to_owned(), port, username, password })
}

/// Collects problems while the configuration is resolved.
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, en: String, fr: String) {
        self.0.push(Problem::new(en, fr));
    }

    fn duration(&mut self, key: &str, text: Option<&str>, default: Duration, range: (Duration, Duration)) -> Duration {
        let Some(text) = text else { return default };
        match parse_duration(text) {
            Ok(duration) if duration >= range.0 && duration <= range.1 => duration,
            Ok(_) => {
                self.push(
                    format!("{key}: {text:?} is outside {:?} to {:?}", range.0, range.1),
                    format!("{key} : {text:?} est hors de l'intervalle {:?} à {:?}", range.0, range.1),
                );
                default
            }
            Err(error) => {
                self.push(
                    format!("{key}: {error}"),
                    format!("{key} : durée invalide {text:?} ; utilisez un nombre avec une unité, comme 5s, 500ms ou 2m"),
                );
                default
            }
        }
    }

    fn argv(&mut self, key: &str, argv: Option<Vec<String>>) -> Option<Vec<String>> {
        let argv = argv?;
        if argv.first().is_none_or(|program| program.trim().is_empty()) {
            self.push(
                format!("{key}: the first element must be the program to run, such as [\"systemctl\", \"stop\", \"miner\"]"),
                format!("{key} : le premier élément doit être le programme à lancer, comme [\"systemctl\", \"stop\", \"miner\"]"),
            );
            return None;
        }
        Some(argv)
    }
}

/// Combines the file, the flags and the defaults, and checks every value.
/// The file's own problems come first in the error.
pub fn resolve(parsed: ParsedFile, overrides: Overrides, origin: &str) -> Result<AgentConfig, AgentError> {
    let ParsedFile { file, problems } = parsed;
    let mut problems = Problems(problems);

    let device = match overrides.device.or(file.device) {
        Some(device) => DeviceId::parse(&device)
            .map_err(|error| {
                problems.push(
                    format!("device: {error}"),
                    format!("device : identifiant d'appareil invalide {device:?} ; utilisez 1 à 64 caractères parmi lettres, chiffres, '-', '_', '.' et ':'"),
                )
            })
            .ok(),
        None => {
            problems.push(
                "device: missing; pass --device ID or set device = \"rig-01\" in the configuration file".to_owned(),
                "device : manquant ; passez --device ID ou écrivez device = \"rig-01\" dans le fichier de configuration".to_owned(),
            );
            None
        }
    };
    let site = overrides.site.or(file.site);
    if let Some(site) = &site {
        if DeviceId::parse(site).is_err() {
            problems.push(
                format!("site: invalid site {site:?}; use 1 to 64 characters among letters, digits, '-', '_', '.' and ':'"),
                format!("site : site invalide {site:?} ; utilisez 1 à 64 caractères parmi lettres, chiffres, '-', '_', '.' et ':'"),
            );
        }
    }
    let interval = match overrides.interval {
        Some(interval) if interval < MIN_INTERVAL || interval > MAX_INTERVAL => {
            problems.push(
                format!("--interval: {interval:?} is outside {MIN_INTERVAL:?} to {MAX_INTERVAL:?}"),
                format!("--interval : {interval:?} est hors de l'intervalle {MIN_INTERVAL:?} à {MAX_INTERVAL:?}"),
            );
            DEFAULT_INTERVAL
        }
        Some(interval) => interval,
        None => problems.duration("interval", file.interval.as_deref(), DEFAULT_INTERVAL, (MIN_INTERVAL, MAX_INTERVAL)),
    };

    let mqtt = resolve_mqtt(&mut problems, file.mqtt, overrides.broker);

    let buffer_dir = overrides.buffer_dir.or(file.buffer.dir).unwrap_or_else(|| PathBuf::from(DEFAULT_BUFFER_DIR));
    let buffer_max_bytes = overrides.buffer_max_bytes.or(file.buffer.max_bytes).unwrap_or(DEFAULT_BUFFER_MAX_BYTES);
    if buffer_max_bytes < MIN_BUFFER_MAX_BYTES {
        problems.push(
            format!("buffer.max_bytes: {buffer_max_bytes} is below the minimum of {MIN_BUFFER_MAX_BYTES} bytes"),
            format!("buffer.max_bytes : {buffer_max_bytes} est sous le minimum de {MIN_BUFFER_MAX_BYTES} octets"),
        );
    }

    let simulated_gpus = overrides.simulate.or(file.gpu.simulated_gpus).unwrap_or(DEFAULT_SIMULATED_GPUS);
    let gpu = match (overrides.simulate, file.gpu.source.unwrap_or(GpuSourceKind::Nvml)) {
        (Some(_), _) | (None, GpuSourceKind::Simulate) => GpuMode::Simulate { gpus: simulated_gpus },
        (None, GpuSourceKind::Nvml) => GpuMode::Nvml,
        (None, GpuSourceKind::Off) => GpuMode::Off,
    };
    if matches!(gpu, GpuMode::Simulate { .. }) && !(1..=MAX_SIMULATED_GPUS).contains(&simulated_gpus) {
        problems.push(
            format!("gpu.simulated_gpus: {simulated_gpus} is outside 1 to {MAX_SIMULATED_GPUS}"),
            format!("gpu.simulated_gpus : {simulated_gpus} est hors de l'intervalle 1 à {MAX_SIMULATED_GPUS}"),
        );
    }

    let rapl = file.cpu.rapl.unwrap_or(true).then(|| file.cpu.powercap_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_POWERCAP_DIR)));

    let miner = resolve_miner(&mut problems, file.miner, overrides.miner_api);

    match (problems.0.is_empty(), device) {
        (true, Some(device)) => Ok(AgentConfig { device, site, interval, mqtt, buffer_dir, buffer_max_bytes, gpu, rapl, miner }),
        _ => Err(AgentError::Config { origin: origin.to_owned(), problems: problems.0 }),
    }
}

fn resolve_mqtt(problems: &mut Problems, section: MqttSection, broker: Option<String>) -> MqttSettings {
    let url = match broker.or(section.broker) {
        Some(url) => parse_broker_url(&url).map_err(|problem| problems.push(format!("broker: {}", problem.en), format!("broker : {}", problem.fr))).ok(),
        None => {
            problems.push(
                "broker: missing; pass --broker mqtt://HOST:PORT or set mqtt.broker in the configuration file".to_owned(),
                "broker : manquant ; passez --broker mqtt://HÔTE:PORT ou renseignez mqtt.broker dans le fichier de configuration".to_owned(),
            );
            None
        }
    };
    let url = url.unwrap_or(BrokerUrl { host: String::new(), port: DEFAULT_MQTT_PORT, username: None, password: None });

    if url.username.is_some() && section.username.is_some() {
        problems.push(
            "mqtt.username: the broker URL already has a user name; set it in one place only".to_owned(),
            "mqtt.username : l'URL du broker contient déjà un nom d'utilisateur ; indiquez-le à un seul endroit".to_owned(),
        );
    }
    let username = url.username.or(section.username);
    let file_password = match (&section.password, &section.password_file) {
        (Some(_), Some(_)) => {
            problems.push(
                "mqtt.password_file: set mqtt.password or mqtt.password_file, not both".to_owned(),
                "mqtt.password_file : renseignez mqtt.password ou mqtt.password_file, pas les deux".to_owned(),
            );
            None
        }
        (Some(password), None) => Some(password.clone()),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_owned()),
            Err(error) => {
                problems.push(
                    format!("mqtt.password_file: cannot read {}: {error}", path.display()),
                    format!("mqtt.password_file : impossible de lire {} : {error}", path.display()),
                );
                None
            }
        },
        (None, None) => None,
    };
    if url.password.is_some() && file_password.is_some() {
        problems.push(
            "mqtt.password: the broker URL already has a password; set it in one place only".to_owned(),
            "mqtt.password : l'URL du broker contient déjà un mot de passe ; indiquez-le à un seul endroit".to_owned(),
        );
    }
    let password = url.password.or(file_password);
    if password.is_some() && username.is_none() {
        problems.push(
            "mqtt.username: a password needs a user name".to_owned(),
            "mqtt.username : un mot de passe demande un nom d'utilisateur".to_owned(),
        );
    }

    let keep_alive = problems.duration("mqtt.keep_alive", section.keep_alive.as_deref(), Duration::from_secs(30), (Duration::from_secs(1), Duration::from_secs(65_535)));
    let limits = (Duration::from_millis(10), Duration::from_secs(3600));
    let reconnect_min = problems.duration("mqtt.reconnect_min", section.reconnect_min.as_deref(), Duration::from_secs(1), limits);
    let reconnect_max = problems.duration("mqtt.reconnect_max", section.reconnect_max.as_deref(), Duration::from_secs(30), limits);
    if reconnect_min > reconnect_max {
        problems.push(
            format!("mqtt.reconnect_min: {reconnect_min:?} is longer than mqtt.reconnect_max ({reconnect_max:?})"),
            format!("mqtt.reconnect_min : {reconnect_min:?} est plus long que mqtt.reconnect_max ({reconnect_max:?})"),
        );
    }
    MqttSettings { host: url.host, port: url.port, username, password, keep_alive, reconnect_min, reconnect_max }
}

fn resolve_miner(problems: &mut Problems, section: MinerSection, api: Option<String>) -> MinerSettings {
    let api = api.or(section.api);
    if let Some(api) = &api {
        if !api.starts_with("http://") {
            problems.push(
                format!("miner.api: {api:?} must be an http:// URL, such as {DEFAULT_TREX_URL}"),
                format!("miner.api : {api:?} doit être une URL http://, comme {DEFAULT_TREX_URL}"),
            );
        }
    }
    let api_timeout = problems.duration("miner.api_timeout", section.api_timeout.as_deref(), Duration::from_secs(2), (Duration::from_millis(100), Duration::from_secs(60)));
    let stop_command = problems.argv("miner.stop_command", section.stop_command);
    let start_command = problems.argv("miner.start_command", section.start_command);
    let command_timeout = problems.duration("miner.command_timeout", section.command_timeout.as_deref(), Duration::from_secs(60), (Duration::from_secs(1), Duration::from_secs(3600)));
    MinerSettings { api, api_timeout, stop_command, start_command, command_timeout }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
        device = "rig-07"
        site = "north"
        interval = "10s"

        [mqtt]
        broker = "mqtt://10.0.0.2:1884"
        username = "rig-07"
        password = "secret"
        keep_alive = "20s"

        [buffer]
        dir = "/var/lib/smart-energy-agent"
        max_bytes = 1048576

        [gpu]
        source = "simulate"
        simulated_gpus = 4

        [cpu]
        rapl = false

        [miner]
        api = "http://127.0.0.1:4067/summary"
        stop_command = ["systemctl", "stop", "t-rex"]
        start_command = ["systemctl", "start", "t-rex"]
    "#;

    #[test]
    fn full_file_resolves() {
        let config = resolve(parse_file(FULL).unwrap(), Overrides::default(), "test").unwrap();
        assert_eq!(config.device.as_str(), "rig-07");
        assert_eq!(config.interval, Duration::from_secs(10));
        assert_eq!(config.mqtt.host, "10.0.0.2");
        assert_eq!(config.mqtt.port, 1884);
        assert_eq!(config.mqtt.password.as_deref(), Some("secret"));
        assert_eq!(config.gpu, GpuMode::Simulate { gpus: 4 });
        assert_eq!(config.rapl, None);
        assert_eq!(config.miner.stop_command, Some(vec!["systemctl".to_owned(), "stop".to_owned(), "t-rex".to_owned()]));
    }

    #[test]
    fn flags_override_file() {
        let overrides = Overrides {
            device: Some("rig-08".to_owned()),
            broker: Some("mqtt://127.0.0.1:2000".to_owned()),
            interval: Some(Duration::from_millis(500)),
            simulate: Some(2),
            ..Overrides::default()
        };
        let config = resolve(parse_file(FULL).unwrap(), overrides, "test").unwrap();
        assert_eq!(config.device.as_str(), "rig-08");
        assert_eq!(config.mqtt.port, 2000);
        assert_eq!(config.interval, Duration::from_millis(500));
        assert_eq!(config.gpu, GpuMode::Simulate { gpus: 2 });
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let text = "devise = \"x\"\n[mqtt]\nbrokr = \"mqtt://a\"\n[buffer]\nmax_bytes = \"lots\"\n[extra]\na = 1\n";
        let problems = parse_file(text).unwrap().problems;
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems.iter().any(|p| p.en.starts_with("devise:") && p.en.contains("unknown field")), "{problems:#?}");
        assert!(problems.iter().any(|p| p.en.starts_with("mqtt.brokr:") && p.en.contains("unknown field")), "{problems:#?}");
        assert!(problems.iter().any(|p| p.en.starts_with("buffer.max_bytes:")), "{problems:#?}");
        assert!(problems.iter().any(|p| p.en.starts_with("extra.a:")), "{problems:#?}");
    }

    #[test]
    fn every_invalid_value_is_reported() {
        let text = "device = \"rig 1\"\ninterval = \"fast\"\n[mqtt]\nbroker = \"http://x\"\n[miner]\nstop_command = []\n";
        let error = resolve(parse_file(text).unwrap(), Overrides::default(), "agent.toml").unwrap_err();
        let AgentError::Config { problems, .. } = &error else { panic!("{error}") };
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(error.to_string().contains("agent.toml"));
    }

    #[test]
    fn missing_device_and_broker_are_reported() {
        let error = resolve(ParsedFile::default(), Overrides::default(), "flags").unwrap_err();
        let AgentError::Config { problems, .. } = error else { panic!() };
        assert!(problems.iter().any(|p| p.en.contains("--device")), "{problems:#?}");
        assert!(problems.iter().any(|p| p.en.contains("--broker")), "{problems:#?}");
    }

    #[test]
    fn file_and_value_problems_come_together() {
        let text = "devise = \"rig-1\"\ninterval = \"fast\"\n[mqtt]\nbroker = \"mqtt://127.0.0.1:1884\"\nkeep_alive = 30\n";
        let error = resolve(parse_file(text).unwrap(), Overrides::default(), "agent.toml").unwrap_err();
        let AgentError::Config { problems, .. } = error else { panic!() };
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].en.starts_with("devise:"), "{problems:#?}");
        assert!(problems[1].en.starts_with("mqtt.keep_alive:"), "{problems:#?}");
        assert!(problems[2].en.starts_with("device: missing"), "{problems:#?}");
        assert!(problems[3].en.starts_with("interval:"), "{problems:#?}");
        assert!(problems[2].fr.starts_with("device : manquant"), "{problems:#?}");
    }

    /// The annotated example of docs/agent.md must stay a valid configuration.
    #[test]
    fn documented_example_parses() {
        let doc = include_str!("../../../docs/agent.md");
        let start = doc.find("```toml\n").expect("a TOML example in docs/agent.md") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("end of the TOML example");
        let parsed = parse_file(&doc[start..end]).unwrap();
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.file.device.as_deref(), Some("rig-01"));
        assert_eq!(parsed.file.miner.stop_command.map(|argv| argv.len()), Some(3));
    }

    #[test]
    fn syntax_error_names_toml() {
        let problems = parse_file("device = \n").unwrap_err();
        assert!(problems[0].en.starts_with("invalid TOML"), "{problems:?}");
        assert!(problems[0].fr.starts_with("TOML invalide"), "{problems:?}");
    }

    #[test]
    fn broker_url_parses_credentials() {
        let url = parse_broker_url("mqtt://rig:pw@broker.lan:1884").unwrap();
        assert_eq!(url, BrokerUrl { host: "broker.lan".to_owned(), port: 1884, username: Some("rig".to_owned()), password: Some("pw".to_owned()) });
    }

    #[test]
    fn broker_url_defaults_port() {
        assert_eq!(parse_broker_url("mqtt://broker.lan").unwrap().port, 1883);
    }

    #[test]
    fn broker_url_rejects_zero_port() {
        assert!(parse_broker_url("mqtt://broker.lan:0").is_err());
    }

    #[test]
    fn duration_accepts_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    }
}
