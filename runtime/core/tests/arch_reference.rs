//! Each architecture against an independent implementation: candle-transformers' model of it,
//! reading the same Hugging Face checkpoint (seeded tiny weights, `config.json` and
//! `model.safetensors`) as effbench's one decoder. Both run in f32 on the CPU; their logits must
//! agree within 1e-4 at every position of a sequence long enough for windows and scaled RoPE to
//! matter.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use effbench_core::source::{GgufSource, SafetensorsSource, WeightSource};
use effbench_core::testing::{
    max_abs_diff, prefill_logits, tiny_config, tiny_source, write_gguf_checkpoint,
    write_hf_checkpoint,
};
use effbench_core::{Architecture, AsStored, Model, ModelConfig, RopeScaling, SourceTensor};

const TOLERANCE: f32 = 1e-4;

/// A fixed pseudo-random token sequence of `len` ids below `vocab`.
fn tokens(len: usize, vocab: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 37 + 11) % vocab as u32)
        .collect()
}

fn load_safetensors(dir: &Path) -> Model {
    let dev = Device::Cpu;
    Model::load(
        &mut SafetensorsSource::open(dir, &dev).unwrap(),
        &AsStored,
        &dev,
    )
    .unwrap()
}

/// `cfg`'s seeded tiny weights as a Hugging Face checkpoint in a fresh directory.
fn checkpoint(cfg: &ModelConfig) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_hf_checkpoint(dir.path(), cfg, 42);
    dir
}

fn var_builder(dir: &Path) -> VarBuilder<'static> {
    // SAFETY: the test's own file, not modified while mapped.
    unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
    }
    .unwrap()
}

fn config_json<T: serde::de::DeserializeOwned>(dir: &Path) -> T {
    serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
}

/// Feeds `tokens` one at a time to a candle-transformers model whose forward pass returns the
/// last position's logits, and stacks them into (len, vocab).
fn one_at_a_time(
    tokens: &[u32],
    mut forward: impl FnMut(&Tensor, usize) -> candle_core::Result<Tensor>,
) -> Tensor {
    let rows: Vec<Tensor> = tokens
        .iter()
        .enumerate()
        .map(|(pos, &t)| {
            let input = Tensor::new(&[[t]], &Device::Cpu).unwrap();
            let logits = forward(&input, pos).unwrap();
            logits.flatten_all().unwrap().unsqueeze(0).unwrap()
        })
        .collect();
    Tensor::cat(&rows, 0).unwrap()
}

fn assert_close(what: &str, ours: &Tensor, theirs: &Tensor) {
    assert_eq!(ours.dims(), theirs.dims(), "{what}");
    let d = max_abs_diff(ours, theirs);
    assert!(d < TOLERANCE, "{what}: logits differ by {d}");
    // A model whose logits were all zero would agree with anything.
    let spread = ours
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(spread > 0.1, "{what}: logits are degenerate ({spread})");
}

