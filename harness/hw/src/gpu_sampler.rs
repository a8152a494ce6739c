//! NVML sampled on a background thread while a model runs on an NVIDIA GPU: the GPU's name,
//! driver and memory, the peak memory this process used, power draw (integrated into energy and
//! joules per output token) and the SM clock.
//!
//! NVML is optional at run time: where the library, the driver or the GPU is missing, the
//! sampler does not start and [`GpuSampler::finish`] returns [`GpuMeasurement::NotMeasured`] with
//! the reason. A figure NVML will not give is `None` with its reason in
//! [`GpuFigures::not_measured`]; nothing is ever recorded as zero for want of a reading.
//!
//! ```no_run
//! use effbench_hw::gpu_sampler::GpuSampler;
//! let sampler = GpuSampler::start(0, std::time::Duration::from_millis(50));
//! sampler.mark_window_start(); // energy is attributed to the window, e.g. a decode test
//! // ... decode 128 tokens ...
//! sampler.mark_window_end();
//! let measured = sampler.finish(128);
//! ```

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What the sampler learned, or why it learned nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum GpuMeasurement {
    Measured(Box<GpuFigures>),
    NotMeasured { reason: String },
}

impl GpuMeasurement {
    pub fn not_measured(reason: impl Into<String>) -> Self {
        Self::NotMeasured {
            reason: reason.into(),
        }
    }

    pub fn figures(&self) -> Option<&GpuFigures> {
        match self {
            Self::Measured(f) => Some(f),
            Self::NotMeasured { .. } => None,
        }
    }
}

/// The figures of one sampled run. Every `Option` that is `None` has its reason in
/// `not_measured`, keyed by the field's name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuFigures {
    pub index: u32,
    pub name: String,
    pub driver_version: String,
    pub memory_total_bytes: Option<u64>,
    /// Highest GPU memory NVML attributed to this process over the samples.
    pub peak_process_memory_bytes: Option<u64>,
    /// Highest memory in use on the whole device over the samples (every process).
    pub peak_device_memory_used_bytes: Option<u64>,
    /// Board power over the window.
    pub mean_power_watts: Option<f64>,
    pub max_power_watts: Option<f64>,
    /// GPU energy over the window: from NVML's energy counter where the GPU has one (Volta and
    /// later), else power samples integrated over time.
    pub energy_joules: Option<f64>,
    /// `energy_joules` over the tokens generated in the window.
    pub joules_per_output_token: Option<f64>,
    /// How `energy_joules` was obtained.
    pub energy_source: Option<String>,
    pub mean_sm_clock_mhz: Option<f64>,
    pub max_sm_clock_mhz: Option<u32>,
    /// Samples taken over the whole sampling period, and their spacing.
    pub samples: usize,
    pub interval_ms: u64,
    /// Seconds of the window energy is attributed to.
    pub window_seconds: Option<f64>,
    /// Why each absent figure is absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub not_measured: BTreeMap<String, String>,
}

/// One NVML reading. Each field is `Err(reason)` where NVML refused it.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t: f64,
    pub power_mw: Result<u32, String>,
    /// NVML's total-energy counter, millijoules since the driver loaded.
    pub energy_mj: Result<u64, String>,
    pub sm_clock_mhz: Result<u32, String>,
    pub device_used_bytes: Result<u64, String>,
    /// This process's GPU memory, `Err` with why not (e.g. not in NVML's process list).
    pub process_bytes: Result<u64, String>,
}

/// What does not change during a run.
#[derive(Clone, Debug)]
pub struct StaticInfo {
    pub index: u32,
    pub name: String,
    pub driver_version: String,
    pub memory_total_bytes: Result<u64, String>,
}

enum Command {
    /// Take a sample now and answer with its index.
    Mark(mpsc::Sender<usize>),
    Stop,
}

struct Running {
    info: StaticInfo,
    commands: mpsc::Sender<Command>,
    thread: JoinHandle<Vec<Sample>>,
    window: std::sync::Mutex<(Option<usize>, Option<usize>)>,
    interval: Duration,
}

/// A background NVML sampler for one GPU; see the module docs.
pub struct GpuSampler {
    state: Result<Running, String>,
}

