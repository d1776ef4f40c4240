use serde::{Deserialize, Serialize};

use crate::{DeviceId, Lang};

/// Maximum length, in characters, of the excerpt of a rejected value kept for display.
pub const MAX_VALUE_EXCERPT: usize = 120;

/// Reason an input value was not stored. The set is small and fixed, so it
/// can label metrics and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The payload is not valid JSON, or not the shape its format requires.
    UnparsablePayload,
    /// No decoder handles the topic.
    UnknownTopic,
    /// The device id in the topic or payload is invalid.
    InvalidDeviceId,
    /// The channel name is invalid.
    InvalidChannel,
    /// The metric key is not known.
    UnknownMetric,
    /// The value carries a unit that is not the one its metric uses.
    WrongUnit,
    /// The value is empty.
    EmptyValue,
    /// The value is NaN, "nan", "None", null or another non-number.
    NotANumber,
    /// The value is infinite.
    Infinite,
    /// The value is negative where the quantity cannot be.
    Negative,
    /// The value is outside the physically possible range of its metric or device.
    OutOfRange,
    /// The timestamp is invalid.
    InvalidTimestamp,
    /// The message carries no reading at all.
    NoReadings,
}

impl RejectReason {
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::UnparsablePayload => "unparsable_payload",
            RejectReason::UnknownTopic => "unknown_topic",
            RejectReason::InvalidDeviceId => "invalid_device_id",
            RejectReason::InvalidChannel => "invalid_channel",
            RejectReason::UnknownMetric => "unknown_metric",
            RejectReason::WrongUnit => "wrong_unit",
            RejectReason::EmptyValue => "empty_value",
            RejectReason::NotANumber => "not_a_number",
            RejectReason::Infinite => "infinite",
            RejectReason::Negative => "negative",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::NoReadings => "no_readings",
        }
    }

    /// Short description for people, in their language.
    pub fn describe(self, lang: Lang) -> &'static str {
        use RejectReason::*;
        match (self, lang) {
            (UnparsablePayload, Lang::En) => "payload could not be parsed",
            (UnparsablePayload, Lang::Fr) => "message illisible",
            (UnknownTopic, Lang::En) => "no decoder handles this topic",
            (UnknownTopic, Lang::Fr) => "aucun décodeur ne traite ce topic",
            (InvalidDeviceId, Lang::En) => "invalid device id",
            (InvalidDeviceId, Lang::Fr) => "identifiant d'appareil invalide",
            (InvalidChannel, Lang::En) => "invalid channel name",
            (InvalidChannel, Lang::Fr) => "nom de canal invalide",
            (UnknownMetric, Lang::En) => "unknown metric",
            (UnknownMetric, Lang::Fr) => "mesure inconnue",
            (WrongUnit, Lang::En) => "wrong unit",
            (WrongUnit, Lang::Fr) => "unité incorrecte",
            (EmptyValue, Lang::En) => "empty value",
            (EmptyValue, Lang::Fr) => "valeur vide",
            (NotANumber, Lang::En) => "value is not a number",
            (NotANumber, Lang::Fr) => "la valeur n'est pas un nombre",
            (Infinite, Lang::En) => "value is infinite",
            (Infinite, Lang::Fr) => "valeur infinie",
            (Negative, Lang::En) => "negative value for a quantity that cannot be negative",
            (Negative, Lang::Fr) => "valeur négative pour une grandeur toujours positive",
            (OutOfRange, Lang::En) => "value outside the possible range",
            (OutOfRange, Lang::Fr) => "valeur hors de la plage possible",
            (InvalidTimestamp, Lang::En) => "invalid timestamp",
            (InvalidTimestamp, Lang::Fr) => "horodatage invalide",
            (NoReadings, Lang::En) => "message contains no reading",
            (NoReadings, Lang::Fr) => "le message ne contient aucune mesure",
        }
    }
}

impl std::str::FromStr for RejectReason {
    type Err = String;
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        use RejectReason::*;
        [
            UnparsablePayload, UnknownTopic, InvalidDeviceId, InvalidChannel, UnknownMetric,
            WrongUnit, EmptyValue, NotANumber, Infinite, Negative, OutOfRange, InvalidTimestamp,
            NoReadings,
        ]
        .into_iter()
        .find(|reason| reason.code() == code)
        .ok_or_else(|| format!("unknown reject reason {code:?}"))
    }
}

/// One rejected value, with enough context to find and fix its sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub device: Option<DeviceId>,
    pub topic: String,
    /// Metric key or field name the value was sent under, when known.
    pub field: Option<String>,
    /// Excerpt of the rejected value, at most [`MAX_VALUE_EXCERPT`] characters.
    pub value: String,
    pub reason: RejectReason,
    /// English detail that names the value and the fix, for logs and the API.
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, topic: &str, value: &str, detail: impl Into<String>) -> Self {
        Self {
            device: None,
            topic: topic.to_owned(),
            field: None,
            value: excerpt(value),
            reason,
            detail: detail.into(),
        }
    }

    pub fn with_device(mut self, device: Option<DeviceId>) -> Self {
        self.device = device;
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

fn excerpt(value: &str) -> String {
    if value.chars().count() <= MAX_VALUE_EXCERPT {
        return value.to_owned();
    }
    let mut short: String = value.chars().take(MAX_VALUE_EXCERPT).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_back() {
        for code in ["unparsable_payload", "not_a_number", "no_readings"] {
            let reason: RejectReason = code.parse().unwrap();
            assert_eq!(reason.code(), code);
        }
    }

    #[test]
    fn long_values_are_cut() {
        let rejection = Rejection::new(RejectReason::UnparsablePayload, "t", &"x".repeat(500), "bad");
        assert_eq!(rejection.value.chars().count(), MAX_VALUE_EXCERPT + 1);
    }
}