/// Gemma 3 from Hugging Face safetensors: Gemma's names (`post_attention_layernorm` is the
/// attention output's norm, `pre_feedforward_layernorm` the MLP's input norm), and every norm
/// stored as w where the model applies 1 + w.
///
/// candle-transformers' gemma3 and llama.cpp (the reference for real files: Gemma-3-270M's
/// perplexity is checked against it) differ in two places, so the shape checked here is one
/// where they agree:
/// - candle scales queries by 1/sqrt(head_dim) whatever `query_pre_attn_scalar` says; the
///   checked config has query_pre_attn_scalar = head_dim (as every Gemma 3 but the 27B has).
///   The tiny shape's own scale (0.2) is checked from safetensors against the in-memory model.
/// - candle's prefill mask lets a sliding-window query see `sliding_window + 1` keys
///   (`j + w < i` masks), where Hugging Face and llama.cpp see `w`; its one-token decode
///   through its rotating cache sees `w`. So candle runs one token at a time here.
#[test]
fn gemma3_safetensors_matches_candle_transformers() {
    let mut cfg = tiny_config(Architecture::Gemma3);
    cfg.block.attention_scale = None;
    let window = cfg.block.sliding_window.unwrap();
    let seq = tokens(4 * window + 3, cfg.vocab_size);
    let dir = checkpoint(&cfg);

    let ours = prefill_logits(&load_safetensors(dir.path()), &seq);
    let memory = Model::load(&mut tiny_source(&cfg, 42), &AsStored, &Device::Cpu).unwrap();
    assert_close(
        "safetensors vs memory",
        &ours,
        &prefill_logits(&memory, &seq),
    );

    use candle_transformers::models::gemma3;
    let theirs_cfg: gemma3::Config = config_json(dir.path());
    assert_eq!(theirs_cfg.sliding_window, window);
    let mut theirs = gemma3::Model::new(false, &theirs_cfg, var_builder(dir.path())).unwrap();
    let theirs = one_at_a_time(&seq, |t, pos| theirs.forward(t, pos));
    assert_close("gemma3 vs candle-transformers", &ours, &theirs);

    // The window matters: without it the logits past the window move.
    let mut global = cfg.clone();
    global.block.sliding_window = None;
    let unwindowed = Model::load(&mut tiny_source(&global, 42), &AsStored, &Device::Cpu).unwrap();
    let d = max_abs_diff(&ours, &prefill_logits(&unwindowed, &seq));
    assert!(d > 1e-2, "the window changed nothing ({d})");
}

/// The tiny Gemma shape with a query scale of its own round-trips through `config.json` and
/// safetensors unchanged.
#[test]
fn gemma3_query_scale_survives_the_checkpoint() {
    let cfg = tiny_config(Architecture::Gemma3);
    assert!(cfg.block.attention_scale.is_some());
    let dir = checkpoint(&cfg);
    let seq = tokens(11, cfg.vocab_size);
    let from_file = load_safetensors(dir.path());
    let memory = Model::load(&mut tiny_source(&cfg, 42), &AsStored, &Device::Cpu).unwrap();
    assert_close(
        "safetensors vs memory",
        &prefill_logits(&from_file, &seq),
        &prefill_logits(&memory, &seq),
    );
}

/// Qwen3: q/k RMSNorm over each head before RoPE, no q/k/v bias, and a head_dim (24) that is
/// not hidden / heads (16).
#[test]
fn qwen3_safetensors_matches_candle_transformers() {
    let cfg = tiny_config(Architecture::Qwen3);
    assert_ne!(cfg.head_dim * cfg.num_heads, cfg.hidden_size);
    let seq = tokens(13, cfg.vocab_size);
    let dir = checkpoint(&cfg);
    let ours = prefill_logits(&load_safetensors(dir.path()), &seq);

    use candle_transformers::models::qwen3;
    let theirs_cfg: qwen3::Config = config_json(dir.path());
    assert_eq!(theirs_cfg.head_dim, cfg.head_dim);
    let mut theirs = qwen3::ModelForCausalLM::new(&theirs_cfg, var_builder(dir.path())).unwrap();
    let theirs = one_at_a_time(&seq, |t, pos| theirs.forward(t, pos));
    assert_close("qwen3 vs candle-transformers", &ours, &theirs);
}

/// The same tiny Qwen3 as a GGUF file (llama.cpp's `qwen3` keys and names) and as safetensors.
#[test]
fn qwen3_gguf_and_safetensors_load_the_same_model() {
    let cfg = tiny_config(Architecture::Qwen3);
    let dir = checkpoint(&cfg);
    let gguf = dir.path().join("tiny.gguf");
    write_gguf_checkpoint(&gguf, &cfg, 42, GgmlDType::F32);
    let dev = Device::Cpu;
    let source = GgufSource::open(&gguf, &dev).unwrap();
    assert_eq!(source.config().architecture, Architecture::Qwen3);
    assert_eq!(source.config().block, cfg.block);
    assert_eq!(source.config().head_dim, cfg.head_dim);
    assert!(!source.config().qkv_bias);
    let from_gguf = Model::load(&mut { source }, &AsStored, &dev).unwrap();
    let seq = tokens(13, cfg.vocab_size);
    assert_close(
        "qwen3 GGUF vs safetensors",
        &prefill_logits(&from_gguf, &seq),
        &prefill_logits(&load_safetensors(dir.path()), &seq),
    );
}

