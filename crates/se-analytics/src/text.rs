//! Wording helpers for messages in English and French: numbers, durations,
//! percentages, metric names and the device a message is about.

use se_core::{ChannelName, DeviceId, Lang, Metric};

/// Formats `value` with `decimals` decimals, with a decimal comma in French.
pub(crate) fn number(value: f64, decimals: usize, lang: Lang) -> String {
    let text = format!("{value:.decimals$}");
    match lang {
        Lang::En => text,
        Lang::Fr => text.replace('.', ","),
    }
}

/// Formats a percentage, as in "18 %" or "2.5 %": one decimal below 10 %
/// unless the value is whole at that precision.
pub(crate) fn percent(value: f64, lang: Lang) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    let decimals = if rounded.abs() >= 10.0 || rounded.fract() == 0.0 { 0 } else { 1 };
    // French puts a (non-breaking) space before the percent sign; English
    // style guides differ, and this project writes "18 %" in both.
    format!("{}\u{a0}%", number(value, decimals, lang))
}

/// Formats a duration in the largest unit that keeps it readable. Below a
/// second it is in whole milliseconds, because a tenth of a second would
/// show 40 ms as "0.0 s".
pub(crate) fn duration(ms: i64, lang: Lang) -> String {
    let seconds = ms as f64 / 1000.0;
    if ms.abs() < 1000 {
        format!("{ms} ms")
    } else if seconds < 120.0 {
        format!("{} s", number(seconds, if seconds < 10.0 && seconds.fract() != 0.0 { 1 } else { 0 }, lang))
    } else if seconds < 120.0 * 60.0 {
        format!("{} min", number(seconds / 60.0, 0, lang))
    } else if seconds < 48.0 * 3600.0 {
        format!("{} h", number(seconds / 3600.0, 1, lang))
    } else {
        let unit = if lang == Lang::Fr { "j" } else { "d" };
        format!("{} {unit}", number(seconds / 86_400.0, 1, lang))
    }
}

/// Name of a metric for a sentence, in lower case.
pub(crate) fn metric_name(metric: Metric, lang: Lang) -> &'static str {
    match (metric, lang) {
        (Metric::Power, Lang::En) => "power",
        (Metric::Power, Lang::Fr) => "la puissance",
        (Metric::ApparentPower, Lang::En) => "apparent power",
        (Metric::ApparentPower, Lang::Fr) => "la puissance apparente",
        (Metric::ReactivePower, Lang::En) => "reactive power",
        (Metric::ReactivePower, Lang::Fr) => "la puissance réactive",
        (Metric::Voltage, Lang::En) => "voltage",
        (Metric::Voltage, Lang::Fr) => "la tension",
        (Metric::Current, Lang::En) => "current",
        (Metric::Current, Lang::Fr) => "le courant",
        (Metric::PowerFactor, Lang::En) => "power factor",
        (Metric::PowerFactor, Lang::Fr) => "le facteur de puissance",
        (Metric::Frequency, Lang::En) => "frequency",
        (Metric::Frequency, Lang::Fr) => "la fréquence",
        (Metric::Energy, Lang::En) => "energy",
        (Metric::Energy, Lang::Fr) => "l'énergie",
        (Metric::ReturnedEnergy, Lang::En) => "returned energy",
        (Metric::ReturnedEnergy, Lang::Fr) => "l'énergie réinjectée",
        (Metric::ApparentEnergy, Lang::En) => "apparent energy",
        (Metric::ApparentEnergy, Lang::Fr) => "l'énergie apparente",
        (Metric::Temperature, Lang::En) => "temperature",
        (Metric::Temperature, Lang::Fr) => "la température",
        (Metric::Utilization, Lang::En) => "utilization",
        (Metric::Utilization, Lang::Fr) => "l'utilisation",
        (Metric::FanSpeed, Lang::En) => "fan speed",
        (Metric::FanSpeed, Lang::Fr) => "la vitesse du ventilateur",
        (Metric::PowerLimit, Lang::En) => "power limit",
        (Metric::PowerLimit, Lang::Fr) => "la limite de puissance",
        (Metric::Clock, Lang::En) => "clock",
        (Metric::Clock, Lang::Fr) => "la fréquence d'horloge",
        (Metric::MemoryUsed, Lang::En) => "memory used",
        (Metric::MemoryUsed, Lang::Fr) => "la mémoire utilisée",
        (Metric::Hashrate, Lang::En) => "hashrate",
        (Metric::Hashrate, Lang::Fr) => "le hashrate",
        (Metric::Humidity, Lang::En) => "humidity",
        (Metric::Humidity, Lang::Fr) => "l'humidité",
        (Metric::Uptime, Lang::En) => "uptime",
        (Metric::Uptime, Lang::Fr) => "la durée de fonctionnement",
    }
}

