//! Perplexity by llama.cpp's method: the text is cut into windows of `ctx` tokens, each window
//! is evaluated from an empty cache, and only positions from `first_scored` on are scored, so
//! every scored token has context behind it.

use candle_core::DType;
use serde::Serialize;

use effbench_core::error::{CoreError, Result};
use effbench_core::kv::{ContiguousBuilder, KvCacheBuilder, KvShape};
use effbench_core::model::{log_softmax, logits_rows, LogitsFor, Model, SeqChunk};

#[derive(Debug, Clone)]
pub struct PerplexityOptions {
    pub ctx: usize,
    /// Windows to evaluate; None takes every whole window of the text.
    pub max_chunks: Option<usize>,
    /// Index within a window of the first position whose prediction counts. llama.cpp's
    /// perplexity tool uses ctx/2; 0 scores every token after the window's first.
    pub first_scored: usize,
    /// Tokens per forward pass inside a window; windows are long and this bounds memory.
    pub batch: usize,
    /// K/V storage type. llama.cpp defaults to f16; f32 is exact and the default here.
    pub kv_dtype: DType,
    /// The token that replaces each window's first, as llama.cpp's tool does for a model that
    /// starts its inputs with BOS (Gemma's predictions fall apart without one).
    pub bos: Option<u32>,
}

