//! CPU package power from the Linux powercap RAPL counters.
//!
//! Each package zone `intel-rapl:N` (also used on AMD Zen CPUs) has an energy
//! counter `energy_uj` in microjoules that wraps to 0 after
//! `max_energy_range_uj`. Power is the counter difference over the time
//! between two reads. Sub-zones (`intel-rapl:N:M`, cores and DRAM) are parts
//! of their package and are skipped, and so is the `psys` zone, which
//! covers the whole platform. Since Linux 5.10 the counters are readable by
//! root only.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::AgentError;

/// Default powercap directory of Linux.
pub const DEFAULT_POWERCAP_DIR: &str = "/sys/class/powercap";

/// Energy used between two counter reads, in microjoules, allowing one wrap.
/// The counter runs from 0 to `max_range_uj` inclusive.
pub fn counter_delta_uj(previous: u64, current: u64, max_range_uj: u64) -> u64 {
    if current >= previous {
        current - previous
    } else {
        max_range_uj.saturating_sub(previous) + current + 1
    }
}

#[derive(Debug)]
struct Zone {
    name: String,
    energy_path: PathBuf,
    max_range_uj: u64,
    last: Option<u64>,
}

/// Reader of the package zones under one powercap directory.
#[derive(Debug)]
pub struct RaplReader {
    zones: Vec<Zone>,
    last_read: Option<Instant>,
    warned: bool,
}

impl RaplReader {
    /// Finds the package zones under `powercap_dir` and checks that their
    /// counters are readable.
    pub fn open(powercap_dir: &Path) -> Result<RaplReader, AgentError> {
        let unavailable = |reason: String| AgentError::RaplUnavailable { path: powercap_dir.to_owned(), reason };
        let entries = fs::read_dir(powercap_dir).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => unavailable("the directory does not exist; this machine or VM has no powercap RAPL interface".to_owned()),
            _ => unavailable(format!("cannot list the directory: {error}")),
        })?;
        let mut zones = Vec::new();
        let mut last_error = None;
        let mut names: Vec<_> = entries.filter_map(Result::ok).map(|entry| entry.path()).collect();
        names.sort();
        for path in names {
            let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else { continue };
            let is_package_zone = file_name
                .strip_prefix("intel-rapl:")
                .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()));
            if !is_package_zone {
                continue;
            }
            let name = fs::read_to_string(path.join("name")).map(|name| name.trim().to_owned()).unwrap_or_else(|_| file_name.to_owned());
            if name == "psys" {
                continue;
            }
            let energy_path = path.join("energy_uj");
            let zone = read_counter(&energy_path).and_then(|_| read_counter(&path.join("max_energy_range_uj")));
            match zone {
                Ok(max_range_uj) => zones.push(Zone { name, energy_path, max_range_uj, last: None }),
                Err(error) => last_error = Some(error),
            }
        }
        if zones.is_empty() {
            let reason = last_error.unwrap_or_else(|| "no intel-rapl package zone found".to_owned());
            return Err(unavailable(reason));
        }
        Ok(RaplReader { zones, last_read: None, warned: false })
    }

    /// Names of the zones read, such as `package-0`.
    pub fn zone_names(&self) -> Vec<String> {
        self.zones.iter().map(|zone| zone.name.clone()).collect()
    }

    /// Reads the counters and returns the total package power in watts since
    /// the previous call. Returns `None` on the first call and when a counter cannot be read.
    pub fn sample(&mut self) -> Option<f64> {
        self.sample_at(Instant::now())
    }

    /// [`RaplReader::sample`] with the read time given by the caller.
    pub fn sample_at(&mut self, now: Instant) -> Option<f64> {
        let elapsed_s = self.last_read.map(|last| now.duration_since(last).as_secs_f64());
        self.last_read = Some(now);
        let mut total_uj = 0u64;
        let mut complete = true;
        for zone in &mut self.zones {
            match read_counter(&zone.energy_path) {
                Ok(current) => {
                    if let Some(previous) = zone.last {
                        total_uj += counter_delta_uj(previous, current, zone.max_range_uj);
                    }
                    zone.last = Some(current);
                }
                Err(error) => {
                    if !self.warned {
                        tracing::warn!(path = %zone.energy_path.display(), %error, "cannot read a RAPL counter; CPU power is left out");
                        self.warned = true;
                    }
                    zone.last = None;
                    complete = false;
                }
            }
        }
        let elapsed_s = elapsed_s.filter(|elapsed| *elapsed > 0.0)?;
        complete.then(|| total_uj as f64 / 1_000_000.0 / elapsed_s)
    }
}

fn read_counter(path: &Path) -> Result<u64, String> {
    let text = fs::read_to_string(path).map_err(|error| match error.kind() {
        // Since Linux 5.10 the counters are readable by root only.
        std::io::ErrorKind::PermissionDenied => format!("permission denied on {}; run the agent as root to read it", path.display()),
        _ => format!("cannot read {}: {error}", path.display()),
    })?;
    text.trim().parse::<u64>().map_err(|_| format!("{} holds {:?}, which is not a counter value", path.display(), text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_without_wrap() {
        assert_eq!(counter_delta_uj(1_000, 4_000, 10_000), 3_000);
    }

    #[test]
    fn delta_across_wrap() {
        // 9_000 -> max 10_000 is 1_000, then 0 -> 500 is 500, plus the step from max to 0.
        assert_eq!(counter_delta_uj(9_000, 500, 10_000), 1_501);
    }

    fn write_zone(root: &Path, zone: &str, name: &str, energy: u64, max: u64) {
        let dir = root.join(zone);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        fs::write(dir.join("energy_uj"), format!("{energy}\n")).unwrap();
        fs::write(dir.join("max_energy_range_uj"), format!("{max}\n")).unwrap();
    }

    #[test]
    fn reads_package_zones_only() {
        let root = tempfile::tempdir().unwrap();
        write_zone(root.path(), "intel-rapl:0", "package-0", 10, 1_000_000);
        write_zone(root.path(), "intel-rapl:0:0", "core", 10, 1_000_000);
        write_zone(root.path(), "intel-rapl:1", "psys", 10, 1_000_000);
        let reader = RaplReader::open(root.path()).unwrap();
        assert_eq!(reader.zone_names(), vec!["package-0".to_owned()]);
    }

    #[test]
    fn power_follows_counter_across_wrap() {
        let root = tempfile::tempdir().unwrap();
        write_zone(root.path(), "intel-rapl:0", "package-0", 999_000_000, 1_000_000_000);
        let mut reader = RaplReader::open(root.path()).unwrap();
        let start = Instant::now();
        assert_eq!(reader.sample_at(start), None);
        fs::write(root.path().join("intel-rapl:0/energy_uj"), "5000000\n").unwrap();
        let watts = reader.sample_at(start + std::time::Duration::from_secs(2)).unwrap();
        // 1 J up to the wrap, 5 J after it, over 2 s.
        assert!((watts - 3.0).abs() < 1e-3, "{watts}");
    }

    #[test]
    fn missing_directory_is_unavailable() {
        let root = tempfile::tempdir().unwrap();
        let error = RaplReader::open(&root.path().join("absent")).unwrap_err();
        assert!(matches!(error, AgentError::RaplUnavailable { .. }), "{error}");
    }
}
