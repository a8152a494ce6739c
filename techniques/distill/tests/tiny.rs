//! Distillation on tiny seeded models: the student matches its teacher when it keeps every
//! layer, layer dropping copies the chosen layers, the KD loss falls when training, a saved
//! student reloads through effbench-core with the same logits, resume continues exactly, and
//! bad input is refused with one line.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use effbench_core::linear::SourceTensor;
use effbench_core::source::TensorMapSource;
use effbench_core::testing::{
    max_abs_diff, permute_for_interleaved_rope, tiny_config, tiny_weights,
};
use effbench_core::{Architecture, AsStored, LogitsFor, Model, ModelConfig, RopeStyle, SeqChunk};
use effbench_distill::data::{generate_corpus, GenerateOptions};
use effbench_distill::train::{read_log, read_state, Checkpointing};
use effbench_distill::{train, LayerSelection, Student, Teacher, TrainOptions, TrainState};

const PROMPT: [u32; 11] = [5, 17, 3, 88, 42, 42, 7, 60, 1, 90, 11];

/// The teacher as a checkpoint would hand it over: for llama, GGUF's layout (q/k rows permuted
/// for interleaved RoPE), which the student must undo.
fn teacher_source(arch: Architecture, seed: u64) -> (TensorMapSource, HashMap<String, Tensor>) {
    let mut cfg = tiny_config(arch);
    let hf_layout = tiny_weights(&cfg, seed);
    let mut stored = HashMap::new();
    for (name, t) in &hf_layout {
        let t = match (arch, name) {
            (Architecture::Llama, n) if n.ends_with("attn_q.weight") => {
                permute_for_interleaved_rope(t, cfg.num_heads)
            }
            (Architecture::Llama, n) if n.ends_with("attn_k.weight") => {
                permute_for_interleaved_rope(t, cfg.num_kv_heads)
            }
            _ => t.clone(),
        };
        stored.insert(name.clone(), SourceTensor::Dense(t));
    }
    if arch == Architecture::Llama {
        cfg.rope_style = RopeStyle::Interleaved;
    }
    (TensorMapSource::new(cfg, stored), hf_layout)
}

fn teacher_model(arch: Architecture) -> Model {
    let (mut source, _) = teacher_source(arch, 42);
    Model::load(&mut source, &AsStored, &Device::Cpu).unwrap()
}

fn runtime_logits(model: &Model, tokens: &[u32]) -> Tensor {
    let mut cache = effbench_core::ContiguousKvCache::new(
        effbench_core::KvShape::of(model.config()),
        tokens.len(),
        &Device::Cpu,
    );
    model
        .forward(
            &[SeqChunk::new(0, tokens.to_vec(), LogitsFor::All)],
            &mut cache,
        )
        .unwrap()
        .per_chunk[0]
        .clone()
        .unwrap()
}

/// A word-level tokenizer over the tiny vocabulary, so effbench-core can load the directory.
fn write_tiny_tokenizer(dir: &Path, vocab: usize) {
    let words: serde_json::Map<String, serde_json::Value> = (0..vocab)
        .map(|i| (format!("w{i}"), serde_json::Value::from(i)))
        .collect();
    let json = serde_json::json!({
        "version": "1.0",
        "pre_tokenizer": {"type": "Whitespace"},
        "model": {"type": "WordLevel", "vocab": words, "unk_token": "w0"},
    });
    std::fs::write(dir.join("tokenizer.json"), json.to_string()).unwrap();
}

fn tiny_corpus(teacher: &Model) -> Vec<Vec<u32>> {
    let opts = GenerateOptions {
        sequences: 12,
        seq_len: 24,
        temperature: 1.0,
        top_p: 1.0,
        seed: 7,
        batch: 6,
    };
    generate_corpus(
        teacher,
        &[vec![1, 2, 3], vec![40, 41], vec![9]],
        &[],
        &opts,
        |_, _| {},
    )
    .unwrap()
}

#[test]
fn a_student_keeping_every_layer_matches_the_teacher() {
    // A phi3 teacher's source hands out its fused matrices split; the student is a llama.
    for arch in [Architecture::Llama, Architecture::Qwen2, Architecture::Phi3] {
        let teacher = teacher_model(arch);
        let (mut source, _) = teacher_source(arch, 42);
        let student =
            Student::from_teacher(&mut source, &LayerSelection::All, &Device::Cpu).unwrap();
        let diff = max_abs_diff(
            &student.forward(&PROMPT).unwrap(),
            &runtime_logits(&teacher, &PROMPT),
        );
        assert!(
            diff < 1e-4,
            "{arch:?}: student and teacher differ by {diff}"
        );
    }
}

