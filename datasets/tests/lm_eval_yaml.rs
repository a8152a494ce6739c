//! lm-eval task YAML: each output type on small files written here, bad documents counted with
//! their lines, and every refused key a one-line error naming the key and the file.

use std::fs;
use std::path::Path;

use effbench_datasets::{
    load_lm_eval_yaml, load_lm_eval_yaml_with_data, load_mc, Error, LmEvalTask, ScoreNorm,
};
use tempfile::TempDir;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn scored(task: LmEvalTask) -> effbench_datasets::LoadReport {
    match task {
        LmEvalTask::Scored(r) => r,
        LmEvalTask::Generation(_) => panic!("expected a scored task"),
    }
}

const ARC_ROWS: &str = r#"{"id":"Mercury_7","question":"Which is a gas?","choices":{"text":["ice","steam","rock"],"label":["A","B","C"]},"answerKey":"B"}
{"id":"Mercury_8","question":"Which is hot?","choices":{"text":["sun","moon","snow","ice"],"label":["1","2","3","4"]},"answerKey":"1"}
{"id":"Mercury_9","question":"Pick \"the\" 'last'","choices":{"text":["it's","say \"hi\"","a\\b"],"label":["A","B","C"]},"answerKey":"C"}
"#;

const ARC_YAML: &str = r#"tag:
  - ai2_arc
task: arc
dataset_path: json
dataset_kwargs:
  data_files:
    train: train.jsonl
    test: data/arc.jsonl
output_type: multiple_choice
training_split: train
test_split: test
doc_to_text: "Question: {{question}}\nAnswer:"
doc_to_target: "{{choices.label.index(answerKey)}}"
doc_to_choice: "{{choices.text}}"
should_decontaminate: true
doc_to_decontamination_query: "Question: {{question}}\nAnswer:"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"#;

#[test]
fn arc_yaml_gives_the_items_the_arc_loader_gives() {
    let dir = TempDir::new().unwrap();
    fs::create_dir(dir.path().join("data")).unwrap();
    let data = write(dir.path(), "data/arc.jsonl", ARC_ROWS);
    let yaml = write(dir.path(), "arc.yaml", ARC_YAML);
    let from_yaml = scored(load_lm_eval_yaml(&yaml, true).unwrap());
    let from_rows = load_mc(&data, true).unwrap();
    assert_eq!(from_yaml.items.len(), 3);
    assert!(from_yaml.skipped.is_empty());
    for (y, r) in from_yaml.items.iter().zip(&from_rows.items) {
        assert_eq!(y.id, r.id);
        assert_eq!(y.subject, r.subject);
        assert_eq!(y.choices, r.choices);
        assert_eq!(y.answer, r.answer);
        assert_eq!(y.rendered, r.rendered, "{}", y.id);
    }
    assert_eq!(from_yaml.items[0].id, "arc/Mercury_7");
    assert_eq!(from_yaml.items[1].answer, 0);
    assert_eq!(from_yaml.items[2].choices[1], "say \"hi\"");
    assert_eq!(from_yaml.items[2].choices[2], "a\\b");
    assert_eq!(
        from_yaml.items[0].rendered.as_ref().unwrap().norm,
        ScoreNorm::Raw
    );
    // `.yaml` is sniffed as a task file too.
    assert_eq!(load_mc(&yaml, true).unwrap().items, from_yaml.items);
}

#[test]
fn acc_norm_description_and_fixed_choices() {
    let yaml = r#"task: Yes-No
dataset_path: json
dataset_kwargs: {data_files: x.jsonl}
test_split: test
output_type: multiple_choice
description: "Answer about {{topic}}.\n\n"
doc_to_text: "{{q.strip()}}?"
doc_to_choice: ["no", "yes"]
doc_to_target: label
target_delimiter: ": "
metric_list: [{metric: acc_norm}, {metric: acc}]
"#;
    let data = "{\"q\":\" Is it \",\"topic\":\"sky\",\"label\":true}\n{\"q\":\"Is not\",\"topic\":\"sea\",\"label\":0}\n";
    let r = scored(
        load_lm_eval_yaml_with_data("t.yaml", yaml.as_bytes(), "x.jsonl", data.as_bytes(), true)
            .unwrap(),
    );
    let first = &r.items[0];
    assert_eq!(first.id, "yes_no/0");
    assert_eq!(first.answer, 1);
    let rendered = first.rendered.as_ref().unwrap();
    assert_eq!(rendered.contexts, ["Answer about sky.\n\nIs it?"]);
    assert_eq!(rendered.continuations, [": no", ": yes"]);
    assert_eq!(rendered.norm, ScoreNorm::PerChoiceChar);
    assert_eq!(r.items[1].answer, 0);
}

