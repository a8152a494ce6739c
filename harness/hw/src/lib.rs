//! effbench-hw: describe the machine a benchmark ran on.
//!
//! One job: [`detect`] the CPU (model, cores, SIMD features found at run time), RAM, OS and NVIDIA
//! GPUs, as a serialisable [`HardwareInfo`] that goes into every result's provenance, plus the
//! process's resident memory ([`peak_rss_bytes`], [`current_rss_bytes`]). Nothing here fails: a
//! machine without an NVIDIA driver gets [`GpuReport::None`] with the reason, never a panic.

pub mod gpu_sampler;
pub mod rapl;
pub mod roofline;

use serde::{Deserialize, Serialize};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// Everything [`detect`] learns about the machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HardwareInfo {
    pub cpu: CpuInfo,
    pub memory: MemoryInfo,
    pub os: OsInfo,
    pub gpus: GpuReport,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// Marketing name, e.g. "AMD EPYC 7B13".
    pub brand: String,
    /// CPUID vendor string, e.g. "GenuineIntel", "AuthenticAMD".
    pub vendor: String,
    /// Architecture, e.g. "x86_64", "aarch64".
    pub arch: String,
    /// `None` where the OS does not say (some containers and VMs hide the topology).
    pub physical_cores: Option<usize>,
    /// Hardware threads the machine has.
    pub logical_threads: usize,
    /// Threads this process may use (CPU affinity and cgroup quotas applied); what a thread pool
    /// sizes itself to, so it is the figure to compare runs by.
    pub usable_threads: usize,
    /// SIMD features the CPU and OS both support, detected at run time (not the build target's).
    pub simd: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryInfo {
    pub total_bytes: u64,
    /// Memory that can be handed to new allocations without swapping (includes reclaimable cache).
    pub available_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OsInfo {
    /// e.g. "Ubuntu 22.04" (name and version as the OS reports them).
    pub name: String,
    pub kernel: String,
    pub hostname: String,
}

/// The NVIDIA GPUs NVML sees, or why there are none.
///
/// Serialised with an explicit `available` flag so a JSON reader can tell the cases apart:
/// `{"available": false, "reason": "..."}` or
/// `{"available": true, "driver_version": "...", "cuda_driver_version": "12.4", "devices": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "GpuReportRepr", try_from = "GpuReportRepr")]
pub enum GpuReport {
    Nvidia {
        driver_version: String,
        /// Highest CUDA version the driver supports, "major.minor"; `None` if NVML won't say.
        cuda_driver_version: Option<String>,
        devices: Vec<GpuDevice>,
    },
    None {
        /// A sentence for a person that starts "no GPU: " and names the cause, e.g. "no GPU: no
        /// NVIDIA driver (...)" or "no GPU: no NVML: the NVIDIA kernel driver is loaded but ...".
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuDevice {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    /// `None` where NVML refuses (e.g. some MIG or vGPU setups) rather than failing the report.
    pub memory_total_bytes: Option<u64>,
    pub memory_used_bytes: Option<u64>,
    /// Memory interface width and top memory clock, as NVML reports them: together the peak
    /// memory bandwidth a decode step is measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bus_width_bits: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_clock_mhz: Option<u32>,
}

impl GpuDevice {
    /// Peak memory bandwidth in bytes/s: two transfers per memory clock (NVML reports the
    /// DDR/HBM clock), bus width / 8 bytes each. H100 SXM: 5120 bits at 2619 MHz = 3.35 TB/s,
    /// the datasheet figure.
    pub fn peak_memory_bandwidth_bytes_per_s(&self) -> Option<f64> {
        let (bits, mhz) = (self.memory_bus_width_bits?, self.max_memory_clock_mhz?);
        Some(2.0 * mhz as f64 * 1e6 * bits as f64 / 8.0)
    }
}

/// The wire form of [`GpuReport`]; serde's tagged enums cannot use a boolean tag.
#[derive(Serialize, Deserialize)]
struct GpuReportRepr {
    available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    driver_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cuda_driver_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    devices: Vec<GpuDevice>,
}

impl From<GpuReport> for GpuReportRepr {
    fn from(report: GpuReport) -> Self {
        match report {
            GpuReport::Nvidia {
                driver_version,
                cuda_driver_version,
                devices,
            } => Self {
                available: true,
                reason: None,
                driver_version: Some(driver_version),
                cuda_driver_version,
                devices,
            },
            GpuReport::None { reason } => Self {
                available: false,
                reason: Some(reason),
                driver_version: None,
                cuda_driver_version: None,
                devices: Vec::new(),
            },
        }
    }
}

/// Why a JSON GPU report could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum GpuReportParseError {
    #[error("GPU report has \"available\": false but no \"reason\"")]
    MissingReason,
    #[error("GPU report has \"available\": true but no \"driver_version\"")]
    MissingDriverVersion,
}

impl TryFrom<GpuReportRepr> for GpuReport {
    type Error = GpuReportParseError;

    fn try_from(repr: GpuReportRepr) -> Result<Self, Self::Error> {
        if repr.available {
            Ok(GpuReport::Nvidia {
                driver_version: repr
                    .driver_version
                    .ok_or(GpuReportParseError::MissingDriverVersion)?,
                cuda_driver_version: repr.cuda_driver_version,
                devices: repr.devices,
            })
        } else {
            Ok(GpuReport::None {
                reason: repr.reason.ok_or(GpuReportParseError::MissingReason)?,
            })
        }
    }
}

impl GpuReport {
    pub fn is_available(&self) -> bool {
        matches!(self, GpuReport::Nvidia { .. })
    }

    pub fn devices(&self) -> &[GpuDevice] {
        match self {
            GpuReport::Nvidia { devices, .. } => devices,
            GpuReport::None { .. } => &[],
        }
    }
}

/// Looks at the machine. Takes a few milliseconds (plus NVML start-up where a driver exists).
pub fn detect() -> HardwareInfo {
    let sys = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    let first_cpu = sys.cpus().first();
    let logical_threads = sys.cpus().len().max(1);
    let cpu = CpuInfo {
        brand: first_cpu
            .map(|c| c.brand().trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_string()),
        vendor: first_cpu
            .map(|c| c.vendor_id().trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_string()),
        arch: std::env::consts::ARCH.to_string(),
        physical_cores: System::physical_core_count().filter(|&n| n > 0),
        logical_threads,
        usable_threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(logical_threads),
        simd: simd_features(),
    };
    let memory = MemoryInfo {
        total_bytes: sys.total_memory(),
        available_bytes: sys.available_memory(),
    };
    let os = OsInfo {
        name: System::long_os_version()
            .or_else(System::name)
            .unwrap_or_else(|| std::env::consts::OS.to_string()),
        kernel: System::kernel_version().unwrap_or_else(|| "unknown".to_string()),
        hostname: System::host_name().unwrap_or_else(|| "unknown".to_string()),
    };
    HardwareInfo {
        cpu,
        memory,
        os,
        gpus: detect_gpus(),
    }
}

impl HardwareInfo {
    /// (field, value) pairs in display order, for a two-column table.
    pub fn rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![
            ("CPU".to_string(), self.cpu.brand.clone()),
            ("CPU vendor".to_string(), self.cpu.vendor.clone()),
            ("Architecture".to_string(), self.cpu.arch.clone()),
            (
                "Physical cores".to_string(),
                self.cpu
                    .physical_cores
                    .map_or_else(|| "unknown".to_string(), |n| n.to_string()),
            ),
            (
                "Logical threads".to_string(),
                self.cpu.logical_threads.to_string(),
            ),
            (
                "Usable threads".to_string(),
                self.cpu.usable_threads.to_string(),
            ),
            (
                "SIMD".to_string(),
                if self.cpu.simd.is_empty() {
                    "none detected".to_string()
                } else {
                    self.cpu.simd.join(" ")
                },
            ),
            (
                "RAM total".to_string(),
                human_bytes(self.memory.total_bytes),
            ),
            (
                "RAM available".to_string(),
                human_bytes(self.memory.available_bytes),
            ),
            ("OS".to_string(), self.os.name.clone()),
            ("Kernel".to_string(), self.os.kernel.clone()),
            ("Hostname".to_string(), self.os.hostname.clone()),
        ];
        match &self.gpus {
            GpuReport::None { reason } => rows.push(("GPU".to_string(), reason.clone())),
            GpuReport::Nvidia {
                driver_version,
                cuda_driver_version,
                devices,
            } => {
                rows.push(("NVIDIA driver".to_string(), driver_version.clone()));
                rows.push((
                    "CUDA (driver)".to_string(),
                    cuda_driver_version
                        .clone()
                        .unwrap_or_else(|| "unknown".to_string()),
                ));
                for d in devices {
                    let memory = match (d.memory_used_bytes, d.memory_total_bytes) {
                        (Some(used), Some(total)) => {
                            format!("{} used of {}", human_bytes(used), human_bytes(total))
                        }
                        (None, Some(total)) => human_bytes(total),
                        _ => "memory unknown".to_string(),
                    };
                    rows.push((
                        format!("GPU {}", d.index),
                        format!("{} ({memory}) {}", d.name, d.uuid),
                    ));
                }
            }
        }
        rows
    }
}

impl std::fmt::Display for HardwareInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = self.rows();
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (key, value) in rows {
            writeln!(f, "{key:<width$}  {value}")?;
        }
        Ok(())
    }
}

