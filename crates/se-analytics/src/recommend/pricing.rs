//! Prices a month of a device's daily power profile under the site's tariff.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use se_core::TimestampMs;
use se_energy::{cost, Decimal, EnergyPiece, Tariff};

use super::{invalid, RecommendError, SavingEstimate};

/// Hours in the 30-day month used by every estimate.
pub const HOURS_PER_MONTH: f64 = 30.0 * 24.0;

/// Tariff and calendar used to price a saving.
#[derive(Debug, Clone)]
pub struct Pricing {
    pub tariff: Tariff,
    pub time_zone: TimeZone,
    /// Start of the 30 days that are priced; the local day types (weekday,
    /// weekend, holiday) and months of this span set the prices.
    pub month_start_ms: TimestampMs,
    /// Mean power of the rest of the site, in W, added before and after, so
    /// tiered blocks and demand charges apply at the site's level. 0 prices
    /// the device alone.
    pub site_base_w: f64,
}

impl Pricing {
    /// Estimates the saving of moving a device from the `before` to the
    /// `after` profile: mean power in W for each local hour of the day (0 to 23).
    pub(crate) fn estimate(&self, before: &[f64; 24], after: &[f64; 24]) -> Result<SavingEstimate, RecommendError> {
        for (name, profile) in [("profile before", before), ("profile after", after)] {
            if let Some(bad) = profile.iter().find(|w| !w.is_finite() || **w < 0.0) {
                return Err(invalid(name, bad, "finite powers of 0 W or more for each hour"));
            }
        }
        if !self.site_base_w.is_finite() || self.site_base_w < 0.0 {
            return Err(invalid("site_base_w", self.site_base_w, "the site's mean power in W, 0 or more"));
        }
        let bill_before = self.bill(before)?;
        let bill_after = self.bill(after)?;
        let kwh_per_month = (before.iter().sum::<f64>() - after.iter().sum::<f64>()) * 30.0 / 1000.0;
        Ok(SavingEstimate { kwh_per_month, money_per_month: bill_before - bill_after, currency: self.tariff.currency.clone() })
    }

    fn bill(&self, profile: &[f64; 24]) -> Result<Decimal, RecommendError> {
        let hour_ms = 3_600_000;
        let pieces: Vec<EnergyPiece> = (0..30 * 24)
            .map(|index| {
                let start_ms = self.month_start_ms + index * hour_ms;
                let local_hour = Timestamp::from_millisecond(start_ms)
                    .map(|ts| ts.to_zoned_datetime(self.time_zone.clone()).hour())
                    .map_err(|_| invalid("month_start_ms", self.month_start_ms, "a time between the years -9999 and 9999"))?;
                let watts = self.site_base_w + profile[usize::try_from(local_hour).unwrap_or(0) % 24];
                Ok(EnergyPiece { start_ms, end_ms: start_ms + hour_ms, wh: watts })
            })
            .collect::<Result<_, RecommendError>>()?;
        Ok(cost(&pieces, &self.tariff, &self.time_zone)?.total)
    }
}
