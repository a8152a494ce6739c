//! Opens a checkpoint (GGUF, or safetensors + config.json) with its tokenizer, whichever the
//! path holds, and builds the model under a weight policy.

use std::path::{Path, PathBuf};

use candle_core::Device;
use effbench_tokenizer::SpecialTokens;
use tokenizers::Tokenizer;

use crate::error::{CoreError, Result};
use crate::linear::WeightPolicy;
use crate::model::Model;
use crate::source::{sniff, GgufSource, ModelFormat, SafetensorsSource, WeightSource};

pub struct LoadedModel {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub special: SpecialTokens,
    pub path: PathBuf,
    pub format: ModelFormat,
    /// The checkpoint's own storage format, e.g. "Q4_1", "bf16".
    pub source_format: String,
}

impl LoadedModel {
    /// Tokens that end a generation: end-of-sequence and end-of-turn.
    pub fn stop_tokens(&self) -> Vec<u32> {
        self.special.eog.clone()
    }

    /// The token a perplexity window starts with when the checkpoint starts its inputs with
    /// BOS, as llama.cpp's perplexity tool does; None otherwise.
    pub fn window_bos(&self) -> Option<u32> {
        self.special.bos.filter(|_| self.special.add_bos)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            // The tokenizer's post-processor adds BOS exactly when the checkpoint asks for it.
            .encode(text, true)
            .map_err(|e| CoreError::Invalid(format!("tokenizing failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids of `text` on its own, without BOS or other added tokens: for continuations.
    pub fn tokenizer_ids_without_specials(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| CoreError::Invalid(format!("tokenizing failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| CoreError::Invalid(format!("detokenizing failed: {e}")))
    }

    /// What must match for two models to be compared token by token (KL, top-1 agreement, a
    /// draft proposing for a target), kept apart from the weights so a run can drop the model.
    pub fn vocabulary(&self) -> Vocabulary {
        Vocabulary {
            output_ids: self.model.config().vocab_size,
            tokenizer: self.tokenizer.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// Rows of the output layer: the ids a model can score.
    pub output_ids: usize,
    pub tokenizer: tokenizers::Tokenizer,
}

impl Vocabulary {
    /// Why `other` is a different vocabulary, or `None` when it is the same: the output layers
    /// cover the same ids and the tokenizers give the same ids for every text.
    pub fn mismatch(&self, other: &Self) -> Option<String> {
        if self.output_ids != other.output_ids {
            return Some(format!(
                "output layers of {} and {} tokens",
                self.output_ids, other.output_ids
            ));
        }
        effbench_tokenizer::vocabulary_difference(&self.tokenizer, &other.tokenizer)
    }
}

/// A checkpoint's tokenizer without loading its weights: what drafts and students are checked
/// against before the expensive load.
pub fn tokenizer_of(path: &Path) -> Result<tokenizers::Tokenizer> {
    Ok(match sniff(path)? {
        ModelFormat::Gguf => effbench_tokenizer::from_gguf_file(path)?,
        ModelFormat::SafetensorsDir => {
            effbench_tokenizer::from_tokenizer_json(&path.join("tokenizer.json"))?
        }
        ModelFormat::SafetensorsFile => effbench_tokenizer::from_tokenizer_json(
            &path
                .parent()
                .unwrap_or(Path::new("."))
                .join("tokenizer.json"),
        )?,
    })
}

/// Loads the checkpoint at `path`: a `.gguf` file, a `.safetensors` file with `config.json` and
/// `tokenizer.json` beside it, or a directory holding those (sharded or not).
pub fn load(path: &Path, policy: &dyn WeightPolicy, device: &Device) -> Result<LoadedModel> {
    let format = sniff(path)?;
    match format {
        ModelFormat::Gguf => {
            let mut source = GgufSource::open(path, device)?;
            let source_format = source.format();
            let model = Model::load(&mut source, policy, device)?;
            let tokenizer = effbench_tokenizer::from_gguf_metadata(source.metadata())?;
            let special = effbench_tokenizer::special_tokens(source.metadata());
            Ok(LoadedModel {
                model,
                tokenizer,
                special,
                path: path.to_path_buf(),
                format,
                source_format,
            })
        }
        ModelFormat::SafetensorsDir | ModelFormat::SafetensorsFile => {
            let dir = if path.is_dir() {
                path.to_path_buf()
            } else {
                path.parent().unwrap_or(Path::new(".")).to_path_buf()
            };
            // The tokenizer is checked first: a missing one should not cost a full weight load.
            let tokenizer = effbench_tokenizer::from_tokenizer_json(&dir.join("tokenizer.json"))?;
            let special = hf_special_tokens(&dir);
            let mut source = SafetensorsSource::open(path, device)?;
            let source_format = source.format();
            let model = Model::load(&mut source, policy, device)?;
            Ok(LoadedModel {
                model,
                tokenizer,
                special,
                path: path.to_path_buf(),
                format,
                source_format,
            })
        }
    }
}

/// BOS/EOS ids of a Hugging Face checkpoint, from `generation_config.json` (what `generate()`
/// stops on) or else `config.json`.
fn hf_special_tokens(dir: &Path) -> SpecialTokens {
    let read = |file: &str| -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        serde_json::from_str(&text).ok()
    };
    let ids = |v: Option<&serde_json::Value>| -> Vec<u32> {
        match v {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|x| x as u32).into_iter().collect()
            }
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_u64())
                .map(|x| x as u32)
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut special = SpecialTokens::default();
    for file in ["generation_config.json", "config.json"] {
        if let Some(json) = read(file) {
            let eos = ids(json.get("eos_token_id"));
            if special.eog.is_empty() && !eos.is_empty() {
                special.eos = eos.first().copied();
                special.eog = eos;
            }
            if special.bos.is_none() {
                special.bos = ids(json.get("bos_token_id")).first().copied();
            }
        }
    }
    special.eog.sort_unstable();
    special.eog.dedup();
    special
}