/// Binary units, because RAM and GPU memory are sold in GiB.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn simd_features() -> Vec<String> {
    let mut found = Vec::new();
    macro_rules! probe {
        ($($name:tt),* $(,)?) => {
            $(if std::arch::is_x86_feature_detected!($name) {
                found.push($name.to_string());
            })*
        };
    }
    probe!(
        "sse2",
        "sse3",
        "ssse3",
        "sse4.1",
        "sse4.2",
        "popcnt",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "bmi2",
        "avx512f",
        "avx512bw",
        "avx512dq",
        "avx512vl",
        "avx512vnni",
        "avx512bf16",
        "avx512fp16",
    );
    // std only detects AVX-VNNI from Rust 1.89; the workspace's MSRV is older, so read CPUID
    // directly. The std "avx2" probe above already checked that the OS saves the YMM registers.
    if found.iter().any(|f| f == "avx2")
        && raw_cpuid::CpuId::new()
            .get_extended_feature_info()
            .is_some_and(|f| f.has_avx_vnni())
    {
        found.push("avxvnni".to_string());
    }
    found
}

#[cfg(target_arch = "aarch64")]
fn simd_features() -> Vec<String> {
    let mut found = Vec::new();
    macro_rules! probe {
        ($($name:tt),* $(,)?) => {
            $(if std::arch::is_aarch64_feature_detected!($name) {
                found.push($name.to_string());
            })*
        };
    }
    probe!("neon", "fp16", "dotprod", "i8mm", "bf16", "sve", "sve2");
    found
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
fn simd_features() -> Vec<String> {
    Vec::new()
}

/// Why there is no GPU to report, or no NVML to sample one with; its `Display` is the cause
/// (callers prefix it, e.g. "no GPU: ").
#[derive(Debug, thiserror::Error)]
pub(crate) enum NoGpu {
    /// Neither NVML nor the kernel driver: a machine without the NVIDIA driver.
    #[error("no NVIDIA driver (no NVML library libnvidia-ml.so.1, no /proc/driver/nvidia)")]
    NoDriver,
    /// The kernel driver is there but its user-space NVML library is not (a container started
    /// without the NVIDIA runtime, or a partial driver install).
    #[error(
        "no NVML: the NVIDIA kernel driver is loaded but its library libnvidia-ml.so.1 is missing \
         (install the driver's user-space libraries, or start the container with the NVIDIA runtime)"
    )]
    NoNvml,
    #[error("NVIDIA driver installed but not loaded")]
    DriverNotLoaded,
    #[error("no permission to query the NVIDIA driver")]
    NoPermission,
    #[error("the NVIDIA driver reports 0 devices")]
    NoDevices,
    #[error("NVML failed: {0}")]
    Nvml(nvml_wrapper::error::NvmlError),
}

