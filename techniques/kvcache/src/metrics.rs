//! Serving figures from a scheduler run: memory waste and fragmentation, concurrency, throughput
//! and latency percentiles.
//!
//! - waste: 1 - bytes holding K/V / bytes reserved, averaged over the run weighted by each step's
//!   duration (the PagedAttention paper's measure: reserved memory not holding token states).
//! - internal fragmentation: of the bytes a sequence held when it finished, the share it never
//!   filled (a contiguous reservation past its final length; a paged sequence's last block).
//! - budget used: bytes holding K/V over the KV memory budget, duration-weighted.

use effbench_core::timing::percentile;
use serde::Serialize;

use crate::scheduler::ServeRun;

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Percentiles {
    pub fn of(samples: &[f64]) -> Option<Self> {
        Some(Self {
            mean: samples.iter().sum::<f64>() / samples.len().max(1) as f64,
            p50: percentile(samples, 50.0)?,
            p95: percentile(samples, 95.0)?,
            p99: percentile(samples, 99.0)?,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub requests: usize,
    pub completed: usize,
    pub refused: usize,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    /// From the first arrival to the last token, on the scheduler's clock.
    pub duration_s: f64,
    pub steps: usize,
    pub output_tok_per_s: f64,
    pub waste_pct: f64,
    pub internal_fragmentation_pct: f64,
    pub budget_used_pct: f64,
    pub peak_running: usize,
    pub mean_running: f64,
    pub peak_bytes_reserved: usize,
    pub peak_bytes_used: usize,
    pub preemptions: usize,
    pub ttft_ms: Option<Percentiles>,
    pub tpot_ms: Option<Percentiles>,
    pub latency_ms: Option<Percentiles>,
}

pub fn summarize(run: &ServeRun, budget_bytes: usize) -> Summary {
    let done: Vec<_> = run
        .outcomes
        .iter()
        .filter(|o| o.refused.is_none())
        .collect();
    let start = done
        .iter()
        .map(|o| o.arrival_s)
        .fold(f64::INFINITY, f64::min);
    let end = run.steps.last().map_or(0.0, |s| s.end_s);
    let duration = if start.is_finite() { end - start } else { 0.0 };
    let output_tokens: usize = done.iter().map(|o| o.tokens.len()).sum();
    let busy: f64 = run.steps.iter().map(|s| s.duration_s).sum();
    let weighted = |f: &dyn Fn(&crate::scheduler::StepSample) -> f64| -> f64 {
        if busy > 0.0 {
            run.steps.iter().map(|s| f(s) * s.duration_s).sum::<f64>() / busy
        } else {
            0.0
        }
    };
    let reserved: usize = run.departures.iter().map(|d| d.bytes_reserved).sum();
    let used: usize = run.departures.iter().map(|d| d.bytes_used).sum();
    let ms = |f: &dyn Fn(&crate::scheduler::Outcome) -> Option<f64>| -> Option<Percentiles> {
        let xs: Vec<f64> = done.iter().filter_map(|o| f(o)).map(|s| s * 1e3).collect();
        Percentiles::of(&xs)
    };
    Summary {
        requests: run.outcomes.len(),
        completed: done.len(),
        refused: run.outcomes.len() - done.len(),
        prompt_tokens: done.iter().map(|o| o.prompt_tokens).sum(),
        output_tokens,
        duration_s: duration,
        steps: run.steps.len(),
        output_tok_per_s: if duration > 0.0 {
            output_tokens as f64 / duration
        } else {
            0.0
        },
        waste_pct: 100.0 * weighted(&|s| s.usage.waste_fraction()),
        internal_fragmentation_pct: if reserved > 0 {
            100.0 * (1.0 - used as f64 / reserved as f64)
        } else {
            0.0
        },
        budget_used_pct: 100.0
            * weighted(&|s| s.usage.bytes_used as f64 / budget_bytes.max(1) as f64),
        peak_running: run.steps.iter().map(|s| s.running).max().unwrap_or(0),
        mean_running: weighted(&|s| s.running as f64),
        peak_bytes_reserved: run
            .steps
            .iter()
            .map(|s| s.usage.bytes_reserved)
            .max()
            .unwrap_or(0),
        peak_bytes_used: run
            .steps
            .iter()
            .map(|s| s.usage.bytes_used)
            .max()
            .unwrap_or(0),
        preemptions: run.preemptions,
        ttft_ms: ms(&|o| o.ttft_s()),
        tpot_ms: ms(&|o| o.tpot_s()),
        latency_ms: ms(&|o| o.latency_s()),
    }
}
