//! The perplexity suite: WikiText-2 in windows of `ctx` tokens (llama.cpp's method), and for
//! every technique after the baseline, its divergence from the baseline on the same tokens:
//! mean KL and its tail, and how often the two agree on the most likely next token.
//!
//! The baseline's full log-probability rows are stored once per run (f16, as llama.cpp's
//! `--kl-divergence-base` file does) so later techniques, and resumed runs, compare against
//! them without recomputing the baseline.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use crate::error::{bail, Context, Result};
use crate::perplexity::{perplexity_in, PerplexityOptions};
use effbench_core::LoadedModel;
use effbench_stats::{
    log_softmax, KlSummary, Perplexity, PerplexityComparison, TokenDivergence, TopAgreement,
};
use half::f16;
use serde::{Deserialize, Serialize};

use super::store::RunDir;

pub use effbench_report::records::WindowRecord;

pub struct PplPlan {
    pub tokens: Vec<u32>,
    pub ctx: usize,
    pub windows: usize,
    pub first_scored: usize,
    /// Only this shard's windows are scored.
    pub shard: Option<super::shard::Shard>,
}

impl PplPlan {
    fn owns(&self, window: usize) -> bool {
        self.shard.is_none_or(|s| s.owns_window(window))
    }

    pub fn owned_windows(&self) -> usize {
        (0..self.windows).filter(|&w| self.owns(w)).count()
    }

    fn scored_per_window(&self) -> usize {
        self.ctx - 1 - self.first_scored
    }
}

/// Where the baseline's log-probabilities of window `w`, position `i` live.
struct BaselineRows {
    path: PathBuf,
    vocab: usize,
    per_window: usize,
}

impl BaselineRows {
    fn offset(&self, window: usize, i: usize) -> u64 {
        ((window * self.per_window + i) * self.vocab * 2) as u64
    }

    fn write_window(&self, window: usize, rows: &[Vec<f64>]) -> Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        f.seek(SeekFrom::Start(self.offset(window, 0)))?;
        let mut buf = Vec::with_capacity(rows.len() * self.vocab * 2);
        for row in rows {
            for &lp in row {
                buf.extend_from_slice(&f16::from_f64(lp).to_le_bytes());
            }
        }
        // The record that says this window is done is written after this returns, so a window
        // cut short by a full disk or a kill is written again, whole, on resume.
        super::store::with_path(f.write_all(&buf).and_then(|_| f.sync_data()), || {
            format!("writing {}", self.path.display())
        })
    }

    fn read_window(&self, window: usize) -> Result<Vec<Vec<f64>>> {
        let mut f = std::fs::File::open(&self.path).with_context(|| {
            format!(
                "{} is missing (hint: the baseline's log-probabilities are needed; delete the run and start again)",
                self.path.display()
            )
        })?;
        f.seek(SeekFrom::Start(self.offset(window, 0)))?;
        let mut buf = vec![0u8; self.per_window * self.vocab * 2];
        f.read_exact(&mut buf)
            .with_context(|| format!("{} is truncated", self.path.display()))?;
        Ok(buf
            .chunks_exact(self.vocab * 2)
            .map(|row| {
                let lp: Vec<f64> = row
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f64())
                    .collect();
                // f16 rounding leaves the probabilities summing to 1 only approximately;
                // renormalising keeps KL of a model against itself at ~0 rather than ~1e-4.
                log_softmax(&lp)
            })
            .collect())
    }
}