impl NoGpu {
    /// Classifies an NVML error; `kernel_driver` says whether the NVIDIA kernel module is
    /// loaded, which tells "no driver" from "driver without NVML" when the library is missing.
    fn classify(e: nvml_wrapper::error::NvmlError, kernel_driver: bool) -> Self {
        use nvml_wrapper::error::NvmlError as E;
        match e {
            E::LibloadingError(_) | E::LibraryNotFound | E::FailedToLoadSymbol(_) => {
                if kernel_driver {
                    NoGpu::NoNvml
                } else {
                    NoGpu::NoDriver
                }
            }
            E::DriverNotLoaded => NoGpu::DriverNotLoaded,
            E::NoPermission => NoGpu::NoPermission,
            other => NoGpu::Nvml(other),
        }
    }
}

impl From<nvml_wrapper::error::NvmlError> for NoGpu {
    fn from(e: nvml_wrapper::error::NvmlError) -> Self {
        Self::classify(e, kernel_driver_loaded())
    }
}

/// Whether the NVIDIA kernel module is loaded: it creates /proc/driver/nvidia and /dev/nvidiactl.
fn kernel_driver_loaded() -> bool {
    std::path::Path::new("/proc/driver/nvidia/version").exists()
        || std::path::Path::new("/dev/nvidiactl").exists()
}

