//! The forward pass on tiny seeded models: batching, chunking, caching and rollback must not
//! change a single logit beyond float noise, and GGUF and safetensors must load the same model.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use effbench_core::source::{GgufSource, SafetensorsSource};
use effbench_core::testing::{
    max_abs_diff, permute_for_interleaved_rope, prefill_logits, tiny_config, tiny_source,
    tiny_weights,
};
use effbench_core::{
    Architecture, AsStored, ContiguousKvCache, KvCache, KvShape, LogitsFor, Model, SeqChunk,
};

fn tiny_model(arch: Architecture) -> Model {
    let cfg = tiny_config(arch);
    Model::load(&mut tiny_source(&cfg, 42), &AsStored, &Device::Cpu).unwrap()
}

fn cache_for(model: &Model) -> ContiguousKvCache {
    ContiguousKvCache::new(KvShape::of(model.config()), 128, &Device::Cpu)
}

const PROMPT: [u32; 9] = [5, 17, 3, 88, 42, 42, 7, 60, 1];

#[test]
fn incremental_decode_matches_full_sequence() {
    // Gemma 3's tiny shape slides a 4-key window over the 9-token prompt.
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Gemma3,
        Architecture::Phi3,
    ] {
        let model = tiny_model(arch);
        let full = prefill_logits(&model, &PROMPT);
        let mut cache = cache_for(&model);
        for (i, &t) in PROMPT.iter().enumerate() {
            let out = model
                .forward(&[SeqChunk::new(0, vec![t], LogitsFor::Last)], &mut cache)
                .unwrap();
            let step = out.per_chunk[0].clone().unwrap();
            let d = max_abs_diff(&step, &full.narrow(0, i, 1).unwrap());
            assert!(d < 1e-4, "{arch:?} position {i}: diff {d}");
        }
        assert_eq!(cache.seq_len(0), PROMPT.len());
    }
}

#[test]
fn chunked_prefill_matches_one_pass() {
    let model = tiny_model(Architecture::Llama);
    let full = prefill_logits(&model, &PROMPT);
    let mut cache = cache_for(&model);
    let mut rows = Vec::new();
    for piece in PROMPT.chunks(4) {
        let out = model
            .forward(
                &[SeqChunk::new(0, piece.to_vec(), LogitsFor::All)],
                &mut cache,
            )
            .unwrap();
        rows.push(out.per_chunk[0].clone().unwrap());
    }
    let chunked = Tensor::cat(&rows, 0).unwrap();
    assert!(max_abs_diff(&chunked, &full) < 1e-4);
}

#[test]
fn a_batch_gives_each_sequence_its_own_logits() {
    let model = tiny_model(Architecture::Qwen2);
    let a: Vec<u32> = PROMPT.to_vec();
    let b: Vec<u32> = vec![9, 8, 7];
    let alone_a = prefill_logits(&model, &a);
    let alone_b = prefill_logits(&model, &b);
    let mut cache = cache_for(&model);
    let out = model
        .forward(
            &[
                SeqChunk::new(1, a.clone(), LogitsFor::All),
                SeqChunk::new(2, b.clone(), LogitsFor::Last),
            ],
            &mut cache,
        )
        .unwrap();
    assert!(max_abs_diff(out.per_chunk[0].as_ref().unwrap(), &alone_a) < 1e-4);
    let last_b = alone_b.narrow(0, 2, 1).unwrap();
    assert!(max_abs_diff(out.per_chunk[1].as_ref().unwrap(), &last_b) < 1e-4);
    // Continue both by one token in one batch: a decode step of continuous batching.
    let out = model
        .forward(
            &[
                SeqChunk::new(1, vec![11], LogitsFor::Last),
                SeqChunk::new(2, vec![12], LogitsFor::Last),
            ],
            &mut cache,
        )
        .unwrap();
    let mut a2 = a.clone();
    a2.push(11);
    let full_a2 = prefill_logits(&model, &a2);
    let d = max_abs_diff(
        out.per_chunk[0].as_ref().unwrap(),
        &full_a2.narrow(0, a2.len() - 1, 1).unwrap(),
    );
    assert!(d < 1e-4, "{d}");
}

