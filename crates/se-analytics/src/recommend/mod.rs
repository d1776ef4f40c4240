//! Savings recommendations: each names a device and a structured action,
//! with an estimate of the kWh and the money it saves per month under the
//! site's tariff.
//!
//! Money is priced with se-energy's [`cost`]. The device's daily power
//! profile before and after the action is laid over 30 days from
//! [`Pricing::month_start_ms`], on top of the rest of the site's load
//! ([`Pricing::site_base_w`]). The saving is the difference of the two bills. Pricing the whole site keeps tiered blocks at the site's marginal
//! price and counts a lower peak demand. A recommendation is serializable,
//! so the server can store it and, once it is applied, compare the estimate
//! with the saving that [`measure_saving`] computes from measured energy.

mod achieved;
mod cases;
mod pricing;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use se_core::{ChannelName, DeviceId, Lang};
use se_energy::{Decimal, EnergyError};

use crate::text::{number, percent, subject};

pub use achieved::{measure_saving, AchievedSaving, Usage};
pub use cases::{
    recommend_efficiency_service, recommend_idle_shutdown, recommend_off_peak_shift, recommend_power_cap, recommend_power_factor,
    EfficiencyServiceInput, IdleConfig, OffPeakInput, PowerCapConfig, PowerFactorConfig,
};
pub use pricing::{Pricing, HOURS_PER_MONTH};

/// Action to take, with the settings behind its estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Set the GPU's power limit to `limit_w`, which keeps `kept_hashrate_pct` of its hashrate.
    SetPowerLimit { limit_w: f64, current_typical_w: f64, kept_hashrate_pct: f64 },
    /// Run the load in the `to_hours` local hours instead of the `from_hours`.
    ShiftToOffPeak { kwh_per_day: f64, from_hours: Vec<u8>, to_hours: Vec<u8> },
    /// Switch the device off or suspend it while idle, instead of drawing standby power.
    SwitchOffWhenIdle { standby_w: f64, idle_hours_per_day: f64 },
    /// Correct the power factor, for example with a capacitor bank or supplies with active PFC.
    CorrectPowerFactor { power_factor: f64, target: f64 },
    /// Service a GPU whose hashrate per watt dropped: clean heatsink and fans, check thermal paste and memory clocks.
    ServiceGpu { drop_pct: f64, mean_power_w: f64 },
}

impl Action {
    pub fn code(&self) -> &'static str {
        match self {
            Action::SetPowerLimit { .. } => "set_power_limit",
            Action::ShiftToOffPeak { .. } => "shift_to_off_peak",
            Action::SwitchOffWhenIdle { .. } => "switch_off_when_idle",
            Action::CorrectPowerFactor { .. } => "correct_power_factor",
            Action::ServiceGpu { .. } => "service_gpu",
        }
    }
}

/// Estimated saving of a recommendation, per month of 30 days.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavingEstimate {
    pub kwh_per_month: f64,
    /// Bill difference under the site's tariff, rounded to the currency's minor unit.
    pub money_per_month: Decimal,
    pub currency: String,
}

/// One recommendation for one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub device: DeviceId,
    pub channel: ChannelName,
    pub action: Action,
    pub estimate: SavingEstimate,
}

impl Recommendation {
    /// Plain-language recommendation in `lang`, with the action's numbers and the estimate.
    pub fn message(&self, lang: Lang) -> String {
        self.message_with(&self.saving_text(lang), lang)
    }

    /// Like [`Recommendation::message`], with the saving in kWh only, for a
    /// site without a tariff, whose estimate has no meaningful amount of money.
    pub fn message_without_money(&self, lang: Lang) -> String {
        let kwh = number(self.estimate.kwh_per_month, 1, lang);
        let saving = match lang {
            Lang::En => format!("saves about {kwh} kWh per month"),
            Lang::Fr => format!("économie d'environ {kwh} kWh par mois"),
        };
        self.message_with(&saving, lang)
    }