/// Scores the windows not yet recorded for the row `stack` (by its name, in its KV cache),
/// appending a record per window.
pub fn score_technique(
    loaded: &LoadedModel,
    stack: &crate::Stack,
    plan: &PplPlan,
    run_dir: &RunDir,
    is_baseline: bool,
    done: &mut BTreeMap<String, WindowRecord>,
    mut on_window: impl FnMut(&WindowRecord),
) -> Result<()> {
    let technique = stack.name.as_str();
    let kv = stack.kv_or_contiguous();
    let vocab = loaded.model.config().vocab_size;
    let rows_file = BaselineRows {
        path: run_dir.path.join("baseline-logprobs.f16"),
        vocab,
        per_window: plan.scored_per_window(),
    };
    let mut writer = run_dir.appender(technique)?;
    for w in 0..plan.windows {
        let key = format!("{w:06}");
        if !plan.owns(w) || done.contains_key(&key) {
            continue;
        }
        let window = &plan.tokens[w * plan.ctx..(w + 1) * plan.ctx];
        let opts = PerplexityOptions {
            max_chunks: Some(1),
            first_scored: plan.first_scored,
            bos: loaded.window_bos(),
            ..PerplexityOptions::llama_cpp(plan.ctx)
        };
        let mut rows: Vec<Vec<f64>> = Vec::with_capacity(plan.scored_per_window());
        let mut nll = Vec::with_capacity(plan.scored_per_window());
        perplexity_in(
            &loaded.model,
            window,
            &opts,
            kv,
            |_, _, _| {},
            |pos, lp| {
                nll.push(-lp[window[pos + 1] as usize]);
                rows.push(lp.to_vec());
            },
        )?;
        let record = if is_baseline {
            rows_file.write_window(w, &rows)?;
            WindowRecord {
                window: w,
                nll,
                kl: None,
                same_top: None,
            }
        } else {
            let base = rows_file.read_window(w)?;
            if base.first().map(Vec::len) != Some(vocab) {
                bail!("baseline and technique disagree on the vocabulary size");
            }
            let mut div = TokenDivergence::new();
            for (b, o) in base.iter().zip(&rows) {
                div.push_logprobs(b, o);
            }
            let kl = div.values().to_vec();
            let same_top = base
                .iter()
                .zip(&rows)
                .map(|(b, o)| effbench_core::model::argmax(b) == effbench_core::model::argmax(o))
                .collect();
            WindowRecord {
                window: w,
                nll,
                kl: Some(kl),
                same_top: Some(same_top),
            }
        };
        writer.append(&record)?;
        on_window(&record);
        done.insert(key, record);
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PplTechniqueSummary {
    pub technique: String,
    pub label: String,
    pub perplexity: Perplexity,
    pub vs_baseline: Option<PplComparison>,
    pub seconds: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PplComparison {
    pub perplexity: PerplexityComparison,
    pub kl: KlSummary,
    pub same_top: TopAgreement,
}

pub fn summarize(
    techniques: &[String],
    records: &BTreeMap<String, BTreeMap<String, WindowRecord>>,
    labels: &BTreeMap<String, String>,
    seconds: &BTreeMap<String, f64>,
) -> Result<Vec<PplTechniqueSummary>> {
    let flat = |t: &str| -> Vec<f64> { records[t].values().flat_map(|r| r.nll.clone()).collect() };
    let base_nll = flat(&techniques[0]);
    let mut out = Vec::new();
    for (i, t) in techniques.iter().enumerate() {
        let nll = flat(t);
        let vs_baseline = if i == 0 {
            None
        } else {
            let kl: Vec<f64> = records[t]
                .values()
                .flat_map(|r| r.kl.clone().unwrap_or_default())
                .collect();
            let same: Vec<bool> = records[t]
                .values()
                .flat_map(|r| r.same_top.clone().unwrap_or_default())
                .collect();
            Some(PplComparison {
                perplexity: PerplexityComparison::from_nlls(&base_nll, &nll)?,
                kl: KlSummary::from_values(&kl)?,
                same_top: TopAgreement::from_counts(
                    same.iter().filter(|&&s| s).count(),
                    same.len(),
                )?,
            })
        };
        out.push(PplTechniqueSummary {
            technique: t.clone(),
            label: labels.get(t).cloned().unwrap_or_default(),
            perplexity: Perplexity::from_nlls(&nll)?,
            vs_baseline,
            seconds: seconds.get(t).copied(),
        });
    }
    Ok(out)
}

pub fn markdown(title: &str, rows: &[PplTechniqueSummary]) -> String {
    let mut md = format!("## {title}\n\n");
    md.push_str("| Technique | Weights | Perplexity | PPL ratio vs baseline | Mean KLD | KLD p99 | Same top-1 % | Time |\n");
    md.push_str("|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let (ratio, kld, p99, same) = match &r.vs_baseline {
            None => ("baseline".into(), "-".into(), "-".into(), "-".into()),
            Some(c) => (
                format!(
                    "{:.4} ± {:.4}",
                    c.perplexity.ratio, c.perplexity.ratio_stderr
                ),
                format!("{:.5} ± {:.5}", c.kl.mean, c.kl.mean_stderr),
                format!("{:.4}", c.kl.p99),
                format!(
                    "{:.2} ± {:.2}",
                    100.0 * c.same_top.rate,
                    100.0 * c.same_top.stderr
                ),
            ),
        };
        md.push_str(&format!(
            "| {} | {} | {:.4} ± {:.4} | {} | {} | {} | {} | {} |\n",
            r.technique,
            r.label,
            r.perplexity.ppl,
            r.perplexity.ppl_stderr,
            ratio,
            kld,
            p99,
            same,
            r.seconds
                .map_or_else(|| "(recorded)".to_string(), |x| format!("{x:.0} s")),
        ));
    }
    md.push_str("\nPerplexity by llama.cpp's method (windows of ctx tokens, the second half of each scored). KLD: KL(baseline ‖ technique) per token in nats, as llama.cpp's --kl-divergence reports it; same top-1: both models rank the same token first.\n");
    md
}