impl GpuSampler {
    /// Starts sampling GPU `index` every `interval`. NVML numbers GPUs by PCI bus, as CUDA
    /// does with `CUDA_DEVICE_ORDER=PCI_BUS_ID` and no `CUDA_VISIBLE_DEVICES` (on a one-GPU
    /// machine they always agree). Never fails: where NVML cannot sample, the sampler
    /// holds the reason, and [`Self::finish`] returns it.
    pub fn start(index: u32, interval: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(1));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<StaticInfo, String>>();
        let (cmd_tx, cmd_rx) = mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name("effbench-nvml".into())
            .spawn(move || sample_loop(index, interval, ready_tx, cmd_rx));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                return Self {
                    state: Err(format!("could not start the NVML sampling thread: {e}")),
                }
            }
        };
        let state = match ready_rx.recv() {
            Ok(Ok(info)) => Ok(Running {
                info,
                commands: cmd_tx,
                thread,
                window: std::sync::Mutex::new((None, None)),
                interval,
            }),
            Ok(Err(reason)) => {
                let _ = thread.join();
                Err(reason)
            }
            Err(_) => {
                let _ = thread.join();
                Err("the NVML sampling thread stopped before its first reading".into())
            }
        };
        Self { state }
    }

    /// A sampler that did not start, for runs where there is no GPU to sample.
    pub fn not_started(reason: impl Into<String>) -> Self {
        Self {
            state: Err(reason.into()),
        }
    }

    /// Why the sampler is not sampling, or `None` while it is.
    pub fn not_running_reason(&self) -> Option<&str> {
        self.state.as_ref().err().map(String::as_str)
    }

    fn mark(&self) -> Option<usize> {
        let running = self.state.as_ref().ok()?;
        let (tx, rx) = mpsc::channel();
        running.commands.send(Command::Mark(tx)).ok()?;
        rx.recv().ok()
    }

    /// Starts the window energy and power are attributed to (takes a sample now).
    pub fn mark_window_start(&self) {
        if let Some(i) = self.mark() {
            if let Ok(running) = &self.state {
                running.window.lock().expect("window lock").0 = Some(i);
            }
        }
    }

    /// Ends the window (takes a sample now).
    pub fn mark_window_end(&self) {
        if let Some(i) = self.mark() {
            if let Ok(running) = &self.state {
                running.window.lock().expect("window lock").1 = Some(i);
            }
        }
    }

    /// Stops sampling and summarises; `window_tokens` are the output tokens generated in the
    /// window, for joules per token.
    pub fn finish(self, window_tokens: usize) -> GpuMeasurement {
        let running = match self.state {
            Ok(r) => r,
            Err(reason) => return GpuMeasurement::NotMeasured { reason },
        };
        let _ = running.commands.send(Command::Stop);
        let samples = match running.thread.join() {
            Ok(s) => s,
            Err(_) => {
                return GpuMeasurement::not_measured("the NVML sampling thread panicked");
            }
        };
        let window = *running.window.lock().expect("window lock");
        let window = match window {
            (Some(a), Some(b)) if b > a => Some((a, b)),
            _ => None,
        };
        GpuMeasurement::Measured(Box::new(summarize(
            &running.info,
            &samples,
            window,
            window_tokens,
            running.interval,
        )))
    }
}