    fn message_with(&self, saving: &str, lang: Lang) -> String {
        let subject = subject(&self.device, &self.channel, lang);
        match (&self.action, lang) {
            (Action::SetPowerLimit { limit_w, current_typical_w, kept_hashrate_pct }, Lang::En) => format!(
                "Cap {} at {} W (it now draws about {} W), keeping {} of its hashrate: {saving}",
                lower_first(&subject),
                number(*limit_w, 0, lang),
                number(*current_typical_w, 0, lang),
                percent(*kept_hashrate_pct, lang)
            ),
            (Action::SetPowerLimit { limit_w, current_typical_w, kept_hashrate_pct }, Lang::Fr) => format!(
                "Limitez {} à {} W (il consomme environ {} W), en gardant {} de son hashrate : {saving}",
                lower_first(&subject),
                number(*limit_w, 0, lang),
                number(*current_typical_w, 0, lang),
                percent(*kept_hashrate_pct, lang)
            ),
            (Action::ShiftToOffPeak { kwh_per_day, from_hours, to_hours }, Lang::En) => format!(
                "Move {} kWh a day of {} from {} to {}: {saving}",
                number(*kwh_per_day, 1, lang),
                lower_first(&subject),
                hours(from_hours),
                hours(to_hours)
            ),
            (Action::ShiftToOffPeak { kwh_per_day, from_hours, to_hours }, Lang::Fr) => format!(
                "Déplacez {} kWh par jour {} de {} vers {} : {saving}",
                number(*kwh_per_day, 1, lang),
                of_subject_fr(&subject),
                hours(from_hours),
                hours(to_hours)
            ),
            (Action::SwitchOffWhenIdle { standby_w, idle_hours_per_day }, Lang::En) => format!(
                "{subject} is idle about {} h a day while drawing {} W; switch it off or suspend it when idle: {saving}",
                number(*idle_hours_per_day, 1, lang),
                number(*standby_w, 0, lang)
            ),
            (Action::SwitchOffWhenIdle { standby_w, idle_hours_per_day }, Lang::Fr) => format!(
                "{subject} est inactif environ {} h par jour en consommant {} W ; éteignez-le ou mettez-le en veille quand il est inactif : {saving}",
                number(*idle_hours_per_day, 1, lang),
                number(*standby_w, 0, lang)
            ),
            (Action::CorrectPowerFactor { power_factor, target }, Lang::En) => format!(
                "{subject} has a power factor of {}; raise it to {} with a capacitor bank or supplies with active PFC: {saving}",
                number(*power_factor, 2, lang),
                number(*target, 2, lang)
            ),
            (Action::CorrectPowerFactor { power_factor, target }, Lang::Fr) => format!(
                "{subject} a un facteur de puissance de {} ; portez-le à {} avec une batterie de condensateurs ou des alimentations à PFC actif : {saving}",
                number(*power_factor, 2, lang),
                number(*target, 2, lang)
            ),
            (Action::ServiceGpu { drop_pct, .. }, Lang::En) => format!(
                "{subject} lost {} of its hashrate per watt; clean its heatsink and fans, and check the thermal paste and memory clocks: {saving}",
                percent(*drop_pct, lang)
            ),
            (Action::ServiceGpu { drop_pct, .. }, Lang::Fr) => format!(
                "{subject} a perdu {} de son hashrate par watt ; nettoyez le radiateur et les ventilateurs, vérifiez la pâte thermique et les fréquences mémoire : {saving}",
                percent(*drop_pct, lang)
            ),
        }
    }

    fn saving_text(&self, lang: Lang) -> String {
        let estimate = &self.estimate;
        let money = format!("{} {}", estimate.money_per_month, estimate.currency);
        let money = if lang == Lang::Fr { money.replace('.', ",") } else { money };
        // A shift to cheaper hours moves energy without saving any, so only the money counts.
        if estimate.kwh_per_month.abs() < 0.05 {
            return match lang {
                Lang::En => format!("saves about {money} per month"),
                Lang::Fr => format!("économie d'environ {money} par mois"),
            };
        }
        match lang {
            Lang::En => format!("saves about {} kWh ({money}) per month", number(estimate.kwh_per_month, 1, lang)),
            Lang::Fr => format!("économie d'environ {} kWh ({money}) par mois", number(estimate.kwh_per_month, 1, lang)),
        }
    }
}

/// Lowers the first letter of a subject that starts a clause, such as "GPU 3 of rig-01" (unchanged) or "Le GPU" (to "le GPU").
fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if text.starts_with("Le ") || text.starts_with("L'") || text.starts_with("Channel ") => first.to_lowercase().chain(chars).collect(),
        _ => text.to_owned(),
    }
}

/// French "de" followed by a subject, contracted as French requires: "du GPU 3
/// de rig-01" rather than "de le GPU", "de l'appareil site".
fn of_subject_fr(subject: &str) -> String {
    if let Some(rest) = subject.strip_prefix("Le ") {
        format!("du {rest}")
    } else {
        format!("de {}", lower_first(subject))
    }
}

/// Formats local hours as ranges, such as "08:00-12:00, 18:00-20:00".
fn hours(list: &[u8]) -> String {
    let mut sorted = list.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u8, u8)> = Vec::new();
    for hour in sorted {
        match ranges.last_mut() {
            Some((_, end)) if *end == hour => *end = hour + 1,
            _ => ranges.push((hour, hour + 1)),
        }
    }
    ranges.iter().map(|(from, to)| format!("{from:02}:00-{to:02}:00")).collect::<Vec<_>>().join(", ")
}

/// Input a recommendation cannot use. Each message names the value and the fix.
#[derive(Debug, Clone, PartialEq)]
pub enum RecommendError {
    /// An input value is outside its valid range.
    InvalidInput { name: &'static str, value: String, expected: &'static str },
    /// The tariff or an energy value was rejected by se-energy.
    Energy(EnergyError),
}

impl RecommendError {
    /// Formats the message in `lang`. The detail of an [`EnergyError`] stays in English.
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (RecommendError::InvalidInput { name, value, expected }, Lang::En) => format!("invalid {name} {value}; expected {expected}"),
            (RecommendError::InvalidInput { name, value, expected }, Lang::Fr) => format!("{name} invalide : {value} ; attendu : {expected}"),
            (RecommendError::Energy(error), Lang::En) => format!("the saving could not be priced: {error}"),
            (RecommendError::Energy(error), Lang::Fr) => format!("l'économie n'a pas pu être chiffrée : {error}"),
        }
    }
}

impl std::fmt::Display for RecommendError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message(Lang::En))
    }
}

impl std::error::Error for RecommendError {}

impl From<EnergyError> for RecommendError {
    fn from(error: EnergyError) -> Self {
        RecommendError::Energy(error)
    }
}

pub(crate) fn invalid(name: &'static str, value: impl ToString, expected: &'static str) -> RecommendError {
    RecommendError::InvalidInput { name, value: value.to_string(), expected }
}
