#![no_main]
//! lm-eval task YAML: the bytes before the first NUL are the task file, the rest its data (JSON
//! Lines, or parquet if the YAML says so). YAML parsing, refusals and every template run on
//! every document, lenient and strict.

use std::path::Path;

use effbench_datasets::{load_lm_eval_yaml_with_data, Error, LmEvalTask, ScoreNorm, MAX_GEN_TOKENS};
use libfuzzer_sys::fuzz_target;

fn load(yaml: &[u8], data: &[u8], strict: bool) -> Result<LmEvalTask, Error> {
    load_lm_eval_yaml_with_data(Path::new("task.yaml"), yaml, Path::new("data.jsonl"), data, strict)
}

fuzz_target!(|input: &[u8]| {
    let (yaml, data) = match input.iter().position(|&b| b == 0) {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &[][..]),
    };
    let lenient = load(yaml, data, false);
    let strict = load(yaml, data, true);
    match &lenient {
        Err(e) => {
            assert!(!matches!(e, Error::BadRow { .. }), "lenient load failed on a row: {e}");
            if let Error::TaskYaml { .. } = e {
                assert!(!e.to_string().contains('\n'), "a task error is one line: {e}");
            }
            assert!(strict.is_err(), "lenient failed, strict passed");
        }
        Ok(LmEvalTask::Scored(report)) => {
            let mut ids = std::collections::HashSet::new();
            for item in &report.items {
                assert!(ids.insert(item.id.clone()), "duplicate id {}", item.id);
                let r = item.rendered.as_ref().expect("rendered");
                let n = item.choices.len();
                assert!(item.answer < n);
                assert_eq!(r.continuations.len(), n);
                assert!(r.contexts.len() == 1 || r.contexts.len() == n);
                if r.norm == ScoreNorm::Greedy {
                    assert_eq!(n, 1);
                } else {
                    assert!((2..=26).contains(&n));
                }
            }
            match &strict {
                Ok(LmEvalTask::Scored(s)) => {
                    assert!(report.skipped.is_empty(), "strict passed rows lenient skipped");
                    assert_eq!(s.items, report.items);
                }
                Err(Error::BadRow { .. }) => assert!(!report.skipped.is_empty()),
                other => panic!("strict disagrees with lenient: {:?}", other.as_ref().err()),
            }
        }
        Ok(LmEvalTask::Generation(load)) => {
            for item in &load.items {
                assert!(!item.prompt.is_empty());
                assert!(!item.gold.trim().is_empty());
                assert!((1..=MAX_GEN_TOKENS).contains(&item.max_new_tokens));
            }
            match &strict {
                Ok(LmEvalTask::Generation(s)) => {
                    assert!(load.skipped.is_empty());
                    assert_eq!(s.items, load.items);
                }
                Err(Error::BadRow { .. }) => assert!(!load.skipped.is_empty()),
                other => panic!("strict disagrees with lenient: {:?}", other.as_ref().err()),
            }
        }
    }
});
