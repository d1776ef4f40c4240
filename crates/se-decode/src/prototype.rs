//! The four topics of the ESP32 prototype firmware (EmonLib front end).
//!
//! Every cycle (about 5 s) the firmware publishes four plain strings with a
//! unit suffix and no device id: `Smart_Energie/data/Current` (`0.42A`,
//! printed with `%.2f`), `Smart_Energie/data/Voltage` (`18.64V`),
//! `Smart_Energie/data/kWh` (`0.05359kWh`, `%.5f`, cumulative since first
//! boot) and `Smart_Energie/temps` (uptime, `0 Days, 00:11:00`). The decoder
//! joins one cycle into one reading of a configured device.
//!
//! The firmware multiplies RMS voltage by RMS current, so its "kWh" counter is
//! apparent energy. It is stored as `apparent_energy_vah`, and V x I as
//! `apparent_power_va`.
//!
//! Time: the uptime is the only clock. At the first cycle of a boot the
//! decoder anchors the boot at `receive time - uptime`; each cycle is then
//! stamped `boot + uptime`, so a repeated cycle lands on the same instant and
//! is stored once. An uptime lower than the previous one is a reboot: the
//! decoder re-anchors and reports it in [`Decoded::restarted`].

use se_core::{Decoded, DeviceId, Metric, RejectReason, Reading, Rejection, TimestampMs};

use crate::{check_range, parse_with_unit, Decoder};

pub const PROTOTYPE_TOPICS: [&str; 4] = [
    "Smart_Energie/data/Current",
    "Smart_Energie/data/Voltage",
    "Smart_Energie/data/kWh",
    "Smart_Energie/temps",
];

const CHANNEL: &str = "main";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Current,
    Voltage,
    Energy,
    Uptime,
}

impl Field {
    fn from_topic(topic: &str) -> Option<Field> {
        match topic {
            "Smart_Energie/data/Current" => Some(Field::Current),
            "Smart_Energie/data/Voltage" => Some(Field::Voltage),
            "Smart_Energie/data/kWh" => Some(Field::Energy),
            "Smart_Energie/temps" => Some(Field::Uptime),
            _ => None,
        }
    }
}

/// Values of the cycle being joined. `None` means not received yet;
/// `Some(None)` means received but rejected.
#[derive(Debug, Default, Clone)]
struct Cycle {
    first_received_ms: Option<TimestampMs>,
    current_a: Option<Option<f64>>,
    voltage_v: Option<Option<f64>>,
    energy_kwh: Option<Option<f64>>,
    uptime_s: Option<Option<u64>>,
}

impl Cycle {
    fn has(&self, field: Field) -> bool {
        match field {
            Field::Current => self.current_a.is_some(),
            Field::Voltage => self.voltage_v.is_some(),
            Field::Energy => self.energy_kwh.is_some(),
            Field::Uptime => self.uptime_s.is_some(),
        }
    }

    fn is_complete(&self) -> bool {
        [Field::Current, Field::Voltage, Field::Energy, Field::Uptime].iter().all(|f| self.has(*f))
    }
}

/// Joins the prototype's four topics into readings of one device.
#[derive(Debug)]
pub struct PrototypeDecoder {
    device: DeviceId,
    cycle: Cycle,
    /// Wall-clock time of uptime zero for the current boot.
    boot_ms: Option<TimestampMs>,
    last_uptime_s: Option<u64>,
    /// Rejections of the message being decoded.
    pending_rejections: Vec<Rejection>,
}

impl PrototypeDecoder {
    pub fn new(device: DeviceId) -> Self {
        Self { device, cycle: Cycle::default(), boot_ms: None, last_uptime_s: None, pending_rejections: Vec::new() }
    }

    /// Emits the cycle joined so far, for the end of a stream or a time-out.
    pub fn flush(&mut self) -> Decoded {
        let cycle = std::mem::take(&mut self.cycle);
        self.emit(cycle)
    }

    fn emit(&mut self, cycle: Cycle) -> Decoded {
        let mut decoded = Decoded { device: Some(self.device.clone()), ..Decoded::default() };
        decoded.rejections.append(&mut self.pending_rejections);
        let Some(first_received_ms) = cycle.first_received_ms else {
            return decoded;
        };
        let uptime_s = cycle.uptime_s.flatten();
        let ts_ms = match uptime_s {
            Some(uptime_s) => self.stamp(uptime_s, first_received_ms, &mut decoded),
            None => first_received_ms,
        };
        let mut push = |metric: Metric, value: Option<f64>| {
            if let Some(value) = value {
                decoded.readings.push(Reading::new(self.device.clone(), CHANNEL, metric, ts_ms, value));
            }
        };
        let current = cycle.current_a.flatten();
        let voltage = cycle.voltage_v.flatten();
        push(Metric::Current, current);
        push(Metric::Voltage, voltage);
        push(Metric::ApparentEnergy, cycle.energy_kwh.flatten().map(|kwh| round_to(kwh * 1000.0, 2)));
        push(Metric::ApparentPower, current.zip(voltage).map(|(a, v)| round_to(a * v, 4)));
        push(Metric::Uptime, uptime_s.map(|s| s as f64));
        decoded
    }

