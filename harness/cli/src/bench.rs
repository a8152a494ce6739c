//! llama-bench's two tests on our engine: `pp N` (prefill N tokens in one pass) and `tg N`
//! (decode N tokens one at a time), each repeated after a warm-up and reported as mean ± sd
//! tok/s, tokenization excluded. `--depth D` starts both after D tokens already in the KV
//! cache, as llama-bench's `-d D` (`pp512 @ d512`).

use anyhow::Result;
use clap::Args;
use effbench_eval::speed;
use serde::Serialize;
use tabled::{builder::Builder, settings::Style};

use candle_core::DType;
use effbench_core::Dequantize;

use crate::common::{device_label, load_model, mib, select_device, ModelArgs};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens for the prefill test (0 skips it).
    #[arg(long, short = 'p', default_value_t = 512)]
    n_prompt: usize,
    /// Tokens generated for the decode test (0 skips it).
    #[arg(long, short = 'n', default_value_t = 128)]
    n_gen: usize,
    /// Measured repetitions of each test, after one warm-up run.
    #[arg(long, short = 'r', default_value_t = 5)]
    repetitions: usize,
    /// Tokens already in the KV cache when each test starts, as llama-bench's `-d`: they are
    /// prefilled before the clock starts, and the tests run after them (`pp512 @ d512`,
    /// `tg128 @ d512`). Depth plus a test's tokens must fit the model's context.
    #[arg(long, short = 'd', default_value_t = 0)]
    depth: usize,
    /// Time a published shape with random f16 weights made on the device instead of a
    /// checkpoint (llama-3.1-8b, qwen2.5-1.5b, qwen2.5-0.5b, smollm2-135m): speed at sizes no
    /// file on hand has. Labelled synthetic in every output; --model and --weights are unused.
    #[arg(long, value_name = "SHAPE", conflicts_with_all = ["model", "weights"])]
    synthetic: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct TestResult {
    test: String,
    tokens: usize,
    mean_tok_per_s: f64,
    sd_tok_per_s: f64,
    samples_tok_per_s: Vec<f64>,
}

#[derive(Serialize)]
struct BenchReport {
    model: String,
    variant: String,
    /// `cpu`, `cuda:0`.
    device: String,
    weight_bytes: usize,
    /// Bits per weight of the blocks' linear layers, scales included.
    block_bits_per_weight: f64,
    /// Memory one decode step of the tg test reads on average: every block weight, the output
    /// head (the embedding table when tied), one embedding row, and the K/V of the context so
    /// far (the depth's included). The machine's bandwidth divided by this is the decode
    /// roofline.
    decode_bytes_per_token: f64,
    /// Multiply-adds times two per prefilled token in the linear layers and head: the GEMM
    /// peak divided by this bounds prefill from above (attention's share is left out).
    prefill_flops_per_token: f64,
    threads: usize,
    repetitions: usize,
    /// Tokens in the KV cache before each test (llama-bench's `n_depth`).
    depth: usize,
    /// The commit this binary was built from, and whether its tree differed from it, as
    /// spec-bench and serve-bench record them.
    git_commit: String,
    git_dirty: Option<bool>,
    results: Vec<TestResult>,
}

/// What was timed: a checkpoint, or a shape with synthetic weights.
struct Subject {
    model: effbench_core::Model,
    /// The checkpoint's path, or `synthetic:SHAPE`.
    name: String,
    variant: String,
    threads: usize,
}

fn subject(args: &BenchArgs) -> Result<Subject> {
    let Some(shape) = &args.synthetic else {
        let session = load_model(&args.model)?;
        let model = session.loaded.model;
        return Ok(Subject {
            variant: model.label().to_string(),
            model,
            name: session.loaded.path.display().to_string(),
            threads: session.threads,
        });
    };
    let threads = effbench_core::threads::set_threads(args.model.threads);
    let device = select_device(&args.model.device)?;
    let known = effbench_core::shapes::known_shape(shape)?;
    let mut source = effbench_core::shapes::random_source(&known.config, DType::F16, &device)?;
    let model = effbench_core::Model::load(&mut source, &Dequantize(DType::F16), &device)?;
    Ok(Subject {
        model,
        name: format!("synthetic:{}", known.name),
        variant: format!(
            "f16, synthetic random weights in the shape of {}",
            known.from
        ),
        threads,
    })
}

pub fn run(args: BenchArgs) -> Result<()> {
    let subject = subject(&args)?;
    let model = &subject.model;
    let mut results = Vec::new();
    let mut measured = Vec::new();
    let kv = &effbench_core::CONTIGUOUS_F32;
    if args.n_prompt > 0 {
        measured.push(
            speed::prefill_at(model, args.n_prompt, args.depth, args.repetitions, kv)
                .map_err(|e| crate::common::name_flags(e, "lower --depth, -p or -n"))?,
        );
    }
    if args.n_gen > 0 {
        measured.push(
            speed::decode_at(model, args.n_gen, args.depth, args.repetitions, kv)
                .map_err(|e| crate::common::name_flags(e, "lower --depth, -p or -n"))?,
        );
    }
    for m in measured {
        results.push(TestResult {
            test: m.test.clone(),
            tokens: m.tokens,
            mean_tok_per_s: m.mean(),
            sd_tok_per_s: m.sd(),
            samples_tok_per_s: m.samples_tok_per_s,
        });
    }
    let report = BenchReport {
        model: subject.name.clone(),
        variant: subject.variant.clone(),
        device: device_label(model.device()),
        weight_bytes: model.weight_bytes().total,
        block_bits_per_weight: model.weight_bytes().block_bits_per_weight,
        decode_bytes_per_token: speed::decode_bytes_per_token(model, args.n_gen, args.depth),
        prefill_flops_per_token: speed::prefill_flops_per_token(model),
        threads: subject.threads,
        repetitions: args.repetitions,
        depth: args.depth,
        git_commit: crate::common::GIT_COMMIT.into(),
        git_dirty: crate::common::git_dirty(),
        results,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut b = Builder::default();
    b.push_record(["model", "variant", "size", "threads", "test", "t/s"]);
    let name = std::path::Path::new(&report.model)
        .file_name()
        .map_or_else(|| report.model.clone(), |n| n.to_string_lossy().to_string());
    for r in &report.results {
        b.push_record([
            name.clone(),
            report.variant.clone(),
            mib(report.weight_bytes),
            report.threads.to_string(),
            r.test.clone(),
            format!("{:.2} ± {:.2}", r.mean_tok_per_s, r.sd_tok_per_s),
        ]);
    }
    println!("{}", b.build().with(Style::markdown()));
    Ok(())
}