fn detect_gpus() -> GpuReport {
    match query_nvml() {
        Ok(report) => report,
        Err(e) => GpuReport::None {
            reason: format!("no GPU: {e}"),
        },
    }
}

pub(crate) fn init_nvml() -> Result<nvml_wrapper::Nvml, nvml_wrapper::error::NvmlError> {
    // nvml-wrapper's default name is the unversioned "libnvidia-ml.so", which only the driver's
    // development package installs; a driver-only machine has just the ".so.1" soname.
    #[cfg(target_os = "linux")]
    if let Ok(nvml) = nvml_wrapper::Nvml::builder()
        .lib_path(std::ffi::OsStr::new("libnvidia-ml.so.1"))
        .init()
    {
        return Ok(nvml);
    }
    nvml_wrapper::Nvml::init()
}

fn query_nvml() -> Result<GpuReport, NoGpu> {
    let nvml = init_nvml()?;
    let count = nvml.device_count()?;
    if count == 0 {
        return Err(NoGpu::NoDevices);
    }
    let driver_version = nvml.sys_driver_version()?;
    let cuda_driver_version = nvml.sys_cuda_driver_version().ok().map(|v| {
        format!(
            "{}.{}",
            nvml_wrapper::cuda_driver_version_major(v),
            nvml_wrapper::cuda_driver_version_minor(v)
        )
    });
    let mut devices = Vec::with_capacity(count as usize);
    for index in 0..count {
        // One bad device (fallen off the bus, MIG quirks) should not hide the others.
        let device = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => {
                devices.push(GpuDevice {
                    index,
                    name: format!("unavailable ({e})"),
                    uuid: String::new(),
                    memory_total_bytes: None,
                    memory_used_bytes: None,
                    memory_bus_width_bits: None,
                    max_memory_clock_mhz: None,
                });
                continue;
            }
        };
        let memory = device.memory_info().ok();
        devices.push(GpuDevice {
            index,
            name: device.name().unwrap_or_else(|_| "unknown".to_string()),
            uuid: device.uuid().unwrap_or_default(),
            memory_total_bytes: memory.as_ref().map(|m| m.total),
            memory_used_bytes: memory.as_ref().map(|m| m.used),
            memory_bus_width_bits: device.memory_bus_width().ok(),
            max_memory_clock_mhz: device
                .max_clock_info(nvml_wrapper::enum_wrappers::device::Clock::Memory)
                .ok(),
        });
    }
    Ok(GpuReport::Nvidia {
        driver_version,
        cuda_driver_version,
        devices,
    })
}

/// Highest resident set size this process has reached, in bytes (Linux: `VmHWM`).
///
/// `None` on other systems, where there is no cheap equivalent.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// Resident set size of this process now, in bytes (Linux: `VmRSS`). `None` elsewhere.
pub fn current_rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|kib| kib * 1024)
}

#[cfg(target_os = "linux")]
fn proc_status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&status, key)
}

#[cfg(not(target_os = "linux"))]
fn proc_status_kib(_key: &str) -> Option<u64> {
    None
}