    /// Maps an uptime to wall-clock time, re-anchoring on the first cycle and
    /// after a reboot.
    fn stamp(&mut self, uptime_s: u64, received_ms: TimestampMs, decoded: &mut Decoded) -> TimestampMs {
        let uptime_ms = (uptime_s as i64).saturating_mul(1000);
        let rebooted = self.last_uptime_s.is_some_and(|last| uptime_s < last);
        if rebooted {
            decoded.restarted = true;
        }
        if self.boot_ms.is_none() || rebooted {
            self.boot_ms = Some(received_ms - uptime_ms);
        }
        self.last_uptime_s = Some(uptime_s);
        self.boot_ms.unwrap_or(received_ms - uptime_ms) + uptime_ms
    }

    fn reject(&mut self, reason: RejectReason, topic: &str, raw: &str, detail: String) {
        let field = topic.rsplit('/').next().unwrap_or(topic).to_owned();
        self.pending_rejections
            .push(Rejection::new(reason, topic, raw, detail).with_device(Some(self.device.clone())).with_field(field));
    }

    fn parse_value(&mut self, field: Field, topic: &str, raw: &str) -> Option<f64> {
        let (metric, unit) = match field {
            Field::Current => (Metric::Current, "A"),
            Field::Voltage => (Metric::Voltage, "V"),
            Field::Energy => (Metric::ApparentEnergy, "kWh"),
            Field::Uptime => return None,
        };
        match parse_with_unit(raw, unit).and_then(|value| check_range(metric, value)) {
            Ok(value) => Some(value),
            Err(reason) => {
                let detail = format!("{topic} expects a non-negative number followed by {unit}, such as \"0.42{unit}\"; got {raw:?}");
                self.reject(reason, topic, raw, detail);
                None
            }
        }
    }
}

impl Decoder for PrototypeDecoder {
    fn name(&self) -> &'static str {
        "prototype"
    }

    fn topic_filters(&self) -> Vec<String> {
        vec!["Smart_Energie/#".to_owned()]
    }

    fn accepts(&self, topic: &str) -> bool {
        Field::from_topic(topic).is_some()
    }

    fn decode(&mut self, topic: &str, payload: &[u8], received_ms: TimestampMs) -> Decoded {
        let Some(field) = Field::from_topic(topic) else {
            return Decoded::default();
        };
        let raw = String::from_utf8_lossy(payload).into_owned();

        // A topic seen twice before the cycle completed starts a new cycle.
        let mut out = Decoded::default();
        if self.cycle.has(field) {
            let cycle = std::mem::take(&mut self.cycle);
            out = self.emit(cycle);
        }
        self.cycle.first_received_ms.get_or_insert(received_ms);

        match field {
            Field::Uptime => {
                let uptime = match parse_uptime(&raw) {
                    Some(seconds) => Some(seconds),
                    None => {
                        let detail = format!("{topic} expects uptime as \"D Days, HH:MM:SS\", such as \"0 Days, 00:11:00\"; got {raw:?}");
                        self.reject(RejectReason::UnparsablePayload, topic, &raw, detail);
                        None
                    }
                };
                self.cycle.uptime_s = Some(uptime);
            }
            Field::Current => self.cycle.current_a = Some(self.parse_value(field, topic, &raw)),
            Field::Voltage => self.cycle.voltage_v = Some(self.parse_value(field, topic, &raw)),
            Field::Energy => self.cycle.energy_kwh = Some(self.parse_value(field, topic, &raw)),
        }

        if self.cycle.is_complete() {
            let cycle = std::mem::take(&mut self.cycle);
            let completed = self.emit(cycle);
            merge(&mut out, completed);
        }
        // A rejected value is reported at once, not when its cycle ends.
        out.rejections.append(&mut self.pending_rejections);
        if out.device.is_none() && !out.is_empty() {
            out.device = Some(self.device.clone());
        }
        out
    }
}

fn merge(into: &mut Decoded, other: Decoded) {
    into.device = other.device.or(into.device.take());
    into.readings.extend(other.readings);
    into.rejections.extend(other.rejections);
    into.restarted |= other.restarted;
}

