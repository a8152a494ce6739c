//! CPU package energy from Linux's powercap RAPL counters, where the machine exposes them
//! (Intel, and AMD Zen on recent kernels). Virtual machines and containers usually do not, and
//! then the reason is reported instead of a number.

use std::path::{Path, PathBuf};

const POWERCAP: &str = "/sys/class/powercap";

/// The package-level RAPL domains, read together (a two-socket machine has two).
#[derive(Debug, Clone)]
pub struct RaplCounters {
    domains: Vec<Domain>,
}

#[derive(Debug, Clone)]
struct Domain {
    energy: PathBuf,
    /// The counter wraps at this value, in microjoules.
    max_range_uj: u64,
}

/// A reading, to subtract from a later one.
#[derive(Debug, Clone)]
pub struct EnergyReading(Vec<u64>);

impl RaplCounters {
    /// The package domains, or a sentence saying why there are none.
    pub fn open() -> Result<Self, String> {
        Self::open_under(Path::new(POWERCAP))
    }

    fn open_under(root: &Path) -> Result<Self, String> {
        let entries = std::fs::read_dir(root)
            .map_err(|_| format!("no RAPL powercap interface ({} absent)", root.display()))?;
        let mut domains = Vec::new();
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().to_string();
            // Packages are `intel-rapl:N`; their sub-domains (`intel-rapl:N:M`) are inside them.
            if !name.starts_with("intel-rapl:") || name.matches(':').count() != 1 {
                continue;
            }
            let dir = e.path();
            let energy = dir.join("energy_uj");
            if std::fs::read_to_string(&energy).is_err() {
                return Err(format!(
                    "{} is not readable (RAPL needs root since Linux 5.10)",
                    energy.display()
                ));
            }
            let max_range_uj = std::fs::read_to_string(dir.join("max_energy_range_uj"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(u64::MAX);
            domains.push(Domain {
                energy,
                max_range_uj,
            });
        }
        if domains.is_empty() {
            return Err(format!("no RAPL package domain under {}", root.display()));
        }
        Ok(Self { domains })
    }

    pub fn read(&self) -> Option<EnergyReading> {
        self.domains
            .iter()
            .map(|d| std::fs::read_to_string(&d.energy).ok()?.trim().parse().ok())
            .collect::<Option<Vec<u64>>>()
            .map(EnergyReading)
    }

    /// Joules between two readings, allowing for one wrap of each counter.
    pub fn joules_between(&self, before: &EnergyReading, after: &EnergyReading) -> f64 {
        self.domains
            .iter()
            .zip(before.0.iter().zip(&after.0))
            .map(|(d, (&b, &a))| {
                let uj = if a >= b {
                    a - b
                } else {
                    d.max_range_uj - b + a
                };
                uj as f64 / 1e6
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_package_domains_and_handles_a_wrap() {
        let root = tempfile::tempdir().unwrap();
        let pkg = root.path().join("intel-rapl:0");
        std::fs::create_dir_all(pkg.join("intel-rapl:0:0")).unwrap();
        std::fs::write(pkg.join("energy_uj"), "999000000\n").unwrap();
        std::fs::write(pkg.join("max_energy_range_uj"), "1000000000\n").unwrap();
        let rapl = RaplCounters::open_under(root.path()).unwrap();
        let before = rapl.read().unwrap();
        std::fs::write(pkg.join("energy_uj"), "2000000\n").unwrap();
        let after = rapl.read().unwrap();
        // 1,000,000 uJ to the wrap plus 2,000,000 after it.
        assert!((rapl.joules_between(&before, &after) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn absent_interface_says_why() {
        let err = RaplCounters::open_under(Path::new("/nonexistent/powercap")).unwrap_err();
        assert!(err.contains("no RAPL powercap interface"), "{err}");
    }
}
