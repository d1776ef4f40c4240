//! Faults injected into the simulated fleet, for testing and benchmarking
//! anomaly detection. Each fault starts at an offset from the start of the
//! simulation and lasts until its end.
//!
//! Text form, as `smart-energy simulate --fault` takes it:
//! `KIND:DEVICE[/gpuN]@OFFSET`, such as `drift:rig-01/gpu2@30m` or
//! `offline:rig-03@1h`. GPU faults (`drift`, `stuck`, `spike`) name a GPU;
//! rig faults (`offline`, `psu-loss`) do not.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use se_core::TimestampMs;

/// Final rise of a drifting GPU's power: +15 %.
pub const DRIFT_SHARE: f64 = 0.15;
/// Time over which a drift reaches its final rise.
pub const DRIFT_RAMP_MS: i64 = 10 * 60_000;
/// Factor of a spike's one reading over the true power.
pub const SPIKE_FACTOR: f64 = 2.5;
/// Growth of the power supply's loss, in percentage points of its efficiency per minute.
pub const PSU_LOSS_PP_PER_MINUTE: f64 = 0.5;
/// Largest loss growth, in percentage points.
pub const PSU_LOSS_MAX_PP: f64 = 12.0;

/// Kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The GPU's power rises by [`DRIFT_SHARE`] over [`DRIFT_RAMP_MS`] and
    /// stays there. The wall meter reading includes the extra power.
    Drift,
    /// The GPU's power sensor repeats its last value.
    Stuck,
    /// One reading of the GPU's power is [`SPIKE_FACTOR`] times the true power.
    Spike,
    /// The rig stops sending.
    Offline,
    /// The rig's power supply loses [`PSU_LOSS_PP_PER_MINUTE`] more percentage
    /// points of efficiency each minute, up to [`PSU_LOSS_MAX_PP`].
    PsuLoss,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [FaultKind::Drift, FaultKind::Stuck, FaultKind::Spike, FaultKind::Offline, FaultKind::PsuLoss];

    pub fn code(self) -> &'static str {
        match self {
            FaultKind::Drift => "drift",
            FaultKind::Stuck => "stuck",
            FaultKind::Spike => "spike",
            FaultKind::Offline => "offline",
            FaultKind::PsuLoss => "psu-loss",
        }
    }

    /// Returns whether the fault concerns one GPU rather than the whole rig.
    pub fn is_gpu_fault(self) -> bool {
        matches!(self, FaultKind::Drift | FaultKind::Stuck | FaultKind::Spike)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One fault: its kind, the rig, the GPU for GPU faults, and when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub rig: String,
    pub gpu: Option<usize>,
    /// Start, in milliseconds after the start of the simulation.
    pub offset_ms: i64,
}

/// A `--fault` value that does not parse, or names a rig or GPU the fleet does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("invalid fault {value:?}: {problem}; expected KIND:DEVICE[/gpuN]@OFFSET such as drift:rig-01/gpu2@30m or offline:rig-03@1h, where KIND is drift, stuck or spike (with /gpuN) or offline or psu-loss (without)")]
    Syntax { value: String, problem: String },
    #[error("fault {value:?} names {target}, which the simulated fleet does not have; {hint}")]
    UnknownTarget { value: String, target: String, hint: String },
}

impl FromStr for Fault {
    type Err = FaultError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let syntax = |problem: &str| FaultError::Syntax { value: value.to_owned(), problem: problem.to_owned() };
        let (kind, rest) = value.split_once(':').ok_or_else(|| syntax("the kind and ':' are missing"))?;
        let kind = FaultKind::ALL
            .into_iter()
            .find(|candidate| candidate.code() == kind)
            .ok_or_else(|| syntax(&format!("unknown kind {kind:?}")))?;
        let (target, offset) = rest.rsplit_once('@').ok_or_else(|| syntax("the start offset after '@' is missing"))?;
        let (rig, gpu) = match target.split_once('/') {
            Some((rig, channel)) => {
                let index = channel
                    .strip_prefix("gpu")
                    .and_then(|digits| digits.parse::<usize>().ok())
                    .ok_or_else(|| syntax(&format!("channel {channel:?} is not a GPU such as gpu0")))?;
                (rig, Some(index))
            }
            None => (target, None),
        };
        se_core::DeviceId::parse(rig).map_err(|error| syntax(&error.to_string()))?;
        match (kind.is_gpu_fault(), gpu) {
            (true, None) => return Err(syntax(&format!("{kind} needs a GPU, such as {kind}:{rig}/gpu0@{offset}"))),
            (false, Some(_)) => return Err(syntax(&format!("{kind} concerns a whole rig; write {kind}:{rig}@{offset}"))),
            _ => {}
        }
        let offset_ms = parse_offset(offset).ok_or_else(|| syntax(&format!("offset {offset:?} is not a duration such as 90s, 30m or 1h")))?;
        Ok(Fault { kind, rig: rig.to_owned(), gpu, offset_ms })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.rig)?;
        if let Some(gpu) = self.gpu {
            write!(f, "/gpu{gpu}")?;
        }
        write!(f, "@{}ms", self.offset_ms)
    }
}