/// The tiny Llama with Llama 3.1-style RoPE scaling: original context 32, factor 8, so the
/// first frequency (wavelength 6.3) is kept, the second (19.9) blended and the rest divided by
/// 8, and a sequence of 20 tokens runs well past 32 / 8.
fn llama3_scaled() -> ModelConfig {
    let mut cfg = tiny_config(Architecture::Llama);
    cfg.rope_scaling = Some(RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 32,
    });
    cfg
}

#[test]
fn llama3_rope_scaling_matches_candle_transformers() {
    let cfg = llama3_scaled();
    let factors = cfg
        .rope_scaling
        .as_ref()
        .unwrap()
        .frequency_factors(cfg.head_dim, cfg.rope_theta);
    assert_eq!(factors[0], 1.0);
    assert!(factors[1] > 1.0 && factors[1] < 8.0, "{factors:?}");
    assert!(factors[2..].iter().all(|&f| f == 8.0), "{factors:?}");
    let seq = tokens(20, cfg.vocab_size);
    let dir = checkpoint(&cfg);
    let from_file = load_safetensors(dir.path());
    assert_eq!(from_file.config().rope_scaling, cfg.rope_scaling);
    let ours = prefill_logits(&from_file, &seq);

    use candle_transformers::models::llama;
    let theirs_cfg: llama::LlamaConfig = config_json(dir.path());
    assert!(theirs_cfg.rope_scaling.is_some());
    let theirs_cfg = theirs_cfg.into_config(false);
    let theirs = llama::Llama::load(var_builder(dir.path()), &theirs_cfg).unwrap();
    let mut cache = llama::Cache::new(true, DType::F32, &theirs_cfg, &Device::Cpu).unwrap();
    let theirs = one_at_a_time(&seq, |t, pos| theirs.forward(t, pos, &mut cache));
    assert_close("llama3 rope scaling vs candle-transformers", &ours, &theirs);

    // The scaling matters: plain RoPE moves the logits.
    let mut plain = cfg.clone();
    plain.rope_scaling = None;
    let plain = Model::load(&mut tiny_source(&plain, 42), &AsStored, &Device::Cpu).unwrap();
    let d = max_abs_diff(&ours, &prefill_logits(&plain, &seq));
    assert!(d > 1e-2, "the scaling changed nothing ({d})");
}

/// llama.cpp's GGUF keeps llama3 scaling as the `rope_freqs.weight` divisors (and llama's q/k
/// rows permuted): the same logits as the safetensors copy.
#[test]
fn llama3_rope_scaling_from_gguf_matches_safetensors() {
    let cfg = llama3_scaled();
    let dir = checkpoint(&cfg);
    let gguf = dir.path().join("tiny.gguf");
    write_gguf_checkpoint(&gguf, &cfg, 42, GgmlDType::F32);
    let dev = Device::Cpu;
    let source = GgufSource::open(&gguf, &dev).unwrap();
    assert!(matches!(
        source.config().rope_scaling,
        Some(RopeScaling::FrequencyFactors { .. })
    ));
    let from_gguf = Model::load(&mut { source }, &AsStored, &dev).unwrap();
    let seq = tokens(20, cfg.vocab_size);
    assert_close(
        "llama3 GGUF vs safetensors",
        &prefill_logits(&from_gguf, &seq),
        &prefill_logits(&load_safetensors(dir.path()), &seq),
    );
}

