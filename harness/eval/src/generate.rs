//! One prompt's generation with its timings and memory: what `effbench generate` and the
//! default job report.

use crate::error::{Context, Result};
use effbench_core::decode::{
    DecodingStrategy, GenerateRequest, Greedy, PlainDecoding, TemperatureTopP,
};
use effbench_core::timing::GenerationMetrics;
use effbench_core::{ContiguousKvCache, KvCache, KvShape, WeightBytes};
use serde::Serialize;

use crate::session::{mib, Session};

/// What to generate: raw text (no chat template) and how to sample it.
#[derive(Clone, Debug)]
pub struct GenerateSettings {
    pub prompt: String,
    pub max_tokens: usize,
    /// 0 is greedy decoding.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
}

/// A finished generation, in the JSON shape `effbench generate --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Generation {
    pub model: String,
    pub variant: String,
    pub threads: usize,
    pub prompt: String,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub stopped_on_eos: bool,
    pub metrics: GenerationMetrics,
    pub weight_bytes: WeightBytes,
    pub kv_bytes_reserved: usize,
    pub kv_bytes_used: usize,
    pub peak_rss_bytes: Option<u64>,
    pub load_seconds: f64,
}

impl Generation {
    /// The timing figures as the command line prints them after the text.
    pub fn timing_markdown(&self) -> String {
        let m = &self.metrics;
        let figure =
            |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.2} {unit}"));
        let wb = &self.weight_bytes;
        let rows = [
            ("variant", self.variant.clone()),
            ("threads", self.threads.to_string()),
            (
                "tokens (prompt / output)",
                format!("{} / {}", self.prompt_tokens, self.output_tokens),
            ),
            ("TTFT", figure(m.ttft_ms, "ms")),
            ("TPOT", figure(m.tpot_ms, "ms")),
            ("prefill", figure(m.prefill_tok_per_s, "tok/s")),
            ("decode", figure(m.decode_tok_per_s, "tok/s")),
            (
                "weights",
                format!(
                    "{} ({:.2} bits/weight in blocks)",
                    mib(wb.total),
                    wb.block_bits_per_weight
                ),
            ),
            (
                "KV cache (used / reserved)",
                format!(
                    "{} / {}",
                    mib(self.kv_bytes_used),
                    mib(self.kv_bytes_reserved)
                ),
            ),
            (
                "peak RSS",
                self.peak_rss_bytes
                    .map_or("not measured".into(), |b| mib(b as usize)),
            ),
        ];
        effbench_report::markdown_table(
            &["metric", "value"],
            rows.into_iter()
                .map(|(k, v)| vec![k.to_string(), v])
                .collect(),
        )
    }
}

/// Generates from `s.prompt`, handing `on_text` each piece of new text as soon as it decodes
/// to whole characters (None: no streaming, and no decoding on the way).
pub fn generate(
    session: &Session,
    s: &GenerateSettings,
    mut on_text: Option<&mut dyn FnMut(&str)>,
) -> Result<Generation> {
    let loaded = &session.loaded;
    let prompt = loaded.encode(&s.prompt)?;
    if prompt.is_empty() {
        return Err(crate::hint::hinted(
            "the prompt is empty after tokenization",
            "pass some text as {prompt}",
        ));
    }
    let mut cache = ContiguousKvCache::new(
        KvShape::of(loaded.model.config()),
        prompt.len() + s.max_tokens,
        loaded.model.device(),
    );
    let request = GenerateRequest {
        seq: 0,
        prompt: prompt.clone(),
        max_new_tokens: s.max_tokens,
        stop_tokens: loaded.stop_tokens(),
        prefill_chunk: 0,
    };
    let mut strategy: Box<dyn DecodingStrategy> = if s.temperature > 0.0 {
        Box::new(PlainDecoding::new(TemperatureTopP::new(
            s.temperature,
            s.top_p,
            s.seed,
        )))
    } else {
        Box::new(PlainDecoding::new(Greedy))
    };
    // Decode the growing sequence and hand on the new suffix: token-by-token decoding would
    // split multi-byte characters.
    let mut emitted: Vec<u32> = Vec::new();
    let mut shown = String::new();
    let out = strategy.generate(&loaded.model, &mut cache, &request, &mut |tok| {
        let Some(on_text) = on_text.as_mut() else {
            return;
        };
        emitted.push(tok);
        if let Ok(text) = loaded.decode(&emitted) {
            if text.len() > shown.len() && !text.ends_with('\u{FFFD}') {
                on_text(&text[shown.len()..]);
                shown = text;
            }
        }
    })?;
    let text = loaded.decode(&out.tokens).context("decoding the output")?;
    let usage = cache.usage();
    Ok(Generation {
        model: loaded.path.display().to_string(),
        variant: loaded.model.label().to_string(),
        threads: session.threads,
        prompt: s.prompt.clone(),
        prompt_tokens: prompt.len(),
        output_tokens: out.tokens.len(),
        metrics: out.trace.metrics(),
        token_ids: out.tokens,
        text,
        stopped_on_eos: out.stopped_on_token,
        weight_bytes: loaded.model.weight_bytes(),
        kv_bytes_reserved: usage.bytes_reserved,
        kv_bytes_used: usage.bytes_used,
        peak_rss_bytes: effbench_hw::peak_rss_bytes(),
        load_seconds: session.load_seconds,
    })
}
