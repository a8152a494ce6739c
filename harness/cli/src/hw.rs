use anyhow::{ensure, Result};
use clap::Args;
use effbench_hw::roofline::{calibrate, CalibrateOptions, Roofline};
use serde::Serialize;

#[derive(Args)]
pub struct HwArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also measure the machine's roofs: memory bandwidth (STREAM triad and a read sweep) and
    /// f32 GEMM throughput, per thread count. Decode cannot beat bandwidth / bytes per token;
    /// `scripts/compare_llamacpp.py` divides by them. About 10 s per thread count.
    #[arg(long)]
    calibrate: bool,
    /// Thread counts to calibrate at, comma-separated (default: 1 and every usable thread).
    #[arg(long, short = 't', value_delimiter = ',', requires = "calibrate")]
    threads: Vec<usize>,
    /// Bytes of each bandwidth array, in MiB; several times the last-level cache.
    #[arg(long, default_value_t = 256, requires = "calibrate")]
    array_mib: usize,
}

#[derive(Serialize)]
struct HwReport {
    #[serde(flatten)]
    hardware: effbench_hw::HardwareInfo,
    gpu_compute: effbench_eval::session::GpuCompute,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roofline: Vec<Roofline>,
}

pub fn run(args: HwArgs) -> Result<()> {
    let info = effbench_hw::detect();
    let compute = effbench_eval::session::gpu_compute(&info);
    let mut roofline = Vec::new();
    if args.calibrate {
        let mut threads = args.threads.clone();
        if threads.is_empty() {
            threads = vec![1, info.cpu.usable_threads.max(1)];
            threads.dedup();
        }
        ensure!(
            threads.iter().all(|&t| t > 0),
            "thread counts must be positive (hint: --threads 1,2)"
        );
        ensure!(
            args.array_mib > 0,
            "--array-mib must be positive (hint: 256)"
        );
        let options = CalibrateOptions {
            array_bytes: args.array_mib << 20,
            ..CalibrateOptions::default()
        };
        for t in threads {
            eprintln!("calibrating with {t} thread(s)...");
            roofline.push(calibrate(t, options));
        }
    }
    if args.json {
        let report = HwReport {
            hardware: info,
            gpu_compute: compute,
            roofline,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let gpu = match &compute.reason {
        None => format!("{} (built with `cuda`)", compute.auto_device),
        Some(r) => r.clone(),
    };
    let extra = vec![("GPU compute".to_string(), gpu)];
    println!(
        "{}",
        effbench_report::tables::hardware_markdown(&info, extra, &roofline)
    );
    Ok(())
}
