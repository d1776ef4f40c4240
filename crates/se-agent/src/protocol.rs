//! MQTT topics, commands and acknowledgements between the server and an agent.
//!
//! The server publishes a [`CommandMessage`] on `smart-energy/v1/<device>/cmd`
//! (QoS 1, never retained). The agent carries it out and publishes one [`Ack`]
//! with the same `id` on `smart-energy/v1/<device>/ack` (QoS 1, never
//! retained). Both sides use these types, so the JSON stays the same.
//!
//! ```
//! use se_agent::protocol::{parse_command, Command};
//!
//! let message = parse_command(br#"{"id": "c1", "action": "set_power_limit", "gpu": 3, "watts": 220}"#).unwrap();
//! assert_eq!(message.command, Command::SetPowerLimit { gpu: 3, watts: 220.0 });
//! ```

use serde::{Deserialize, Serialize};

/// First levels of every native topic.
pub const TOPIC_PREFIX: &str = "smart-energy/v1";
/// Status payload while the agent is connected (published retained).
pub const STATUS_ONLINE: &str = "online";
/// Status payload after the agent left (retained; also its Last Will).
pub const STATUS_OFFLINE: &str = "offline";
/// Maximum length of a command id, in bytes.
pub const MAX_COMMAND_ID_LEN: usize = 128;

/// Topic of the rig's telemetry messages.
pub fn telemetry_topic(device: &str) -> String {
    format!("{TOPIC_PREFIX}/{device}/telemetry")
}

/// Topic of the rig's retained `online`/`offline` status.
pub fn status_topic(device: &str) -> String {
    format!("{TOPIC_PREFIX}/{device}/status")
}

/// Topic on which the rig receives commands.
pub fn command_topic(device: &str) -> String {
    format!("{TOPIC_PREFIX}/{device}/cmd")
}

/// Topic on which the rig acknowledges commands.
pub fn ack_topic(device: &str) -> String {
    format!("{TOPIC_PREFIX}/{device}/ack")
}

/// One command with its id, as published on the command topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandMessage {
    /// Id chosen by the server, echoed in the [`Ack`]; 1 to 128 bytes.
    pub id: String,
    #[serde(flatten)]
    pub command: Command,
}

/// Action requested by a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Command {
    /// Set the power limit of GPU `gpu` to `watts`, clamped to the card's range.
    SetPowerLimit { gpu: u32, watts: f64 },
    /// Set every GPU back to its default power limit.
    RestoreDefaultLimits,
    /// Run the configured miner stop command.
    StopMiner,
    /// Run the configured miner start command.
    StartMiner,
}

impl Command {
    /// Returns the `action` value of this command.
    pub fn action(&self) -> &'static str {
        match self {
            Command::SetPowerLimit { .. } => "set_power_limit",
            Command::RestoreDefaultLimits => "restore_default_limits",
            Command::StopMiner => "stop_miner",
            Command::StartMiner => "start_miner",
        }
    }
}

/// Every `action` value the agent accepts.
pub const ACTIONS: [&str; 4] = ["set_power_limit", "restore_default_limits", "stop_miner", "start_miner"];

/// Outcome class of a command, for programs; the messages are for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckCode {
    /// The command was carried out.
    Done,
    /// The payload is not a valid command.
    InvalidCommand,
    /// The GPU index does not exist on this rig.
    UnknownGpu,
    /// The GPU driver refused or failed the change.
    GpuError,
    /// The rig has no GPU control (no driver and no simulation).
    NoGpuControl,
    /// The miner command is not configured on this rig.
    NotConfigured,
    /// The miner command failed, timed out or could not start.
    CommandFailed,
}

/// Acknowledgement of one command by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// Id of the command; `null` when the command carried no readable id.
    pub id: Option<String>,
    /// Whether the command was carried out.
    pub ok: bool,
    pub code: AckCode,
    /// Power limit in watts that the card now has, for power-limit commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_watts: Option<f64>,
    /// Whether the requested watts were outside the card's range and were clamped.
    #[serde(default)]
    pub clamped: bool,
    /// Description of the outcome, in English.
    pub message: String,
    /// Description of the outcome, in French.
    pub message_fr: String,
}

impl Ack {
    /// Builds an acknowledgement without an applied limit.
    pub fn new(id: Option<String>, ok: bool, code: AckCode, message: String, message_fr: String) -> Self {
        Ack { id, ok, code, applied_watts: None, clamped: false, message, message_fr }
    }

    /// Builds the acknowledgement of an invalid command.
    pub fn invalid(id: Option<String>, error: &CommandError) -> Self {
        Ack::new(id, false, AckCode::InvalidCommand, error.to_string(), error.message_fr())
    }
}

/// Reason for rejecting a command payload.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("the command is not a JSON object ({0}); send {{\"id\": \"...\", \"action\": \"...\"}}")]
    NotJson(String),
    #[error("the command has no \"id\" text of 1 to 128 bytes; add one so that its ack can be matched")]
    MissingId,
    #[error("the command has no \"action\"; use one of {actions}", actions = ACTIONS.join(", "))]
    MissingAction,
    #[error("unknown action {0:?}; use one of {actions}", actions = ACTIONS.join(", "))]
    UnknownAction(String),
    #[error("invalid {action} command: {reason}")]
    InvalidFields { action: String, reason: String },
    #[error("invalid watts {0}: send a number of watts greater than 0")]
    InvalidWatts(f64),
}

