//! GGUF-built tokenizers against token ids recorded from llama.cpp itself
//! (`scripts/llamacpp_token_ids.py` wrote `fixtures/llamacpp_token_ids.json`).

mod common;

use std::path::Path;

use effbench_tokenizer::{from_gguf_file, Tokenizer};
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llamacpp_token_ids.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is valid JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an id list")
        .iter()
        .map(|x| u32::try_from(x.as_u64().expect("an id")).expect("id fits u32"))
        .collect()
}

/// Where two id lists first differ, with a little context, for a readable failure.
fn first_difference(ours: &[u32], theirs: &[u32]) -> String {
    let at = ours
        .iter()
        .zip(theirs)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(theirs.len()));
    let window = |v: &[u32]| v[at.saturating_sub(3)..(at + 4).min(v.len())].to_vec();
    format!(
        "lengths {} vs {}, first difference at {at}: ours {:?} llama.cpp {:?}",
        ours.len(),
        theirs.len(),
        window(ours),
        window(theirs)
    )
}

fn check_model(model: &Value, texts: &[(String, String)]) -> Vec<String> {
    let asset = model["asset"].as_str().unwrap();
    let file = model["file"].as_str().unwrap();
    let Some(path) = common::asset(asset, file) else {
        return Vec::new();
    };
    let mut tokenizer: Tokenizer = from_gguf_file(&path).expect("builds from GGUF");
    let mut failures = Vec::new();

    for (mode, parse_special) in [("parse_special", true), ("no_parse_special", false)] {
        tokenizer.set_encode_special_tokens(!parse_special);
        for ((name, text), want) in texts.iter().zip(model[mode].as_array().unwrap()) {
            let want = ids(want);
            // With special tokens added, a file that asks for BOS gets it first and nothing else.
            let bos = effbench_tokenizer::special_tokens_from_gguf_file(&path)
                .ok()
                .filter(|s| s.add_bos)
                .and_then(|s| s.bos);
            for add_special in [false, true] {
                let got = tokenizer.encode(text.as_str(), add_special).unwrap();
                let want: Vec<u32> = match bos {
                    Some(b) if add_special => std::iter::once(b).chain(want.clone()).collect(),
                    _ => want.clone(),
                };
                if got.get_ids() != want {
                    failures.push(format!(
                        "{file} {mode} add_special={add_special} {name:?}: {}",
                        first_difference(got.get_ids(), &want)
                    ));
                }
            }
            let decoded = tokenizer.decode(&want, false).unwrap();
            if decoded != *text {
                failures.push(format!(
                    "{file} {mode} {name:?}: decode(llama.cpp ids) = {decoded:?}, want {text:?}"
                ));
            }
        }
    }
    failures
}

/// Checks one model of the fixture (by asset name) against llama.cpp.
fn check(asset: &str) {
    let fixture = fixture();
    let texts: Vec<(String, String)> = fixture["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let model = fixture["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["asset"] == asset)
        .unwrap_or_else(|| panic!("{asset} is not in the fixture; regenerate it"));
    let failures = check_model(model, &texts);
    assert!(
        failures.is_empty(),
        "{} mismatches with llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    check("smollm2-135m-instruct");
}

#[test]
fn qwen2_5_coder_0_5b_matches_llama_cpp() {
    check("qwen2.5-coder-0.5b-instruct");
}

#[test]
fn qwen2_5_coder_1_5b_matches_llama_cpp() {
    check("qwen2.5-coder-1.5b-instruct");
}

/// Gemma 3: a SentencePiece vocabulary of 262k pieces with no space prefix, and BOS added.
#[test]
fn gemma_3_270m_matches_llama_cpp() {
    check("gemma-3-270m");
}
