use anyhow::Result;
use clap::Args;
use serde::Serialize;
use tabled::{builder::Builder, settings::Style};

#[derive(Args)]
pub struct HwArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Whether this binary can run a model on a GPU: a property of the build as much as of the
/// machine, so it is reported beside what NVML sees (`gpus`).
#[derive(Serialize)]
struct GpuCompute {
    /// Built with the `cuda` feature.
    built_with_cuda: bool,
    /// The device `--device auto` takes.
    auto_device: String,
    /// Why `auto` does not take a GPU; absent when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize)]
struct HwReport {
    #[serde(flatten)]
    hardware: effbench_hw::HardwareInfo,
    gpu_compute: GpuCompute,
}

fn gpu_compute(hw: &effbench_hw::HardwareInfo) -> GpuCompute {
    let built_with_cuda = crate::common::BUILT_WITH_CUDA;
    if !built_with_cuda {
        let seen = match &hw.gpus {
            effbench_hw::GpuReport::Nvidia { devices, .. } if !devices.is_empty() => format!(
                "; NVML sees {} GPU(s): scripts/build-cuda.sh builds a binary that uses them",
                devices.len()
            ),
            _ => String::new(),
        };
        return GpuCompute {
            built_with_cuda,
            auto_device: "cpu".into(),
            reason: Some(format!(
                "no GPU compute: built without the `cuda` feature{seen}"
            )),
        };
    }
    match crate::common::select_device("cuda:0") {
        Ok(d) => GpuCompute {
            built_with_cuda,
            auto_device: crate::common::device_label(&d),
            reason: None,
        },
        Err(e) => GpuCompute {
            built_with_cuda,
            auto_device: "cpu".into(),
            reason: Some(format!("no GPU compute: {e:#}")),
        },
    }
}

pub fn run(args: HwArgs) -> Result<()> {
    let info = effbench_hw::detect();
    let compute = gpu_compute(&info);
    if args.json {
        let report = HwReport {
            hardware: info,
            gpu_compute: compute,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut b = Builder::default();
    b.push_record(["field", "value"]);
    for (k, v) in info.rows() {
        b.push_record([k, v]);
    }
    b.push_record([
        "GPU compute".to_string(),
        match &compute.reason {
            None => format!("{} (built with `cuda`)", compute.auto_device),
            Some(r) => r.clone(),
        },
    ]);
    println!("{}", b.build().with(Style::markdown()));
    Ok(())
}