fn sample_loop(
    index: u32,
    interval: Duration,
    ready: mpsc::Sender<Result<StaticInfo, String>>,
    commands: mpsc::Receiver<Command>,
) -> Vec<Sample> {
    let nvml = match crate::init_nvml() {
        Ok(n) => n,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "NVML cannot sample: {}",
                crate::NoGpu::from(e)
            )));
            return Vec::new();
        }
    };
    let device = match nvml.device_by_index(index) {
        Ok(d) => d,
        Err(e) => {
            let count = nvml
                .device_count()
                .map_or_else(|_| "unknown".to_string(), |n| n.to_string());
            let _ = ready.send(Err(format!(
                "NVML cannot sample GPU {index} ({count} GPUs seen): {e}"
            )));
            return Vec::new();
        }
    };
    let info = StaticInfo {
        index,
        name: device.name().unwrap_or_else(|_| "unknown".into()),
        driver_version: nvml
            .sys_driver_version()
            .unwrap_or_else(|_| "unknown".into()),
        memory_total_bytes: device
            .memory_info()
            .map(|m| m.total)
            .map_err(|e| e.to_string()),
    };
    let start = Instant::now();
    let pid = std::process::id();
    let take = || {
        let process_bytes = match device.running_compute_processes() {
            Ok(list) => match list.iter().find(|p| p.pid == pid) {
                Some(p) => match p.used_gpu_memory {
                    nvml_wrapper::enums::device::UsedGpuMemory::Used(b) => Ok(b),
                    nvml_wrapper::enums::device::UsedGpuMemory::Unavailable => {
                        Err("NVML does not report per-process memory here".to_string())
                    }
                },
                None => Err(format!(
                    "process {pid} is not in NVML's list of compute processes (no CUDA context \
                     yet, or a PID namespace hides it)"
                )),
            },
            Err(e) => Err(format!("NVML process list: {e}")),
        };
        Sample {
            t: start.elapsed().as_secs_f64(),
            power_mw: device.power_usage().map_err(|e| e.to_string()),
            energy_mj: device.total_energy_consumption().map_err(|e| e.to_string()),
            sm_clock_mhz: device
                .clock_info(nvml_wrapper::enum_wrappers::device::Clock::SM)
                .map_err(|e| e.to_string()),
            device_used_bytes: device
                .memory_info()
                .map(|m| m.used)
                .map_err(|e| e.to_string()),
            process_bytes,
        }
    };
    let mut samples = vec![take()];
    if ready.send(Ok(info)).is_err() {
        return samples;
    }
    loop {
        match commands.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => samples.push(take()),
            Ok(Command::Mark(reply)) => {
                samples.push(take());
                let _ = reply.send(samples.len() - 1);
            }
            Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                samples.push(take());
                return samples;
            }
        }
    }
}