/// Mistral: a Llama block whose every layer attends through a sliding window (Mistral-7B-v0.1's
/// `sliding_window`), read from a `mistral` config.json.
///
/// candle-transformers' mistral applies its window only in the prefill mask, which lets a query
/// see `sliding_window + 1` keys (`j + w < i` masks), and not at all in one-token decode; Hugging
/// Face and Mistral's own code see `w`. So candle runs a fresh prefill of each prefix, keeping
/// its last position, with its window set one lower.
#[test]
fn mistral_sliding_window_matches_candle_transformers() {
    let mut cfg = tiny_config(Architecture::Llama);
    cfg.block.sliding_window = Some(5);
    cfg.block.sliding_window_pattern = 0;
    let seq = tokens(16, cfg.vocab_size);
    let dir = checkpoint(&cfg);
    let from_file = load_safetensors(dir.path());
    assert_eq!(from_file.config().block, cfg.block);
    let ours = prefill_logits(&from_file, &seq);

    use candle_transformers::models::mistral;
    let mut theirs_cfg: mistral::Config = config_json(dir.path());
    assert_eq!(theirs_cfg.sliding_window, Some(5));
    theirs_cfg.sliding_window = Some(4);
    let mut theirs = mistral::Model::new(&theirs_cfg, var_builder(dir.path())).unwrap();
    let rows: Vec<Tensor> = (1..=seq.len())
        .map(|n| {
            theirs.clear_kv_cache();
            let input = Tensor::new(&seq[..n], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = theirs.forward(&input, 0).unwrap();
            logits.flatten_all().unwrap().unsqueeze(0).unwrap()
        })
        .collect();
    assert_close(
        "mistral vs candle-transformers",
        &ours,
        &Tensor::cat(&rows, 0).unwrap(),
    );

    let mut global = cfg.clone();
    global.block.sliding_window = None;
    let unwindowed = Model::load(&mut tiny_source(&global, 42), &AsStored, &Device::Cpu).unwrap();
    let d = max_abs_diff(&ours, &prefill_logits(&unwindowed, &seq));
    assert!(d > 1e-2, "the window changed nothing ({d})");
}

/// Phi-3: a Llama block whose checkpoint fuses q/k/v into `qkv_proj` (q, k, v rows) and gate/up
/// into `gate_up_proj` (gate, up rows); the safetensors source splits them at load.
#[test]
fn phi3_safetensors_matches_candle_transformers() {
    let cfg = tiny_config(Architecture::Phi3);
    let seq = tokens(13, cfg.vocab_size);
    let dir = checkpoint(&cfg);
    let stored =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    let qkv = &stored["model.layers.0.self_attn.qkv_proj.weight"];
    assert_eq!(
        qkv.dims(),
        [cfg.q_dim() + 2 * cfg.kv_dim(), cfg.hidden_size]
    );
    let gate_up = &stored["model.layers.0.mlp.gate_up_proj.weight"];
    assert_eq!(gate_up.dims(), [2 * cfg.intermediate_size, cfg.hidden_size]);
    assert!(!stored.contains_key("model.layers.0.self_attn.q_proj.weight"));

    let from_file = load_safetensors(dir.path());
    assert_eq!(from_file.config(), &cfg);
    let ours = prefill_logits(&from_file, &seq);
    let memory = Model::load(&mut tiny_source(&cfg, 42), &AsStored, &Device::Cpu).unwrap();
    assert_close(
        "phi3 safetensors vs memory",
        &ours,
        &prefill_logits(&memory, &seq),
    );

    use candle_transformers::models::phi3;
    let theirs_cfg: phi3::Config = config_json(dir.path());
    assert_eq!(theirs_cfg.head_dim(), cfg.head_dim);
    let mut theirs = phi3::Model::new(&theirs_cfg, var_builder(dir.path())).unwrap();
    let theirs = one_at_a_time(&seq, |t, pos| theirs.forward(t, pos));
    assert_close("phi3 vs candle-transformers", &ours, &theirs);
}

/// The tiny Phi-3 as llama.cpp writes it (`attn_qkv`, and `ffn_up` of 2 * n_ff rows, gate
/// first, with no `ffn_gate`), in f32 and in Q8_0: the GGUF source hands out the split
/// matrices, byte for byte the rows of the fused one, and the f32 copy gives the safetensors
/// copy's logits.
#[test]
fn phi3_gguf_splits_fused_tensors_as_stored() {
    let cfg = tiny_config(Architecture::Phi3);
    let dir = checkpoint(&cfg);
    let seq = tokens(13, cfg.vocab_size);
    let dev = Device::Cpu;
    let from_safetensors = prefill_logits(&load_safetensors(dir.path()), &seq);
    for dtype in [GgmlDType::F32, GgmlDType::Q8_0] {
        let gguf = dir.path().join(format!("tiny-{dtype:?}.gguf"));
        write_gguf_checkpoint(&gguf, &cfg, 42, dtype);
        let mut source = GgufSource::open(&gguf, &dev).unwrap();
        // The GGUF keeps rms_norm_eps in f32.
        let mut read = source.config().clone();
        assert!((read.rms_norm_eps - cfg.rms_norm_eps).abs() < 1e-12);
        read.rms_norm_eps = cfg.rms_norm_eps;
        assert_eq!(read, cfg, "{dtype:?}");
        assert!(source.has("blk.0.attn_qkv.weight") && source.has("blk.0.attn_q.weight"));
        assert!(source.has("blk.2.ffn_gate.weight"));
        // Each part equals the separately quantized matrix (Q8_0's blocks lie within a row).
        let weights = effbench_core::testing::tiny_weights(&cfg, 42);
        for (name, rows) in [
            ("blk.0.attn_q.weight", cfg.q_dim()),
            ("blk.1.attn_q.weight", cfg.q_dim()),
            ("blk.1.attn_k.weight", cfg.kv_dim()),
            ("blk.1.attn_v.weight", cfg.kv_dim()),
            ("blk.1.ffn_gate.weight", cfg.intermediate_size),
            ("blk.1.ffn_up.weight", cfg.intermediate_size),
        ] {
            let SourceTensor::Ggml(part) = source.tensor(name).unwrap() else {
                panic!("{name} is not a GGML tensor");
            };
            assert_eq!(part.dtype(), dtype, "{name}");
            assert_eq!(part.shape().dims(), [rows, cfg.hidden_size], "{name}");
            let alone = QTensor::quantize(&weights[name], dtype).unwrap();
            assert_eq!(
                part.data().unwrap(),
                alone.data().unwrap(),
                "{name} in {dtype:?}"
            );
        }
        let from_gguf = prefill_logits(&Model::load(&mut source, &AsStored, &dev).unwrap(), &seq);
        if dtype == GgmlDType::F32 {
            assert_close("phi3 GGUF vs safetensors", &from_gguf, &from_safetensors);
        } else {
            // The same model, quantized: close to the f32 logits, not equal to them, and the
            // logits of the model whose matrices were quantized one by one.
            let d = max_abs_diff(&from_gguf, &from_safetensors);
            assert!(d > 0.0 && d < 0.1, "Q8_0 phi3 differs from f32 by {d}");
            let separately = weights
                .into_iter()
                .map(|(name, t)| {
                    let ty = if t.rank() == 2 { dtype } else { GgmlDType::F32 };
                    let q = QTensor::quantize(&t, ty).unwrap();
                    (name, SourceTensor::Ggml(std::sync::Arc::new(q)))
                })
                .collect();
            let mut memory = effbench_core::source::TensorMapSource::new(cfg.clone(), separately);
            let memory = Model::load(&mut memory, &AsStored, &dev).unwrap();
            assert_close(
                "phi3 Q8_0 GGUF vs matrices quantized one by one",
                &from_gguf,
                &prefill_logits(&memory, &seq),
            );
        }
    }
}

/// Rewrites a GGUF file with `edit` applied to its metadata and `extra` tensors added.
fn rewrite_gguf(
    from: &Path,
    to: &Path,
    edit: impl FnOnce(&mut std::collections::HashMap<String, Value>),
    extra: Vec<(String, QTensor)>,
) {
    let mut reader = std::fs::File::open(from).unwrap();
    let content = gguf_file::Content::read(&mut reader).unwrap();
    let mut md = content.metadata.clone();
    edit(&mut md);
    let mut tensors: Vec<(String, QTensor)> = content
        .tensor_infos
        .keys()
        .map(|n| {
            (
                n.clone(),
                content.tensor(&mut reader, n, &Device::Cpu).unwrap(),
            )
        })
        .collect();
    tensors.extend(extra);
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut std::fs::File::create(to).unwrap(), &md_refs, &t_refs).unwrap();
}