#[test]
fn a_rendered_list_literal_and_a_string_target_find_their_choice() {
    let yaml = r#"task: t
dataset_path: json
dataset_kwargs: {data_files: x.jsonl}
output_type: multiple_choice
doc_to_text: "{{ctx}}"
doc_to_choice: "['{{a}}', '{{b}}']"
doc_to_target: "{{gold}}"
"#;
    let data = r#"{"ctx":"c","a":"up","b":"down","gold":"down"}
{"ctx":"c","a":"up","b":"down","gold":"1"}
"#;
    let r = scored(
        load_lm_eval_yaml_with_data("t.yaml", yaml.as_bytes(), "x.jsonl", data.as_bytes(), true)
            .unwrap(),
    );
    assert_eq!(r.items[0].choices, ["up", "down"]);
    assert_eq!(r.items[0].answer, 1);
    // A rendered target of digits is an index, as in lm-eval.
    assert_eq!(r.items[1].answer, 1);
}

#[test]
fn winogrande_form_scores_one_context_per_choice() {
    let yaml = r#"task: wino
dataset_path: json
dataset_kwargs: {data_files: x.jsonl}
output_type: multiple_choice
doc_to_text: "{{ answer|int - 1 }}"
doc_to_choice: "{{ [sentence.split('_')[0] ~ option1, sentence.split('_')[0] ~ option2] }}"
doc_to_target: "{{ sentence.split('_')[1].strip() }}"
"#;
    let data = r#"{"sentence":"Sarah was better than Maria so _ got the easy cases.","option1":"Sarah","option2":"Maria","answer":"2"}"#;
    let r = scored(
        load_lm_eval_yaml_with_data("w.yaml", yaml.as_bytes(), "x.jsonl", data.as_bytes(), true)
            .unwrap(),
    );
    let item = &r.items[0];
    assert_eq!(item.answer, 1);
    let rendered = item.rendered.as_ref().unwrap();
    assert_eq!(
        rendered.contexts,
        [
            "Sarah was better than Maria so Sarah",
            "Sarah was better than Maria so Maria"
        ]
    );
    assert_eq!(rendered.continuations, [" got the easy cases."; 2]);
}

#[test]
fn loglikelihood_scores_the_target_as_rendered() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "lambada.jsonl",
        "{\"text\":\"the cat sat on the mat\"}\n\n{\"text\":\"one two\"}\n",
    );
    let yaml = write(
        dir.path(),
        "lambada.yaml",
        r#"task: lambada_openai
dataset_path: json
dataset_kwargs:
  data_files: lambada.jsonl
output_type: loglikelihood
test_split: test
doc_to_text: "{{text.split(' ')[:-1]|join(' ')}}"
doc_to_target: "{{' '+text.split(' ')[-1]}}"
metric_list:
  - metric: perplexity
  - metric: acc
"#,
    );
    let r = scored(load_lm_eval_yaml(&yaml, true).unwrap());
    assert_eq!(r.items.len(), 2);
    let first = &r.items[0];
    assert_eq!(first.id, "lambada_openai/0");
    assert_eq!(first.answer, 0);
    let rendered = first.rendered.as_ref().unwrap();
    assert_eq!(rendered.contexts, ["the cat sat on the"]);
    assert_eq!(rendered.continuations, [" mat"]);
    assert_eq!(rendered.norm, ScoreNorm::Greedy);
    assert_eq!(r.items[1].id, "lambada_openai/1");
}

#[test]
fn generate_until_renders_prompt_gold_and_stops() {
    let yaml = r#"task: gsm8k
dataset_path: json
dataset_kwargs:
  data_files: [a.jsonl]
output_type: generate_until
test_split: test
doc_to_text: "Question: {{question}}\nAnswer:"
doc_to_target: "{{answer.split('####')[-1].strip()}}"
generation_kwargs:
  until: ["Question:", "</s>"]
  do_sample: false
  temperature: 0.0
  max_gen_toks: 512
num_fewshot: 0
filter_list:
  - name: strict-match
    filter: [{function: regex, regex_pattern: "(-?[0-9.,]+)"}]
"#;
    let data = r#"{"question":"What is 3+4?","answer":"3+4=7\n#### 7"}
{"question":"Half of 10?","answer":"10/2=5\n#### 5"}
"#;
    let LmEvalTask::Generation(g) =
        load_lm_eval_yaml_with_data("g.yaml", yaml.as_bytes(), "a.jsonl", data.as_bytes(), true)
            .unwrap()
    else {
        panic!("expected generation");
    };
    assert_eq!(g.items.len(), 2);
    let first = &g.items[0];
    assert_eq!(first.id, "gsm8k/0");
    assert_eq!(first.prompt, "Question: What is 3+4?\nAnswer:");
    assert_eq!(first.gold, "7");
    assert_eq!(first.until, ["Question:", "</s>"]);
    assert_eq!(first.max_new_tokens, 512);

    // No generation_kwargs: lm-eval's defaults, stop at the few-shot delimiter, 256 tokens.
    let bare = yaml.split("generation_kwargs").next().unwrap();
    let LmEvalTask::Generation(g) =
        load_lm_eval_yaml_with_data("g.yaml", bare.as_bytes(), "a.jsonl", data.as_bytes(), true)
            .unwrap()
    else {
        panic!("expected generation");
    };
    assert_eq!(g.items[1].until, ["\n\n"]);
    assert_eq!(g.items[1].max_new_tokens, 256);
    assert_eq!(g.items[1].gold, "5");
}