impl CommandError {
    /// Returns the French text of the error, for the ack's `message_fr`.
    pub fn message_fr(&self) -> String {
        match self {
            CommandError::NotJson(reason) => {
                format!("la commande n'est pas un objet JSON ({reason}) ; envoyez {{\"id\": \"...\", \"action\": \"...\"}}")
            }
            CommandError::MissingId => {
                "la commande n'a pas de texte \"id\" de 1 à 128 octets ; ajoutez-en un pour relier l'accusé de réception".to_owned()
            }
            CommandError::MissingAction => format!("la commande n'a pas d'\"action\" ; utilisez l'une de {}", ACTIONS.join(", ")),
            CommandError::UnknownAction(action) => {
                format!("action inconnue {action:?} ; utilisez l'une de {}", ACTIONS.join(", "))
            }
            CommandError::InvalidFields { action, reason } => format!("commande {action} invalide : {reason}"),
            CommandError::InvalidWatts(watts) => {
                format!("puissance invalide {watts} : envoyez un nombre de watts supérieur à 0")
            }
        }
    }
}

/// A command payload that could not be used, with the id if one was readable.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedCommand {
    pub id: Option<String>,
    pub error: CommandError,
}

/// Parses a command payload, checking the id, the action and its fields.
pub fn parse_command(payload: &[u8]) -> Result<CommandMessage, RejectedCommand> {
    let reject = |id: Option<String>, error| RejectedCommand { id, error };
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|error| reject(None, CommandError::NotJson(error.to_string())))?;
    let Some(object) = value.as_object() else {
        return Err(reject(None, CommandError::NotJson("found another JSON value".to_owned())));
    };
    let id = match object.get("id").and_then(serde_json::Value::as_str) {
        Some(id) if !id.is_empty() && id.len() <= MAX_COMMAND_ID_LEN => id.to_owned(),
        _ => return Err(reject(None, CommandError::MissingId)),
    };
    let action = match object.get("action").and_then(serde_json::Value::as_str) {
        Some(action) => action.to_owned(),
        None => return Err(reject(Some(id), CommandError::MissingAction)),
    };
    if !ACTIONS.contains(&action.as_str()) {
        return Err(reject(Some(id), CommandError::UnknownAction(action)));
    }
    let command: Command = serde_json::from_value(value.clone())
        .map_err(|error| reject(Some(id.clone()), CommandError::InvalidFields { action: action.clone(), reason: error.to_string() }))?;
    if let Command::SetPowerLimit { watts, .. } = command {
        if !watts.is_finite() || watts <= 0.0 {
            return Err(reject(Some(id), CommandError::InvalidWatts(watts)));
        }
    }
    Ok(CommandMessage { id, command })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_power_limit_parses_fields() {
        let message = parse_command(br#"{"id": "a", "action": "set_power_limit", "gpu": 2, "watts": 180.5}"#).unwrap();
        assert_eq!(message.id, "a");
        assert_eq!(message.command, Command::SetPowerLimit { gpu: 2, watts: 180.5 });
    }

    #[test]
    fn actions_without_fields_parse() {
        for (action, expected) in [
            ("restore_default_limits", Command::RestoreDefaultLimits),
            ("stop_miner", Command::StopMiner),
            ("start_miner", Command::StartMiner),
        ] {
            let payload = format!(r#"{{"id": "x", "action": "{action}"}}"#);
            assert_eq!(parse_command(payload.as_bytes()).unwrap().command, expected, "{action}");
        }
    }

    #[test]
    fn command_serializes_with_action_tag() {
        let message = CommandMessage { id: "c9".to_owned(), command: Command::SetPowerLimit { gpu: 1, watts: 200.0 } };
        let json: serde_json::Value = serde_json::to_value(&message).unwrap();
        assert_eq!(json, serde_json::json!({"id": "c9", "action": "set_power_limit", "gpu": 1, "watts": 200.0}));
    }

    #[test]
    fn unknown_action_keeps_id() {
        let rejected = parse_command(br#"{"id": "k", "action": "reboot"}"#).unwrap_err();
        assert_eq!(rejected.id.as_deref(), Some("k"));
        assert_eq!(rejected.error, CommandError::UnknownAction("reboot".to_owned()));
    }

    #[test]
    fn missing_watts_is_invalid() {
        let rejected = parse_command(br#"{"id": "k", "action": "set_power_limit", "gpu": 0}"#).unwrap_err();
        assert!(matches!(rejected.error, CommandError::InvalidFields { .. }), "{:?}", rejected.error);
    }

    #[test]
    fn negative_watts_are_invalid() {
        let rejected = parse_command(br#"{"id": "k", "action": "set_power_limit", "gpu": 0, "watts": -5}"#).unwrap_err();
        assert_eq!(rejected.error, CommandError::InvalidWatts(-5.0));
    }

    #[test]
    fn missing_id_is_rejected() {
        let rejected = parse_command(br#"{"action": "stop_miner"}"#).unwrap_err();
        assert_eq!(rejected.error, CommandError::MissingId);
    }

    #[test]
    fn broken_json_is_rejected() {
        let rejected = parse_command(b"{not json").unwrap_err();
        assert!(matches!(rejected.error, CommandError::NotJson(_)));
    }

    #[test]
    fn ack_omits_absent_watts() {
        let ack = Ack::new(Some("z".to_owned()), true, AckCode::Done, "done".to_owned(), "fait".to_owned());
        let json = serde_json::to_value(&ack).unwrap();
        assert_eq!(json.get("applied_watts"), None);
        assert_eq!(json["code"], "done");
    }
}