#[test]
fn layer_dropping_copies_the_chosen_layers_in_hugging_face_layout() {
    let (mut source, hf_layout) = teacher_source(Architecture::Llama, 42);
    let student = Student::from_teacher(
        &mut source,
        &LayerSelection::parse("0,2").unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(student.config().num_layers, 2);
    for (student_layer, teacher_layer) in [(0, 0), (1, 2)] {
        for (hf, canonical) in [
            ("self_attn.q_proj.weight", "attn_q.weight"),
            ("self_attn.k_proj.weight", "attn_k.weight"),
            ("mlp.down_proj.weight", "ffn_down.weight"),
            ("input_layernorm.weight", "attn_norm.weight"),
        ] {
            let got = student
                .tensor(&format!("model.layers.{student_layer}.{hf}"))
                .unwrap();
            let want = &hf_layout[&format!("blk.{teacher_layer}.{canonical}")];
            assert_eq!(
                max_abs_diff(&got, want),
                0.0,
                "student layer {student_layer} {hf}"
            );
        }
    }
    assert!(student
        .tensor("model.layers.2.mlp.up_proj.weight")
        .is_none());
    // Every other layer of 3 keeps 0 and 2; out-of-range and unordered lists are refused.
    assert_eq!(LayerSelection::EveryOther.resolve(3).unwrap(), vec![0, 2]);
    for bad in ["0,3", "2,1", "x"] {
        let err = LayerSelection::parse(bad)
            .and_then(|s| s.resolve(3))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hint") && !err.contains('\n'), "{err}");
    }
}

fn quick_options(steps: usize) -> TrainOptions {
    TrainOptions {
        steps,
        seqs_per_step: 4,
        lr: 3e-3,
        warmup_steps: 2,
        min_lr_ratio: 0.1,
        weight_decay: 0.0,
        temperature: 1.0,
        alpha: 0.0,
        grad_clip: 1.0,
        save_every: 3,
        seed: 3,
        max_seconds: None,
        stop_at_step: None,
    }
}

#[test]
fn kd_loss_falls_and_the_saved_student_reloads_with_the_same_logits() {
    let teacher = teacher_model(Architecture::Llama);
    let corpus = tiny_corpus(&teacher);
    let (mut source, _) = teacher_source(Architecture::Llama, 42);
    let student =
        Student::from_teacher(&mut source, &LayerSelection::EveryOther, &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpointing {
        dir: dir.path(),
        extra_config: serde_json::json!({"bos_token_id": 1, "eos_token_id": 2}),
    };
    let mut kl = Vec::new();
    let state = train(
        &student,
        &teacher,
        &corpus,
        &quick_options(24),
        TrainState::default(),
        Some(&checkpoint),
        |r| kl.push(r.kl),
    )
    .unwrap();
    assert_eq!(state.step, 24);
    let first = kl[..3].iter().sum::<f32>() / 3.0;
    let last = kl[kl.len() - 3..].iter().sum::<f32>() / 3.0;
    assert!(
        last < 0.6 * first,
        "KL to the teacher should fall: first steps {first}, last steps {last} ({kl:?})"
    );

    // The checkpoint is a Hugging Face directory effbench-core loads like any other.
    write_tiny_tokenizer(dir.path(), teacher.config().vocab_size);
    let loaded = effbench_core::load(dir.path(), &AsStored, &Device::Cpu).unwrap();
    let in_memory = student.forward(&PROMPT).unwrap();
    let diff = max_abs_diff(&runtime_logits(&loaded.model, &PROMPT), &in_memory);
    assert!(diff < 1e-4, "reloaded student differs by {diff}");
    assert_eq!(loaded.special.eos, Some(2));
    let reread = Student::load(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(
        max_abs_diff(&reread.forward(&PROMPT).unwrap(), &in_memory),
        0.0
    );
    assert_eq!(read_log(dir.path(), None).unwrap().len(), 24);
    assert!(dir.path().join("loss.svg").is_file());
}

#[test]
fn a_random_student_learns_from_the_teacher_too() {
    let teacher = teacher_model(Architecture::Qwen2);
    let corpus = tiny_corpus(&teacher);
    let mut cfg: ModelConfig = tiny_config(Architecture::Qwen2);
    cfg.num_layers = 1;
    let student = Student::random(cfg, 5, &Device::Cpu).unwrap();
    let mut kl = Vec::new();
    // Some cross-entropy in the mix: KL must still fall.
    let opts = TrainOptions {
        lr: 1e-2,
        alpha: 0.1,
        temperature: 2.0,
        ..quick_options(20)
    };
    train(
        &student,
        &teacher,
        &corpus,
        &opts,
        TrainState::default(),
        None,
        |r| kl.push(r.kl),
    )
    .unwrap();
    let (first, last) = (kl[0], *kl.last().unwrap());
    assert!(last < 0.7 * first, "KL {first} -> {last} ({kl:?})");
}

#[test]
fn resume_continues_with_the_same_weights_schedule_and_data() {
    let teacher = teacher_model(Architecture::Llama);
    let corpus = tiny_corpus(&teacher);
    let fresh = || {
        let (mut source, _) = teacher_source(Architecture::Llama, 42);
        Student::from_teacher(&mut source, &LayerSelection::EveryOther, &Device::Cpu).unwrap()
    };
    let mut straight = Vec::new();
    train(
        &fresh(),
        &teacher,
        &corpus,
        &quick_options(6),
        TrainState::default(),
        None,
        |r| straight.push(r.clone()),
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpointing {
        dir: dir.path(),
        extra_config: serde_json::json!({}),
    };
    let interrupted = TrainOptions {
        stop_at_step: Some(3),
        ..quick_options(6)
    };
    train(
        &fresh(),
        &teacher,
        &corpus,
        &interrupted,
        TrainState::default(),
        Some(&checkpoint),
        |_| {},
    )
    .unwrap();
    let (state, opts) = read_state(dir.path()).unwrap().unwrap();
    assert_eq!(state.step, 3);
    let resumed = Student::load(dir.path(), &Device::Cpu).unwrap();
    let mut after = Vec::new();
    let end = train(
        &resumed,
        &teacher,
        &corpus,
        &opts,
        state,
        Some(&checkpoint),
        |r| after.push(r.clone()),
    )
    .unwrap();
    assert_eq!(end.step, 6);
    // Step 4 sees the checkpointed weights and the same sequences: its loss is the one an
    // uninterrupted run computes (later steps differ: AdamW's moments are not restored).
    assert_eq!(after[0].step, 4);
    assert_eq!(after[0].lr, straight[3].lr);
    assert_eq!(after[0].tokens, straight[3].tokens);
    assert!(
        (after[0].loss - straight[3].loss).abs() < 1e-5,
        "{} vs {}",
        after[0].loss,
        straight[3].loss
    );
    let log: Vec<usize> = read_log(dir.path(), None)
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(log, vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_student_with_another_vocabulary_is_refused() {
    let teacher = teacher_model(Architecture::Llama);
    let mut cfg = tiny_config(Architecture::Llama);
    cfg.vocab_size = 120;
    let student = Student::random(cfg, 1, &Device::Cpu).unwrap();
    let err = train(
        &student,
        &teacher,
        &[vec![1, 2, 3]],
        &quick_options(1),
        TrainState::default(),
        None,
        |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("120") && err.contains("96") && err.contains("hint") && !err.contains('\n'),
        "{err}"
    );
    assert_eq!(teacher.vocab_size(), 96);
}

#[test]
fn a_checkpoint_that_does_not_match_its_config_is_refused() {
    let student = Student::random(tiny_config(Architecture::Llama), 1, &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    student.save(dir.path(), &serde_json::json!({})).unwrap();
    let config_path = dir.path().join("config.json");
    let original = std::fs::read_to_string(&config_path).unwrap();
    for (key, value, expect) in [
        ("intermediate_size", 256, "shape"),
        ("num_hidden_layers", 4, "missing"),
        ("num_hidden_layers", 2, "not part of"),
    ] {
        let mut json: serde_json::Value = serde_json::from_str(&original).unwrap();
        json[key] = value.into();
        std::fs::write(&config_path, json.to_string()).unwrap();
        let err = Student::load(dir.path(), &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("does not match its config.json")
                && err.contains(expect)
                && err.contains("hint")
                && !err.contains('\n'),
            "{key}={value}: {err}"
        );
    }
}
