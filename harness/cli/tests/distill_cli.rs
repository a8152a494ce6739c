//! `effbench distill` end to end on SmolLM2-135M (a two-layer student, a few steps): the
//! checkpoint it writes is a model effbench loads and tokenizes like the teacher; resume and the
//! refusals (another vocabulary, a checkpoint that does not match its config, an existing
//! checkpoint without --resume) each give one line.

use std::path::Path;
use std::process::Command;

use candle_core::Device;
use effbench_core::AsStored;

fn effbench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_effbench"))
        .args(args)
        .output()
        .expect("run effbench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn one_error_line(stderr: &str) -> String {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "want one error line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    errors[0].to_string()
}

fn distill(teacher: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "distill",
        "-m",
        teacher.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--keep-layers",
        "0,29",
        "--sequences",
        "2",
        "--seq-len",
        "24",
        "--batch",
        "2",
        "--warmup",
        "1",
        "--save-every",
        "2",
    ];
    args.extend_from_slice(extra);
    effbench(&args)
}

#[test]
fn distill_writes_a_student_effbench_loads_and_resumes_it() {
    let Some(teacher) = effbench_assets::cached_path_or_skip("smollm2-135m-instruct") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("student");
    let (code, stdout, stderr) = distill(&teacher, &out, &["--steps", "4", "--max-minutes", "0"]);
    assert_eq!(code, 0, "{stderr}");
    // --max-minutes 0 stops after the first step, with a checkpoint to resume from.
    assert!(stdout.contains("step 1/4"), "{stdout}");
    // Resume keeps the corpus the run started on, even if the data flags now differ.
    let (code, stdout, stderr) = distill(&teacher, &out, &["--resume", "--seed", "9"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("teacher-generated corpus from"), "{stderr}");
    assert!(stderr.contains("data: 2 sequences"), "{stderr}");
    assert!(stdout.contains("step 4/4"), "{stdout}");
    assert!(stderr.contains("resuming at step 1/4"), "{stderr}");
    let log = std::fs::read_to_string(out.join("loss.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");
    assert!(out.join("loss.svg").is_file());

    let student = effbench_core::load(&out, &AsStored, &Device::Cpu).unwrap();
    let teacher_model = effbench_core::load(&teacher, &AsStored, &Device::Cpu).unwrap();
    assert_eq!(student.model.config().num_layers, 2);
    let text = "Distillation: the student learns from the teacher, 1234 times!";
    assert_eq!(
        student.encode(text).unwrap(),
        teacher_model.encode(text).unwrap()
    );
    assert_eq!(student.stop_tokens(), teacher_model.stop_tokens());

    // Side by side on the same windows: the teacher agrees with itself, the student does not.
    let Some(text) = effbench_assets::cached_path_or_skip("wikitext-2") else {
        return;
    };
    let json_path = dir.path().join("eval.json");
    let (code, stdout, stderr) = effbench(&[
        "distill",
        "eval",
        "-m",
        teacher.to_str().unwrap(),
        "--student",
        out.to_str().unwrap(),
        "--text",
        text.to_str().unwrap(),
        "--ctx",
        "64",
        "--chunks",
        "1",
        "--json",
        json_path.to_str().unwrap(),
        "--out",
        dir.path().join("eval-run").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Mean KLD"), "{stdout}");
    // The run's report.json, in the schema `report` and `compare` read: the teacher is the
    // baseline, and the student's row is measured against it on the same tokens.
    let report = effbench_report::RunReport::load_file(&json_path).unwrap();
    assert_eq!(
        report,
        effbench_report::RunReport::load_dir(&dir.path().join("eval-run")).unwrap()
    );
    assert_eq!(report.techniques.len(), 2);
    assert_eq!(report.baseline, "as-stored");
    let (teacher_tokens, student_tokens, kl) =
        match (&report.techniques[0].quality, &report.techniques[1].quality) {
            (
                effbench_report::schema::Quality::Perplexity {
                    tokens: t,
                    vs_baseline: None,
                    ..
                },
                effbench_report::schema::Quality::Perplexity {
                    tokens: s,
                    vs_baseline: Some(d),
                    ..
                },
            ) => (*t, *s, d.kl_mean),
            other => panic!("{other:?}"),
        };
    assert!(
        kl > 0.01,
        "a two-layer student differs from its teacher: {kl}"
    );
    assert_eq!(teacher_tokens, student_tokens);
    assert!(report.techniques[1].technique.starts_with("student:"));

    // The flag that no longer has a meaning is one line.
    let (code, _, stderr) = effbench(&[
        "distill",
        "eval",
        "-m",
        teacher.to_str().unwrap(),
        "--student",
        out.to_str().unwrap(),
        "--student-weights",
        "f32",
    ]);
    assert_ne!(code, 0);
    assert!(
        one_error_line(&stderr).contains("--student-weights"),
        "{stderr}"
    );

    // Starting again over a checkpoint without --resume is refused.
    let (code, _, stderr) = distill(&teacher, &out, &["--steps", "4"]);
    assert_ne!(code, 0);
    let line = one_error_line(&stderr);
    assert!(line.contains("--resume"), "{line}");
}

#[test]
fn distill_refuses_another_vocabulary_and_a_mismatched_checkpoint() {
    let Some(teacher) = effbench_assets::cached_path_or_skip("smollm2-135m-instruct") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let mut cfg = effbench_core::testing::tiny_config(effbench_core::Architecture::Llama);
    cfg.vocab_size = 96;
    std::fs::write(&config, cfg.to_hf_config_json().to_string()).unwrap();
    let (code, _, stderr) = distill(
        &teacher,
        &dir.path().join("a"),
        &["--random-init", config.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    let line = one_error_line(&stderr);
    assert!(
        line.contains("vocabulary") && line.contains("49152") && line.contains("hint"),
        "{line}"
    );

    // A real model with another tokenizer (Qwen2.5's 151,936 tokens), refused before any
    // weight is converted.
    if let Some(qwen) = effbench_assets::cached_path_or_skip("qwen2.5-coder-0.5b-instruct") {
        let (code, _, stderr) = distill(
            &teacher,
            &dir.path().join("q"),
            &["--student-init", qwen.to_str().unwrap()],
        );
        assert_ne!(code, 0);
        let line = one_error_line(&stderr);
        assert!(line.contains("151936") && line.contains("49152"), "{line}");
    }

    // A checkpoint whose config promises more layers than its weights hold.
    let student_dir = dir.path().join("broken");
    std::fs::create_dir(&student_dir).unwrap();
    let student = effbench_distill::Student::random(cfg.clone(), 1, &Device::Cpu).unwrap();
    student.save(&student_dir, &serde_json::json!({})).unwrap();
    let mut json = cfg.to_hf_config_json();
    json["num_hidden_layers"] = 5.into();
    std::fs::write(student_dir.join("config.json"), json.to_string()).unwrap();
    let (code, _, stderr) = distill(
        &teacher,
        &dir.path().join("b"),
        &["--student-init", student_dir.to_str().unwrap()],
    );
    assert_ne!(code, 0);
    let line = one_error_line(&stderr);
    assert!(
        line.contains("does not match its config.json") && line.contains("missing"),
        "{line}"
    );
}