/// The figures from a run's samples; `window` is the pair of sample indices energy is
/// attributed to. Public for tests and for replaying recorded samples.
pub fn summarize(
    info: &StaticInfo,
    samples: &[Sample],
    window: Option<(usize, usize)>,
    window_tokens: usize,
    interval: Duration,
) -> GpuFigures {
    let mut missing = BTreeMap::new();
    let mut note = |field: &str, reason: String| {
        missing.insert(field.to_string(), reason);
    };
    fn first_err<T>(xs: impl Iterator<Item = Result<T, String>>) -> String {
        xs.filter_map(Result::err)
            .next()
            .unwrap_or_else(|| "no samples".to_string())
    }

    let memory_total_bytes = match &info.memory_total_bytes {
        Ok(b) => Some(*b),
        Err(e) => {
            note("memory_total_bytes", e.clone());
            None
        }
    };
    let peak_process_memory_bytes = samples
        .iter()
        .filter_map(|s| s.process_bytes.as_ref().ok().copied())
        .max();
    if peak_process_memory_bytes.is_none() {
        note(
            "peak_process_memory_bytes",
            first_err(samples.iter().map(|s| s.process_bytes.clone())),
        );
    }
    let peak_device_memory_used_bytes = samples
        .iter()
        .filter_map(|s| s.device_used_bytes.as_ref().ok().copied())
        .max();
    if peak_device_memory_used_bytes.is_none() {
        note(
            "peak_device_memory_used_bytes",
            first_err(samples.iter().map(|s| s.device_used_bytes.clone())),
        );
    }
    let sm: Vec<u32> = samples
        .iter()
        .filter_map(|s| s.sm_clock_mhz.as_ref().ok().copied())
        .collect();
    let (mean_sm_clock_mhz, max_sm_clock_mhz) = if sm.is_empty() {
        let why = first_err(samples.iter().map(|s| s.sm_clock_mhz.clone()));
        note("mean_sm_clock_mhz", why.clone());
        note("max_sm_clock_mhz", why);
        (None, None)
    } else {
        (
            Some(sm.iter().map(|&c| c as f64).sum::<f64>() / sm.len() as f64),
            sm.iter().copied().max(),
        )
    };

    let mut energy_joules = None;
    let mut energy_source = None;
    let mut mean_power_watts = None;
    let mut max_power_watts = None;
    let mut window_seconds = None;
    match window {
        None => {
            let why = "no measurement window was marked".to_string();
            for f in ["energy_joules", "mean_power_watts", "max_power_watts"] {
                note(f, why.clone());
            }
        }
        Some((a, b)) => {
            let w = &samples[a..=b.min(samples.len().saturating_sub(1))];
            let secs = w.last().map_or(0.0, |l| l.t) - w.first().map_or(0.0, |f| f.t);
            window_seconds = Some(secs);
            let power: Vec<(f64, f64)> = w
                .iter()
                .filter_map(|s| s.power_mw.as_ref().ok().map(|&p| (s.t, p as f64 / 1000.0)))
                .collect();
            if power.is_empty() {
                let why = first_err(w.iter().map(|s| s.power_mw.clone()));
                note("mean_power_watts", why.clone());
                note("max_power_watts", why);
            } else {
                max_power_watts = power.iter().map(|&(_, p)| p).reduce(f64::max);
                mean_power_watts =
                    Some(power.iter().map(|&(_, p)| p).sum::<f64>() / power.len() as f64);
            }
            // The counter is exact where it exists; otherwise integrate power (trapezoids).
            match (
                &w.first().map(|s| &s.energy_mj),
                &w.last().map(|s| &s.energy_mj),
            ) {
                (Some(Ok(e0)), Some(Ok(e1))) if e1 >= e0 && secs > 0.0 => {
                    energy_joules = Some((e1 - e0) as f64 / 1000.0);
                    energy_source = Some("NVML total-energy counter over the window".to_string());
                }
                (first, _) => {
                    let counter_why = match first {
                        Some(Err(e)) => e.clone(),
                        _ => "energy counter unreadable or went backwards".to_string(),
                    };
                    if power.len() >= 2 {
                        let j = power
                            .windows(2)
                            .map(|p| (p[1].0 - p[0].0) * (p[0].1 + p[1].1) / 2.0)
                            .sum::<f64>();
                        energy_joules = Some(j);
                        energy_source = Some(format!(
                            "NVML power samples integrated over the window ({} samples; energy \
                             counter: {counter_why})",
                            power.len()
                        ));
                    } else {
                        note(
                            "energy_joules",
                            format!(
                                "fewer than two power samples in the window and no energy counter \
                                 ({counter_why})"
                            ),
                        );
                    }
                }
            }
        }
    }
    let joules_per_output_token = match (energy_joules, window_tokens) {
        (Some(j), n) if n > 0 => Some(j / n as f64),
        (Some(_), _) => {
            note(
                "joules_per_output_token",
                "no output tokens in the window".into(),
            );
            None
        }
        (None, _) => {
            note("joules_per_output_token", "no energy figure".into());
            None
        }
    };
    GpuFigures {
        index: info.index,
        name: info.name.clone(),
        driver_version: info.driver_version.clone(),
        memory_total_bytes,
        peak_process_memory_bytes,
        peak_device_memory_used_bytes,
        mean_power_watts,
        max_power_watts,
        energy_joules,
        joules_per_output_token,
        energy_source,
        mean_sm_clock_mhz,
        max_sm_clock_mhz,
        samples: samples.len(),
        interval_ms: interval.as_millis() as u64,
        window_seconds,
        not_measured: missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> StaticInfo {
        StaticInfo {
            index: 0,
            name: "NVIDIA H100 80GB HBM3".into(),
            driver_version: "580.65".into(),
            memory_total_bytes: Ok(80 << 30),
        }
    }

    fn sample(t: f64, watts: u32, energy: Result<u64, String>) -> Sample {
        Sample {
            t,
            power_mw: Ok(watts * 1000),
            energy_mj: energy,
            sm_clock_mhz: Ok(1980),
            device_used_bytes: Ok(2 << 30),
            process_bytes: Ok(1 << 30),
        }
    }

    #[test]
    fn without_nvml_the_sampler_says_why_and_records_no_numbers() {
        // On a machine without the NVIDIA driver (this project's CI) the sampler must not
        // start; where a GPU exists, it must measure.
        let sampler = GpuSampler::start(0, Duration::from_millis(10));
        let probe = crate::detect().gpus;
        match (probe.is_available(), sampler.finish(10)) {
            (false, GpuMeasurement::NotMeasured { reason }) => {
                assert!(reason.starts_with("NVML cannot sample"), "{reason}");
                assert!(reason.len() > "NVML cannot sample: ".len(), "{reason}");
            }
            (true, GpuMeasurement::Measured(f)) => assert!(!f.name.is_empty()),
            (available, m) => panic!("GPU available: {available}, but the sampler gave {m:?}"),
        }
        let json = serde_json::to_value(GpuSampler::not_started("cpu run").finish(1)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status": "not-measured", "reason": "cpu run"})
        );
    }

    #[test]
    fn energy_comes_from_the_counter_over_the_window() {
        let s = vec![
            sample(0.0, 100, Ok(1_000_000)),
            sample(1.0, 300, Ok(1_200_000)),
            sample(2.0, 300, Ok(1_500_000)),
            sample(3.0, 100, Ok(1_600_000)),
        ];
        let f = summarize(&info(), &s, Some((1, 2)), 100, Duration::from_millis(50));
        assert_eq!(f.energy_joules, Some(300.0));
        assert_eq!(f.joules_per_output_token, Some(3.0));
        assert_eq!(f.mean_power_watts, Some(300.0));
        assert_eq!(f.window_seconds, Some(1.0));
        assert!(f.energy_source.unwrap().contains("counter"));
        assert_eq!(f.peak_process_memory_bytes, Some(1 << 30));
        assert_eq!(f.max_sm_clock_mhz, Some(1980));
        assert!(f.not_measured.is_empty(), "{:?}", f.not_measured);
    }

    #[test]
    fn without_a_counter_power_is_integrated() {
        let no = || Err("Not supported".to_string());
        let s = vec![
            sample(0.0, 200, no()),
            sample(0.5, 200, no()),
            sample(1.0, 400, no()),
        ];
        let f = summarize(&info(), &s, Some((0, 2)), 50, Duration::from_millis(500));
        // 0.5 s at 200 W, then 0.5 s from 200 to 400 W: 100 + 150 J.
        assert_eq!(f.energy_joules, Some(250.0));
        assert_eq!(f.joules_per_output_token, Some(5.0));
        assert!(f.energy_source.unwrap().contains("Not supported"));
    }

    #[test]
    fn missing_readings_are_absent_with_a_reason_never_zero() {
        let s: Vec<Sample> = (0..3)
            .map(|i| Sample {
                t: i as f64,
                power_mw: Err("Not supported".into()),
                energy_mj: Err("Not supported".into()),
                sm_clock_mhz: Err("Not supported".into()),
                device_used_bytes: Ok(1 << 30),
                process_bytes: Err("process 7 is not in NVML's list".into()),
            })
            .collect();
        let f = summarize(&info(), &s, Some((0, 2)), 10, Duration::from_millis(50));
        for (field, value) in [
            ("energy_joules", f.energy_joules),
            ("mean_power_watts", f.mean_power_watts),
            ("mean_sm_clock_mhz", f.mean_sm_clock_mhz),
            ("joules_per_output_token", f.joules_per_output_token),
        ] {
            assert_eq!(value, None, "{field}");
            assert!(
                f.not_measured.contains_key(field),
                "{field}: {:?}",
                f.not_measured
            );
        }
        assert_eq!(f.peak_process_memory_bytes, None);
        assert!(f.not_measured["peak_process_memory_bytes"].contains("not in NVML's list"));
        assert_eq!(f.peak_device_memory_used_bytes, Some(1 << 30));
        let json = serde_json::to_value(GpuMeasurement::Measured(Box::new(f.clone()))).unwrap();
        assert_eq!(json["status"], "measured");
        assert_eq!(json["name"], "NVIDIA H100 80GB HBM3");
        let back: GpuMeasurement = serde_json::from_value(json).unwrap();
        assert_eq!(back, GpuMeasurement::Measured(Box::new(f)));
    }

    #[test]
    fn no_window_means_no_energy() {
        let s = vec![sample(0.0, 100, Ok(0)), sample(1.0, 100, Ok(100_000))];
        let f = summarize(&info(), &s, None, 10, Duration::from_millis(50));
        assert_eq!(f.energy_joules, None);
        assert!(f.not_measured["energy_joules"].contains("window"));
    }
}