/// French "de" followed by the metric's name, contracted as French requires:
/// "de la puissance", "de l'énergie", but "du courant" rather than "de le courant".
pub(crate) fn of_metric_fr(metric: Metric) -> String {
    let name = metric_name(metric, Lang::Fr);
    match name.strip_prefix("le ") {
        Some(rest) => format!("du {rest}"),
        None => format!("de {name}"),
    }
}

/// Names the device a message is about: "GPU 3 of rig-01" for a `gpuN` channel,
/// "rig-01" for the `main` channel, else "channel X of DEVICE".
pub(crate) fn subject(device: &DeviceId, channel: &ChannelName, lang: Lang) -> String {
    let channel = channel.as_str();
    let gpu_index = channel.strip_prefix("gpu").filter(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
    match (gpu_index, channel, lang) {
        (Some(index), _, Lang::En) => format!("GPU {index} of {device}"),
        (Some(index), _, Lang::Fr) => format!("Le GPU {index} de {device}"),
        (None, "main", Lang::En) => device.to_string(),
        (None, "main", Lang::Fr) => format!("L'appareil {device}"),
        (None, _, Lang::En) => format!("Channel {channel} of {device}"),
        (None, _, Lang::Fr) => format!("Le canal {channel} de {device}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_numbers_use_decimal_comma() {
        assert_eq!(number(1.25, 2, Lang::Fr), "1,25");
        assert_eq!(number(1.25, 2, Lang::En), "1.25");
        assert_eq!(percent(18.2, Lang::Fr), "18\u{a0}%");
        assert_eq!(percent(2.5, Lang::Fr), "2,5\u{a0}%");
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration(30_000, Lang::En), "30 s");
        assert_eq!(duration(2_500, Lang::Fr), "2,5 s");
        assert_eq!(duration(25 * 60_000, Lang::En), "25 min");
        assert_eq!(duration(3 * 3_600_000, Lang::Fr), "3,0 h");
        assert_eq!(duration(3 * 86_400_000, Lang::Fr), "3,0 j");
    }

    #[test]
    fn subsecond_durations_use_milliseconds() {
        assert_eq!(duration(7, Lang::En), "7 ms");
        assert_eq!(duration(40, Lang::Fr), "40 ms");
        assert_eq!(duration(999, Lang::En), "999 ms");
        assert_eq!(duration(1_000, Lang::En), "1 s");
    }

    #[test]
    fn subject_names_gpus() {
        let device = DeviceId::parse("rig-01").unwrap();
        assert_eq!(subject(&device, &ChannelName::parse("gpu3").unwrap(), Lang::En), "GPU 3 of rig-01");
        assert_eq!(subject(&device, &ChannelName::parse("gpu3").unwrap(), Lang::Fr), "Le GPU 3 de rig-01");
        assert_eq!(subject(&device, &ChannelName::parse("wall").unwrap(), Lang::En), "Channel wall of rig-01");
    }

    #[test]
    fn french_of_metric_contracts_le() {
        assert_eq!(of_metric_fr(Metric::Hashrate), "du hashrate");
        assert_eq!(of_metric_fr(Metric::Current), "du courant");
        assert_eq!(of_metric_fr(Metric::Power), "de la puissance");
        assert_eq!(of_metric_fr(Metric::Energy), "de l'énergie");
    }
}