#[test]
fn rollback_then_refill_matches() {
    let model = tiny_model(Architecture::Llama);
    let mut cache = cache_for(&model);
    model
        .forward(
            &[SeqChunk::new(0, PROMPT.to_vec(), LogitsFor::None)],
            &mut cache,
        )
        .unwrap();
    // Drop the last three tokens, as a rejected speculative draft would be dropped.
    cache.truncate(0, PROMPT.len() - 3).unwrap();
    let out = model
        .forward(
            &[SeqChunk::new(0, vec![70, 71, 72], LogitsFor::All)],
            &mut cache,
        )
        .unwrap();
    let mut alt = PROMPT[..PROMPT.len() - 3].to_vec();
    alt.extend([70, 71, 72]);
    let full = prefill_logits(&model, &alt);
    let d = max_abs_diff(
        out.per_chunk[0].as_ref().unwrap(),
        &full.narrow(0, alt.len() - 3, 3).unwrap(),
    );
    assert!(d < 1e-4, "{d}");
}

#[test]
fn bad_batches_are_refused() {
    let model = tiny_model(Architecture::Llama);
    let mut cache = cache_for(&model);
    let err = model
        .forward(&[SeqChunk::new(0, vec![1000], LogitsFor::Last)], &mut cache)
        .unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    let mut small = ContiguousKvCache::new(KvShape::of(model.config()), 4, &Device::Cpu);
    let err = model
        .forward(
            &[SeqChunk::new(0, PROMPT.to_vec(), LogitsFor::Last)],
            &mut small,
        )
        .unwrap_err();
    assert!(err.to_string().contains("capacity"), "{err}");
}