#[test]
fn bad_documents_are_counted_with_their_lines() {
    let yaml = r#"task: t
dataset_path: json
dataset_kwargs: {data_files: x.jsonl}
output_type: multiple_choice
doc_to_text: "Q: {{question}}"
doc_to_choice: "{{choices}}"
doc_to_target: "{{answer}}"
"#;
    let data = [
        r#"{"question":"ok","choices":["a","b"],"answer":1}"#,
        r#"{"choices":["a","b"],"answer":1}"#,
        r#"{"question":"q","choices":["a","b"],"answer":5}"#,
        r#"{"question":"q","choices":["a"],"answer":0}"#,
        "not json",
        r#"{"question":"q","choices":"nope","answer":0}"#,
        r#"{"question":"q","choices":["a","b"],"answer":"c"}"#,
        "",
        r#"{"question":"fine","choices":["x","y","z"],"answer":2}"#,
    ]
    .join("\n");
    let r = scored(
        load_lm_eval_yaml_with_data("t.yaml", yaml.as_bytes(), "x.jsonl", data.as_bytes(), false)
            .unwrap(),
    );
    assert_eq!(r.items.len(), 2);
    // Bad rows still take a row number, as they are documents of the split.
    assert_eq!(r.items[1].id, "t/7");
    let reasons: Vec<(usize, &str)> = r
        .skipped
        .iter()
        .map(|b| (b.line, b.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    assert_eq!(
        reasons.iter().map(|r| r.0).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6, 7]
    );
    assert!(
        reasons[0].1.contains("doc_to_text") && reasons[0].1.contains("undefined"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].1.contains("not a choice index below 2"),
        "{reasons:?}"
    );
    assert!(reasons[2].1.contains("2 to 26 choices"), "{reasons:?}");
    assert!(reasons[3].1.contains("malformed JSON"), "{reasons:?}");
    assert!(reasons[4].1.contains("doc_to_choice"), "{reasons:?}");
    assert!(
        reasons[5].1.contains("not one of the choices"),
        "{reasons:?}"
    );
    assert!(r.skipped[0].file.ends_with("x.jsonl"));

    let err =
        load_lm_eval_yaml_with_data("t.yaml", yaml.as_bytes(), "x.jsonl", data.as_bytes(), true)
            .unwrap_err();
    assert!(matches!(err, Error::BadRow { line: 2, .. }), "{err}");
}

const BASE: &str = "task: t
dataset_path: json
dataset_kwargs: {data_files: x.jsonl}
output_type: multiple_choice
doc_to_text: q
doc_to_choice: c
doc_to_target: a
";

fn refusal(yaml: &str) -> String {
    let data = r#"{"q":"Q","c":["a","b"],"a":0}"#;
    let err = load_lm_eval_yaml_with_data(
        "task.yaml",
        yaml.as_bytes(),
        "x.jsonl",
        data.as_bytes(),
        false,
    )
    .expect_err(yaml)
    .to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(err.starts_with("task.yaml: "), "{err}");
    err
}

#[test]
fn the_base_config_loads() {
    let data = r#"{"q":"Q","c":["a","b"],"a":1}"#;
    let r = scored(
        load_lm_eval_yaml_with_data(
            "task.yaml",
            BASE.as_bytes(),
            "x.jsonl",
            data.as_bytes(),
            true,
        )
        .unwrap(),
    );
    assert_eq!(r.items[0].answer, 1);
    assert_eq!(r.items[0].rendered.as_ref().unwrap().contexts, ["Q"]);
}

#[test]
fn unsupported_keys_are_refused_by_name() {
    let cases = [
        (
            "process_docs: !function utils.process_docs\n",
            "process_docs",
        ),
        ("process_results: x\n", "process_results"),
        ("fewshot_config: {sampler: first_n}\n", "fewshot_config"),
        ("use_prompt: promptsource:x\n", "use_prompt"),
        ("include: base.yaml\n", "include"),
        ("gen_prefix: 'Answer:'\n", "gen_prefix"),
        ("num_fewshot: 5\n", "num_fewshot"),
        ("repeats: 3\n", "repeats"),
        ("filter_list: [{name: x, filter: []}]\n", "filter_list"),
        ("brand_new_key: 1\n", "brand_new_key"),
        ("metric_list: [{metric: mcc}]\n", "metric_list"),
    ];
    for (extra, key) in cases {
        let err = refusal(&format!("{BASE}{extra}"));
        assert!(err.contains(key), "{key}: {err}");
    }
    let swap = |from: &str, to: &str| refusal(&BASE.replace(from, to));
    assert!(swap("output_type: multiple_choice\n", "").contains("missing `output_type`"));
    assert!(swap("multiple_choice", "loglikelihood_rolling").contains("output_type"));
    assert!(swap("dataset_kwargs: {data_files: x.jsonl}\n", "").contains("data_files"));
    assert!(swap("dataset_path: json", "dataset_path: allenai/ai2_arc").contains("dataset_path"));
    assert!(swap("x.jsonl}", "{train: x.jsonl}}").contains("test_split"));
    assert!(swap("doc_to_choice: c\n", "").contains("doc_to_choice"));
    assert!(swap("doc_to_text: q", "doc_to_text: '{{ q '").contains("doc_to_text"));
    assert!(swap("x.jsonl}", "https://x/y.jsonl}").contains("remote"));
    assert!(swap("x.jsonl}", "'*.jsonl'}").contains("pattern"));
}

#[test]
fn function_hooks_are_refused_wherever_they_are() {
    let err = refusal(&BASE.replace("doc_to_text: q", "doc_to_text: !function utils.doc_to_text"));
    assert!(
        err.contains("doc_to_text") && err.contains("!function"),
        "{err}"
    );
    let err = refusal(&format!(
        "{BASE}metric_list:\n  - metric: !function utils.my_metric\n"
    ));
    assert!(
        err.contains("metric_list") && err.contains("!function"),
        "{err}"
    );
}

#[test]
fn hostile_yaml_is_an_error_not_a_hang() {
    let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..9 {
        let prev = (b'a' + i) as char;
        let next = (b'a' + i + 1) as char;
        laughs.push_str(&format!("{next}: &{next} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    assert!(refusal(&laughs).contains("aliases"));
    let deep = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
    assert!(refusal(&deep).contains("deeper"));
    assert!(refusal("a: [").contains("not YAML"));
    assert!(refusal("just text").contains("not a mapping"));
    // A template that loops forever runs out of fuel: a bad row, not a hang.
    let looping = BASE.replace(
        "doc_to_text: q",
        "doc_to_text: \"{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}\"",
    );
    let data = r#"{"q":"Q","c":["a","b"],"a":0}"#;
    let r = scored(
        load_lm_eval_yaml_with_data(
            "t.yaml",
            looping.as_bytes(),
            "x.jsonl",
            data.as_bytes(),
            false,
        )
        .unwrap(),
    );
    assert_eq!(r.skipped.len(), 1);
}

#[test]
fn regex_replace_and_python_rendering_match_lm_eval() {
    let yaml = BASE
        .replace(
            "doc_to_text: q",
            r#"doc_to_text: '{{ q|regex_replace("(\\w+) (\\w+)", "\\2 \\1") }} {{ flag }} {{ none }} {{ c }}'"#,
        );
    let data = r#"{"q":"hello world","flag":true,"none":null,"c":["a","it's"],"a":0}"#;
    let r = scored(
        load_lm_eval_yaml_with_data("t.yaml", yaml.as_bytes(), "x.jsonl", data.as_bytes(), true)
            .unwrap(),
    );
    assert_eq!(
        r.items[0].rendered.as_ref().unwrap().contexts,
        [r#"world hello True None ['a', "it's"]"#]
    );
    // A replacement that would grow without bound is a bad row.
    let yaml = BASE.replace(
        "doc_to_text: q",
        r#"doc_to_text: "{{ (q ~ q ~ q ~ q)|regex_replace('', '\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')|regex_replace('', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx') }}""#,
    );
    let data = format!(r#"{{"q":"{}","c":["a","b"],"a":0}}"#, "y".repeat(2000));
    let r = scored(
        load_lm_eval_yaml_with_data("t.yaml", yaml.as_bytes(), "x.jsonl", data.as_bytes(), false)
            .unwrap(),
    );
    assert_eq!(r.skipped.len(), 1, "{:?}", r.items);
}