/// Rounds to `digits` decimals, removing binary noise from unit conversion
/// (0.05359 kWh x 1000 is 53.589999... in f64, stored as 53.59).
fn round_to(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Parses the firmware's uptime `D Days, HH:MM:SS` into seconds.
pub fn parse_uptime(text: &str) -> Option<u64> {
    let (days, clock) = text.trim().split_once(',')?;
    let days = days.trim().strip_suffix("Days").or_else(|| days.trim().strip_suffix("Day"))?;
    let days: u64 = days.trim().parse().ok()?;
    let mut parts = clock.trim().split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let seconds: u64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    Some(days * 86_400 + hours * 3_600 + minutes * 60 + seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: TimestampMs = 1_733_000_000_000;

    fn decoder() -> PrototypeDecoder {
        PrototypeDecoder::new(DeviceId::parse("esp32-proto").unwrap())
    }

    fn publish_cycle(decoder: &mut PrototypeDecoder, at: TimestampMs, values: [&str; 4]) -> Decoded {
        let mut out = Decoded::default();
        for (topic, value) in PROTOTYPE_TOPICS.iter().zip(values) {
            merge(&mut out, decoder.decode(topic, value.as_bytes(), at));
        }
        out
    }

    #[test]
    fn uptime_parses_days_and_clock() {
        assert_eq!(parse_uptime("0 Days, 00:11:00"), Some(660));
        assert_eq!(parse_uptime("2 Days, 01:00:05"), Some(2 * 86_400 + 3_605));
        assert_eq!(parse_uptime("0 Days 00:11:00"), None);
        assert_eq!(parse_uptime("0 Days, 00:61:00"), None);
    }

    #[test]
    fn cycle_joins_into_one_reading() {
        let mut decoder = decoder();
        let decoded = publish_cycle(&mut decoder, T0, ["0.42A", "18.64V", "0.05359kWh", "0 Days, 00:11:00"]);
        assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
        let value = |metric| decoded.readings.iter().find(|r| r.metric == metric).map(|r| r.value);
        assert_eq!(value(Metric::Current), Some(0.42));
        assert_eq!(value(Metric::Voltage), Some(18.64));
        assert_eq!(value(Metric::ApparentEnergy), Some(53.59));
        assert_eq!(value(Metric::Uptime), Some(660.0));
        assert!(decoded.readings.iter().all(|r| r.ts_ms == T0));
    }

    #[test]
    fn later_cycles_follow_the_uptime() {
        let mut decoder = decoder();
        publish_cycle(&mut decoder, T0, ["0.00A", "19.26V", "0.05356kWh", "0 Days, 00:09:28"]);
        let second = publish_cycle(&mut decoder, T0 + 1, ["0.00A", "15.72V", "0.05356kWh", "0 Days, 00:09:35"]);
        assert_eq!(second.readings[0].ts_ms, T0 + 7_000);
    }

    #[test]
    fn repeated_uptime_lands_on_same_instant() {
        let mut decoder = decoder();
        let first = publish_cycle(&mut decoder, T0, ["0.00A", "13.89V", "0.05356kWh", "0 Days, 00:10:31"]);
        let again = publish_cycle(&mut decoder, T0 + 5_000, ["0.00A", "13.89V", "0.05356kWh", "0 Days, 00:10:31"]);
        assert_eq!(first.readings[0].ts_ms, again.readings[0].ts_ms);
    }

    #[test]
    fn uptime_reset_is_detected() {
        let mut decoder = decoder();
        publish_cycle(&mut decoder, T0, ["0.10A", "230.00V", "1.00000kWh", "0 Days, 05:00:00"]);
        let after = publish_cycle(&mut decoder, T0 + 10_000, ["0.10A", "230.00V", "1.00001kWh", "0 Days, 00:00:05"]);
        assert!(after.restarted);
        assert_eq!(after.readings[0].ts_ms, T0 + 10_000);
    }

    #[test]
    fn wrong_unit_rejects_one_value() {
        let mut decoder = decoder();
        let decoded = publish_cycle(&mut decoder, T0, ["0.42V", "18.64V", "0.05359kWh", "0 Days, 00:11:00"]);
        assert_eq!(decoded.rejections.len(), 1);
        assert_eq!(decoded.rejections[0].reason, RejectReason::WrongUnit);
        assert!(decoded.readings.iter().all(|r| r.metric != Metric::Current));
        assert!(decoded.readings.iter().any(|r| r.metric == Metric::Voltage));
    }

    #[test]
    fn negative_current_is_rejected() {
        let mut decoder = decoder();
        let decoded = publish_cycle(&mut decoder, T0, ["-0.02A", "18.64V", "nan", "0 Days, 00:11:00"]);
        let reasons: Vec<_> = decoded.rejections.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, vec![RejectReason::Negative, RejectReason::NotANumber]);
    }

    #[test]
    fn missing_uptime_flushes_on_repeat() {
        let mut decoder = decoder();
        decoder.decode("Smart_Energie/data/Current", b"0.30A", T0);
        let decoded = decoder.decode("Smart_Energie/data/Current", b"0.31A", T0 + 5_000);
        assert_eq!(decoded.readings.len(), 1);
        assert_eq!(decoded.readings[0].value, 0.30);
        assert_eq!(decoded.readings[0].ts_ms, T0);
    }
}