fn write_tiny_gguf(path: &std::path::Path, dtype: GgmlDType) {
    let cfg = tiny_config(Architecture::Llama);
    let weights = tiny_weights(&cfg, 42);
    let mut q = Vec::new();
    for (name, t) in &weights {
        let t = if name.ends_with("attn_q.weight") {
            permute_for_interleaved_rope(t, cfg.num_heads)
        } else if name.ends_with("attn_k.weight") {
            permute_for_interleaved_rope(t, cfg.num_kv_heads)
        } else {
            t.clone()
        };
        let ty = if t.rank() == 2 { dtype } else { GgmlDType::F32 };
        q.push((name.clone(), QTensor::quantize(&t, ty).unwrap()));
    }
    let md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        (
            "llama.embedding_length".into(),
            Value::U32(cfg.hidden_size as u32),
        ),
        (
            "llama.feed_forward_length".into(),
            Value::U32(cfg.intermediate_size as u32),
        ),
        (
            "llama.block_count".into(),
            Value::U32(cfg.num_layers as u32),
        ),
        (
            "llama.attention.head_count".into(),
            Value::U32(cfg.num_heads as u32),
        ),
        (
            "llama.attention.head_count_kv".into(),
            Value::U32(cfg.num_kv_heads as u32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        (
            "llama.rope.freq_base".into(),
            Value::F32(cfg.rope_theta as f32),
        ),
        (
            "llama.context_length".into(),
            Value::U32(cfg.max_position_embeddings as u32),
        ),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = q.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

fn write_tiny_safetensors(dir: &std::path::Path) {
    effbench_core::testing::write_tiny_safetensors(dir, 42);
}

#[test]
fn gguf_and_safetensors_load_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    write_tiny_gguf(&gguf, GgmlDType::F32);
    write_tiny_safetensors(dir.path());
    let dev = Device::Cpu;
    let from_gguf =
        Model::load(&mut GgufSource::open(&gguf, &dev).unwrap(), &AsStored, &dev).unwrap();
    let from_st = Model::load(
        &mut SafetensorsSource::open(dir.path(), &dev).unwrap(),
        &AsStored,
        &dev,
    )
    .unwrap();
    let reference = tiny_model(Architecture::Llama);
    let a = prefill_logits(&from_gguf, &PROMPT);
    let b = prefill_logits(&from_st, &PROMPT);
    let c = prefill_logits(&reference, &PROMPT);
    assert!(
        max_abs_diff(&a, &c) < 1e-4,
        "gguf vs memory {}",
        max_abs_diff(&a, &c)
    );
    assert!(max_abs_diff(&b, &c) < 1e-4, "safetensors vs memory");
}

#[test]
fn quantized_gguf_stays_close_to_f32() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let f32_path = dir.path().join("f32.gguf");
    let q8_path = dir.path().join("q8.gguf");
    write_tiny_gguf(&f32_path, GgmlDType::F32);
    write_tiny_gguf(&q8_path, GgmlDType::Q8_0);
    let a = Model::load(
        &mut GgufSource::open(&f32_path, &dev).unwrap(),
        &AsStored,
        &dev,
    )
    .unwrap();
    let b = Model::load(
        &mut GgufSource::open(&q8_path, &dev).unwrap(),
        &AsStored,
        &dev,
    )
    .unwrap();
    assert_eq!(b.label(), "Q8_0 as stored");
    assert!(b.weight_bytes().total < a.weight_bytes().total / 3);
    let d = max_abs_diff(&prefill_logits(&a, &PROMPT), &prefill_logits(&b, &PROMPT));
    assert!(d > 0.0 && d < 0.1, "Q8_0 logits drift {d}");
}

#[test]
fn forked_prefix_continues_like_the_full_sequence() {
    let model = tiny_model(Architecture::Qwen2);
    let mut cache = cache_for(&model);
    model
        .forward(
            &[SeqChunk::new(0, PROMPT[..5].to_vec(), LogitsFor::None)],
            &mut cache,
        )
        .unwrap();
    cache.fork(0, 1).unwrap();
    cache.fork(0, 2).unwrap();
    let out = model
        .forward(
            &[
                SeqChunk::new(1, PROMPT[5..].to_vec(), LogitsFor::Last),
                SeqChunk::new(2, vec![3, 4], LogitsFor::Last),
            ],
            &mut cache,
        )
        .unwrap();
    let full = prefill_logits(&model, &PROMPT);
    let d = max_abs_diff(
        out.per_chunk[0].as_ref().unwrap(),
        &full.narrow(0, PROMPT.len() - 1, 1).unwrap(),
    );
    assert!(d < 1e-4, "{d}");
    let mut other = PROMPT[..5].to_vec();
    other.extend([3, 4]);
    let full_other = prefill_logits(&model, &other);
    let d = max_abs_diff(
        out.per_chunk[1].as_ref().unwrap(),
        &full_other.narrow(0, other.len() - 1, 1).unwrap(),
    );
    assert!(d < 1e-4, "{d}");
    // The prefix itself is untouched by its forks.
    assert_eq!(cache.seq_len(0), 5);
}

#[test]
fn sharded_safetensors_with_an_index_load_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(Architecture::Llama);
    std::fs::write(
        dir.path().join("config.json"),
        cfg.to_hf_config_json().to_string(),
    )
    .unwrap();
    let mut shards: [HashMap<String, Tensor>; 2] = [HashMap::new(), HashMap::new()];
    let mut weight_map = serde_json::Map::new();
    let mut names: Vec<(String, Tensor)> = tiny_weights(&cfg, 42)
        .into_iter()
        .map(|(k, v)| {
            (
                effbench_core::source::hf_name(cfg.architecture, &k).unwrap(),
                v,
            )
        })
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (name, t)) in names.into_iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        weight_map.insert(name.clone(), serde_json::Value::String(file));
        shards[i % 2].insert(name, t);
    }
    for (i, shard) in shards.iter().enumerate() {
        candle_core::safetensors::save(
            shard,
            dir.path()
                .join(format!("model-0000{}-of-00002.safetensors", i + 1)),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        serde_json::json!({ "metadata": {}, "weight_map": weight_map }).to_string(),
    )
    .unwrap();
    let dev = Device::Cpu;
    let sharded = Model::load(
        &mut SafetensorsSource::open(dir.path(), &dev).unwrap(),
        &AsStored,
        &dev,
    )
    .unwrap();
    let reference = tiny_model(Architecture::Llama);
    let d = max_abs_diff(
        &prefill_logits(&sharded, &PROMPT),
        &prefill_logits(&reference, &PROMPT),
    );
    assert!(d < 1e-4, "{d}");
}