impl PerplexityOptions {
    pub fn llama_cpp(ctx: usize) -> Self {
        Self {
            ctx,
            max_chunks: None,
            first_scored: ctx / 2,
            batch: ctx,
            kv_dtype: DType::F32,
            bos: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PerplexityResult {
    pub perplexity: f64,
    /// Standard error of the perplexity by the delta method on the mean NLL, as llama.cpp prints.
    pub perplexity_stderr: f64,
    pub mean_nll: f64,
    pub scored_tokens: usize,
    pub chunks: usize,
    pub ctx: usize,
    /// Per-chunk running perplexity, as llama.cpp prints while it goes.
    pub running: Vec<f64>,
}

/// Calls `on_chunk(done, total, running_ppl)` after every window, for progress output, and
/// `on_scored(position, log_probs)` with the log-softmax row of every scored position, so
/// callers comparing distributions need not compute it again.
pub fn perplexity(
    model: &Model,
    tokens: &[u32],
    opts: &PerplexityOptions,
    on_chunk: impl FnMut(usize, usize, f64),
    on_scored: impl FnMut(usize, &[f64]),
) -> Result<PerplexityResult> {
    let contiguous = ContiguousBuilder {
        dtype: opts.kv_dtype,
    };
    perplexity_in(model, tokens, opts, &contiguous, on_chunk, on_scored)
}

/// [`perplexity`] with the windows run in a cache `kv` builds (a run scores each row in its own
/// KV cache, so a cache that changes what attention reads shows in its quality); the cache's
/// own storage type stands in for `opts.kv_dtype`.
pub fn perplexity_in(
    model: &Model,
    tokens: &[u32],
    opts: &PerplexityOptions,
    kv: &dyn KvCacheBuilder,
    mut on_chunk: impl FnMut(usize, usize, f64),
    mut on_scored: impl FnMut(usize, &[f64]),
) -> Result<PerplexityResult> {
    if opts.ctx < 2 || opts.first_scored + 1 >= opts.ctx {
        return Err(CoreError::Invalid(format!(
            "ctx {} must exceed first scored position {} + 1",
            opts.ctx, opts.first_scored
        )));
    }
    let available = tokens.len() / opts.ctx;
    if available == 0 {
        return Err(CoreError::Invalid(format!(
            "the text has {} tokens, fewer than one window of {} (hint: a shorter window)",
            tokens.len(),
            opts.ctx
        )));
    }
    let chunks = opts.max_chunks.map_or(available, |m| m.min(available));
    let mut nlls: Vec<f64> = Vec::new();
    let mut running = Vec::with_capacity(chunks);
    let mut cache = kv.build(KvShape::of(model.config()), opts.ctx, 1, model.device())?;
    for c in 0..chunks {
        let mut window = tokens[c * opts.ctx..(c + 1) * opts.ctx].to_vec();
        if let Some(bos) = opts.bos {
            window[0] = bos;
        }
        // Each window starts from an empty cache.
        cache.remove(0);
        let batch = opts.batch.max(1);
        let mut pos = 0;
        while pos < opts.ctx {
            let end = (pos + batch).min(opts.ctx);
            // Logits are only needed where a scored prediction is made.
            let want = if end > opts.first_scored {
                LogitsFor::All
            } else {
                LogitsFor::None
            };
            let out = model.forward(
                &[SeqChunk::new(0, window[pos..end].to_vec(), want)],
                cache.as_mut(),
            )?;
            if let Some(logits) = out.per_chunk.into_iter().next().flatten() {
                let rows = logits_rows(&logits)?;
                for (i, row) in rows.iter().enumerate() {
                    let p = pos + i;
                    if p < opts.first_scored || p + 1 >= opts.ctx {
                        continue;
                    }
                    let lp = log_softmax(row);
                    nlls.push(-lp[window[p + 1] as usize]);
                    on_scored(c * opts.ctx + p, &lp);
                }
            }
            pos = end;
        }
        let mean = nlls.iter().sum::<f64>() / nlls.len() as f64;
        running.push(mean.exp());
        on_chunk(c + 1, chunks, mean.exp());
    }
    let n = nlls.len() as f64;
    let mean = nlls.iter().sum::<f64>() / n;
    let var = nlls.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let ppl = mean.exp();
    Ok(PerplexityResult {
        perplexity: ppl,
        perplexity_stderr: ppl * (var / n).sqrt(),
        mean_nll: mean,
        scored_tokens: nlls.len(),
        chunks,
        ctx: opts.ctx,
        running,
    })
}

/// How `effbench perplexity` scores a text: llama.cpp's method with these changes.
#[derive(Debug, Clone)]
pub struct TextSettings {
    pub ctx: usize,
    /// Windows from the start of the text; None: every whole window.
    pub chunks: Option<usize>,
    /// None: ctx/2, as llama.cpp.
    pub first_scored: Option<usize>,
    pub kv_dtype: effbench_kvcache::KvDtype,
}

/// One text's perplexity, in the JSON shape `effbench perplexity --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct TextPerplexity {
    pub model: String,
    pub variant: String,
    pub file: String,
    pub threads: usize,
    pub result: PerplexityResult,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

impl std::fmt::Display for TextPerplexity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.result;
        write!(
            f,
            "perplexity: {:.4} ± {:.4} ({} windows of {} tokens, {} scored, {}, {:.1}s)",
            r.perplexity,
            r.perplexity_stderr,
            r.chunks,
            r.ctx,
            r.scored_tokens,
            self.variant,
            self.seconds
        )
    }
}

/// The perplexity of the text file at `path` under the session's model, read with LF line
/// endings and tokenized only as far as the windows asked for; `on_window` as [`perplexity`]'s
/// `on_chunk`.
pub fn text_perplexity(
    session: &crate::session::Session,
    path: &std::path::Path,
    s: &TextSettings,
    on_window: impl FnMut(usize, usize, f64),
) -> crate::error::Result<TextPerplexity> {
    let text = effbench_datasets::read_corpus(path)?;
    let loaded = &session.loaded;
    let tokens = crate::session::encode_leading(loaded, &text, s.chunks.map(|c| c * s.ctx))?;
    let mut opts = PerplexityOptions::llama_cpp(s.ctx);
    opts.max_chunks = s.chunks;
    opts.kv_dtype = s.kv_dtype.dtype();
    opts.bos = loaded.window_bos();
    if let Some(f) = s.first_scored {
        opts.first_scored = f;
    }
    let start = std::time::Instant::now();
    let result = perplexity(&loaded.model, &tokens, &opts, on_window, |_, _| {})?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(TextPerplexity {
        model: loaded.path.display().to_string(),
        variant: loaded.model.label().to_string(),
        file: path.display().to_string(),
        threads: session.threads,
        tokens_per_second: (result.chunks * s.ctx) as f64 / seconds,
        result,
        seconds,
    })
}