/// A fused tensor whose rows do not match the config, and what Phi-3 files can hold that the
/// decoder does not do (longrope factors, partial rotary), are refused in one line at open.
#[test]
fn phi3_mismatches_and_unsupported_features_are_one_line_errors() {
    let cfg = tiny_config(Architecture::Phi3);
    let dir = checkpoint(&cfg);
    let dev = Device::Cpu;
    let one_line = |err: String, needles: &[&str]| {
        for needle in needles {
            assert!(err.contains(needle), "{needle}: {err}");
        }
        assert!(!err.contains('\n'), "{err}");
    };

    // Safetensors: a config with 4 KV heads wants 192 qkv rows, the file has 128.
    let mut json = cfg.to_hf_config_json();
    json["num_key_value_heads"] = 4.into();
    std::fs::write(dir.path().join("config.json"), json.to_string()).unwrap();
    let err = SafetensorsSource::open(dir.path(), &dev)
        .err()
        .unwrap()
        .to_string();
    one_line(
        err,
        &[
            "model.layers.0.self_attn.qkv_proj.weight",
            "[128, 64]",
            "[192, 64]",
            "attn_q 64 + attn_k 64 + attn_v 64",
        ],
    );

    let gguf = dir.path().join("tiny.gguf");
    write_gguf_checkpoint(&gguf, &cfg, 42, GgmlDType::Q8_0);
    let bad = dir.path().join("bad.gguf");
    // GGUF: feed_forward_length 96 wants an ffn_up of 192 rows, the file's has 256.
    rewrite_gguf(
        &gguf,
        &bad,
        |md| {
            md.insert("phi3.feed_forward_length".into(), Value::U32(96));
        },
        vec![],
    );
    let err = GgufSource::open(&bad, &dev).err().unwrap().to_string();
    one_line(
        err,
        &[
            "blk.0.ffn_up.weight",
            "[256, 64]",
            "[192, 64]",
            "ffn_gate 96",
        ],
    );

    // Phi-3's longrope factors.
    let factors = Tensor::ones(cfg.head_dim / 2, DType::F32, &dev).unwrap();
    rewrite_gguf(
        &gguf,
        &bad,
        |_| {},
        vec![(
            "rope_factors_long.weight".into(),
            QTensor::quantize(&factors, GgmlDType::F32).unwrap(),
        )],
    );
    let err = GgufSource::open(&bad, &dev).err().unwrap().to_string();
    one_line(err, &["longrope", "rope_factors_long.weight"]);

    // Partial rotary (Phi-4-mini rotates 3/4 of each head).
    rewrite_gguf(
        &gguf,
        &bad,
        |md| {
            md.insert("phi3.rope.dimension_count".into(), Value::U32(12));
        },
        vec![],
    );
    let err = GgufSource::open(&bad, &dev).err().unwrap().to_string();
    one_line(err, &["partial rotary", "12"]);

    // A sliding window (Phi-3-mini-4k's 2047) is ignored, as llama.cpp ignores it.
    rewrite_gguf(
        &gguf,
        &bad,
        |md| {
            md.insert("phi3.attention.sliding_window".into(), Value::U32(2047));
        },
        vec![],
    );
    assert_eq!(
        GgufSource::open(&bad, &dev)
            .unwrap()
            .config()
            .block
            .sliding_window,
        None
    );
}
