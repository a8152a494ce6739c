//! `effbench quantize`: int4/int2 weights, by RTN or GPTQ, written once to a file that
//! `--model FILE` (and, when every matrix is a GGML type, llama.cpp) loads again. Also the
//! cache behind the GPTQ techniques of `run`, `bench` and friends.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use effbench_eval::quantized::{quantize_to, Calibration};
use effbench_quant::{Method, QuantSpec, Recipe};

#[derive(Args, Clone, Debug)]
pub struct CalibArgs {
    /// GPTQ calibration: sequences of self-generated text (see docs/techniques.md).
    #[arg(long, default_value_t = 128)]
    pub calib_sequences: usize,
    /// GPTQ calibration: tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub calib_len: usize,
    /// Seed of the calibration text.
    #[arg(long, default_value_t = 0)]
    pub calib_seed: u64,
}

impl CalibArgs {
    /// The engine's plain form of these arguments.
    pub fn config(&self) -> Calibration {
        Calibration {
            sequences: self.calib_sequences,
            len: self.calib_len,
            seed: self.calib_seed,
        }
    }
}

#[derive(Args)]
pub struct QuantizeArgs {
    /// Known model name or path to a GGUF checkpoint.
    #[arg(long, short, default_value = crate::common::DEFAULT_MODEL)]
    model: String,
    /// rtn (round to nearest) or gptq.
    #[arg(long, default_value = "gptq")]
    method: String,
    /// 4 or 2.
    #[arg(long, default_value_t = 4)]
    bits: u32,
    /// Weights per scale: int4 32/64/128 (default 128), int2 16/32/64 (default 32).
    #[arg(long)]
    group: Option<usize>,
    /// Symmetric grid (one f16 scale per group) instead of scale + offset.
    #[arg(long)]
    sym: bool,
    /// Keep the output head in f16, as well as the embeddings.
    #[arg(long)]
    f16_head: bool,
    /// Where to write the GGUF (a `.packed.safetensors` sidecar goes beside it when a format
    /// has no GGML type).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    calib: CalibArgs,
    #[arg(long, short, default_value_t = 0)]
    threads: usize,
    /// Quantization runs on the CPU (GPTQ's Hessians and updates are CPU matmuls): auto and cpu
    /// take it, cuda is refused. The file it writes loads on any device.
    #[arg(long, default_value = "auto", value_parser = crate::common::check_device)]
    device: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: QuantizeArgs) -> Result<()> {
    let method = Method::parse(&args.method)?;
    let group = args
        .group
        .unwrap_or_else(|| effbench_quant::spec::default_group(args.bits));
    let recipe = Recipe {
        method,
        spec: QuantSpec::new(args.bits, group, args.sym)?,
        f16_head: args.f16_head,
    };
    if args.out.extension().is_none_or(|e| e != "gguf") {
        bail!(
            "--out `{}` should end in .gguf (hint: --out model-int4.gguf)",
            args.out.display()
        );
    }
    if let crate::common::DeviceSpec::Cuda(_) = crate::common::parse_device(&args.device)? {
        bail!(
            "quantize runs on the CPU only: GPTQ's Hessians and updates are CPU matmuls (hint: --device cpu; the file it writes then runs on the GPU with --model FILE --device {})",
            args.device
        );
    }
    effbench_core::threads::set_threads(args.threads);
    let path = crate::common::resolve_model_path(&args.model)?;
    let report = quantize_to(&path, recipe, &args.calib.config(), &args.out)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