/// GPTQ's calibration runs the model a block at a time over whole sequences: embedding, every
/// block in turn, the final norm and the head must give the forward pass's logits.
#[test]
fn block_at_a_time_gives_the_forward_pass_logits() {
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Gemma3,
    ] {
        let model = tiny_model(arch);
        let other: Vec<u32> = PROMPT.iter().rev().copied().collect();
        let chunks = [
            SeqChunk::new(3, PROMPT.to_vec(), LogitsFor::All),
            SeqChunk::new(5, other[..other.len() - 2].to_vec(), LogitsFor::All),
        ];
        let mut cache = ContiguousKvCache::new(KvShape::of(model.config()), 64, &Device::Cpu);
        let whole = model.forward(&chunks, &mut cache).unwrap();
        let whole = Tensor::cat(
            &whole
                .per_chunk
                .into_iter()
                .map(Option::unwrap)
                .collect::<Vec<_>>(),
            0,
        )
        .unwrap();
        let mut x = model.embed_sequences(&chunks).unwrap();
        for layer in 0..model.config().num_layers {
            x = model.run_block(layer, &chunks, &x).unwrap();
        }
        let logits = model.logits_of(&x).unwrap();
        assert!(max_abs_diff(&whole, &logits) < 1e-5, "{arch:?}");
        let err = model
            .run_block(model.config().num_layers, &chunks, &x)
            .unwrap_err();
        assert!(err.to_string().contains("blocks"), "{err}");
    }
}

/// A GPU keeps its embedding table on the device as f16 (a quantized table read on the host
/// would be copied off the device whole on every forward pass). The same layout run on the CPU
/// gives the host layout's rows up to f16 rounding, and its bytes are counted as what it holds:
/// the f16 table, with a tied head's quantized table counted apart.
#[test]
fn the_device_embedding_layout_matches_the_host_one_and_counts_its_bytes() {
    use candle_core::DeviceLocation;
    use effbench_core::EmbeddingPlacement;
    assert_eq!(
        EmbeddingPlacement::for_location(DeviceLocation::Cpu),
        EmbeddingPlacement::QuantizedRowsOnHost
    );
    for location in [
        DeviceLocation::Cuda { gpu_id: 0 },
        DeviceLocation::Cuda { gpu_id: 3 },
        DeviceLocation::Metal { gpu_id: 0 },
    ] {
        assert_eq!(
            EmbeddingPlacement::for_location(location),
            EmbeddingPlacement::F16OnDevice
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = Device::Cpu;
    let path = dir.path().join("q8.gguf");
    write_tiny_gguf(&path, GgmlDType::Q8_0);
    let load = |placement| {
        Model::load_placed(
            &mut GgufSource::open(&path, &dev).unwrap(),
            &AsStored,
            &dev,
            placement,
        )
        .unwrap()
    };
    let host = load(EmbeddingPlacement::QuantizedRowsOnHost);
    let device = load(EmbeddingPlacement::F16OnDevice);
    // The same rows, each within half an f16 ulp (11 significant bits) of the host's f32.
    let batch = [SeqChunk::new(0, PROMPT.to_vec(), LogitsFor::None)];
    let (a, b) = (
        host.embed_sequences(&batch).unwrap(),
        device.embed_sequences(&batch).unwrap(),
    );
    let scale = a
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let d = max_abs_diff(&a, &b);
    assert!(
        d > 0.0 && d <= scale / 2048.0,
        "rows differ by {d} (values up to {scale})"
    );
    // A random tiny model amplifies that rounding (Q8_0 against f32 moves its logits by 0.02
    // too); a wrong row would move them by whole units.
    let d = max_abs_diff(
        &prefill_logits(&host, &PROMPT),
        &prefill_logits(&device, &PROMPT),
    );
    assert!(d < 0.05, "logits drift {d}");
    let cfg = host.config();
    let (h, dv) = (host.weight_bytes(), device.weight_bytes());
    assert_eq!(dv.embeddings, cfg.vocab_size * cfg.hidden_size * 2);
    assert!(h.embeddings < dv.embeddings, "{h:?} vs {dv:?}");
    assert_eq!(dv.linear, h.linear);
    assert_eq!(
        dv.total,
        dv.linear + dv.embeddings + dv.output_head + dv.norms_and_biases
    );
    if h.output_head == 0 {
        // Tied head: the host layout shares the quantized table; the device one holds both.
        assert_eq!(dv.output_head, h.embeddings);
    }
}