/// Reads a line like `VmHWM:  123456 kB`; the kernel always reports these in kB (KiB).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    let rest = status.lines().find_map(|l| l.strip_prefix(key))?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_reports_a_plausible_machine() {
        let hw = detect();
        assert!(hw.cpu.logical_threads >= 1);
        assert!(hw.cpu.usable_threads >= 1);
        if let Some(cores) = hw.cpu.physical_cores {
            assert!(cores >= 1 && cores <= hw.cpu.logical_threads);
        }
        assert!(hw.memory.total_bytes > 0);
        assert!(hw.memory.available_bytes <= hw.memory.total_bytes);
        assert!(!hw.cpu.brand.is_empty());
        #[cfg(target_arch = "x86_64")]
        assert!(
            hw.cpu.simd.iter().any(|f| f == "sse2"),
            "every x86_64 CPU has SSE2: {:?}",
            hw.cpu.simd
        );
    }

    #[test]
    fn gpu_report_without_driver_is_none_with_reason() {
        // Meaningful only on a machine without NVML; elsewhere check the positive case is sane.
        match detect().gpus {
            GpuReport::None { reason } => {
                assert!(reason.starts_with("no GPU: "), "{reason}");
                assert!(reason.len() > "no GPU: ".len());
            }
            GpuReport::Nvidia { devices, .. } => assert!(!devices.is_empty()),
        }
    }

    #[test]
    fn missing_nvml_is_no_driver_or_no_nvml_by_the_kernel_driver() {
        use nvml_wrapper::error::NvmlError as E;
        let no_driver = NoGpu::classify(E::LibraryNotFound, false).to_string();
        let no_nvml = NoGpu::classify(E::LibraryNotFound, true).to_string();
        let not_loaded = NoGpu::classify(E::DriverNotLoaded, true).to_string();
        assert!(no_driver.starts_with("no NVIDIA driver"), "{no_driver}");
        assert!(no_nvml.starts_with("no NVML"), "{no_nvml}");
        assert!(not_loaded.contains("not loaded"), "{not_loaded}");
        assert_ne!(no_driver, no_nvml);
    }

    #[test]
    fn json_round_trips_and_tells_gpu_cases_apart() {
        let hw = detect();
        let json = serde_json::to_string(&hw).unwrap();
        let back: HardwareInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(back, hw);

        let none = GpuReport::None {
            reason: "no GPU: test".to_string(),
        };
        let v = serde_json::to_value(&none).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"available": false, "reason": "no GPU: test"})
        );

        let some = GpuReport::Nvidia {
            driver_version: "550.54".to_string(),
            cuda_driver_version: Some("12.4".to_string()),
            devices: vec![GpuDevice {
                index: 0,
                name: "NVIDIA H100".to_string(),
                uuid: "GPU-0".to_string(),
                memory_total_bytes: Some(80 << 30),
                memory_used_bytes: Some(1 << 20),
                memory_bus_width_bits: Some(5120),
                max_memory_clock_mhz: Some(2619),
            }],
        };
        let GpuReport::Nvidia { devices, .. } = &some else {
            unreachable!()
        };
        // H100 SXM's datasheet says 3.35 TB/s.
        let bw = devices[0].peak_memory_bandwidth_bytes_per_s().unwrap();
        assert!((bw / 1e12 - 3.352).abs() < 0.001, "{bw}");
        let v = serde_json::to_value(&some).unwrap();
        assert_eq!(v["available"], true);
        assert_eq!(v["devices"][0]["name"], "NVIDIA H100");
        assert_eq!(serde_json::from_value::<GpuReport>(v).unwrap(), some);

        let bad = serde_json::json!({"available": false});
        assert!(serde_json::from_value::<GpuReport>(bad).is_err());
    }

    #[test]
    fn rows_cover_cpu_ram_and_gpu() {
        let rows = detect().rows();
        for key in ["CPU", "Physical cores", "SIMD", "RAM total", "OS"] {
            assert!(rows.iter().any(|(k, _)| k == key), "missing row {key}");
        }
        assert!(rows.iter().any(|(k, _)| k.starts_with("GPU")));
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(8 << 30), "8.0 GiB");
    }

    #[test]
    fn parses_proc_status_lines() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_rss_is_at_least_current_rss() {
        let current = current_rss_bytes().expect("VmRSS on Linux");
        let peak = peak_rss_bytes().expect("VmHWM on Linux");
        assert!(current > 0);
        assert!(peak >= current, "peak {peak} < current {current}");
    }
}