/// Parses `0`, or a whole number with one of the units ms, s, m or h.
fn parse_offset(text: &str) -> Option<i64> {
    if text == "0" {
        return Some(0);
    }
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().ok()?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Ground truth of one injected fault, for scoring a detector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    pub device: String,
    /// `gpuN` for GPU faults; absent for rig faults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Metric the fault changes: `power_w` for every kind but offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<&'static str>,
    pub start_ms: TimestampMs,
    /// The fault in its text form, with the offset in milliseconds.
    pub spec: String,
}

impl Fault {
    /// Builds the ground truth of this fault for a simulation that starts at `start_ms`.
    pub fn record(&self, start_ms: TimestampMs) -> FaultRecord {
        FaultRecord {
            kind: self.kind,
            device: self.rig.clone(),
            channel: self.gpu.map(|gpu| format!("gpu{gpu}")).or_else(|| (self.kind == FaultKind::PsuLoss).then(|| "wall".to_owned())),
            metric: (self.kind != FaultKind::Offline).then_some("power_w"),
            start_ms: start_ms + self.offset_ms,
            spec: self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gpu_and_rig_faults() {
        let fault: Fault = "drift:rig-03/gpu2@30m".parse().unwrap();
        assert_eq!(fault, Fault { kind: FaultKind::Drift, rig: "rig-03".into(), gpu: Some(2), offset_ms: 1_800_000 });
        let fault: Fault = "psu-loss:rig-01@90s".parse().unwrap();
        assert_eq!(fault, Fault { kind: FaultKind::PsuLoss, rig: "rig-01".into(), gpu: None, offset_ms: 90_000 });
        let fault: Fault = "offline:rig-01@0".parse().unwrap();
        assert_eq!(fault.offset_ms, 0);
        assert_eq!("spike:rig-02/gpu7@1h".parse::<Fault>().unwrap().to_string(), "spike:rig-02/gpu7@3600000ms");
    }

    #[test]
    fn bad_values_name_the_value_and_the_form() {
        for (value, problem) in [
            ("drift", "the kind and ':' are missing"),
            ("melt:rig-01/gpu0@1m", "unknown kind \"melt\""),
            ("drift:rig-01/gpu0", "the start offset after '@' is missing"),
            ("drift:rig-01@1m", "drift needs a GPU, such as drift:rig-01/gpu0@1m"),
            ("offline:rig-01/gpu0@1m", "offline concerns a whole rig; write offline:rig-01@1m"),
            ("stuck:rig-01/fan0@1m", "channel \"fan0\" is not a GPU such as gpu0"),
            ("stuck:rig-01/gpu0@soon", "offset \"soon\" is not a duration such as 90s, 30m or 1h"),
            ("stuck:rig-01/gpu0@-5m", "offset \"-5m\" is not a duration"),
            ("stuck:rig 01/gpu0@5m", "invalid device id"),
        ] {
            let error = value.parse::<Fault>().unwrap_err().to_string();
            assert!(error.starts_with(&format!("invalid fault {value:?}: ")), "{error}");
            assert!(error.contains(problem), "{value}: {error}");
            assert!(error.contains("expected KIND:DEVICE[/gpuN]@OFFSET"), "{error}");
        }
    }

    #[test]
    fn record_names_channel_and_start() {
        let record = "psu-loss:rig-01@1m".parse::<Fault>().unwrap().record(1_000);
        assert_eq!(record.channel.as_deref(), Some("wall"));
        assert_eq!(record.start_ms, 61_000);
        let record = "offline:rig-01@1m".parse::<Fault>().unwrap().record(0);
        assert_eq!(record.channel, None);
        assert_eq!(record.metric, None);
        let json = serde_json::to_string(&"drift:rig-01/gpu3@2m".parse::<Fault>().unwrap().record(0)).unwrap();
        assert_eq!(json, r#"{"kind":"drift","device":"rig-01","channel":"gpu3","metric":"power_w","start_ms":120000,"spec":"drift:rig-01/gpu3@120000ms"}"#);
    }
}
