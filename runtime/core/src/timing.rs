//! Token-granularity timing: every figure (TTFT, TPOT, inter-token latency, throughput) is
//! derived from timestamps taken as tokens come out, with the definitions the peers use.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Timestamps of one generation: when it started, and when each output token was ready.
#[derive(Debug, Clone)]
pub struct GenerationTrace {
    pub prompt_tokens: usize,
    pub started: Instant,
    pub token_times: Vec<Instant>,
}

impl GenerationTrace {
    pub fn start(prompt_tokens: usize) -> Self {
        Self {
            prompt_tokens,
            started: Instant::now(),
            token_times: Vec::new(),
        }
    }

    pub fn record_token(&mut self) {
        self.token_times.push(Instant::now());
    }

    pub fn metrics(&self) -> GenerationMetrics {
        let n = self.token_times.len();
        let ttft = self.token_times.first().map(|t| *t - self.started);
        let total = self.token_times.last().map(|t| *t - self.started);
        let itl: Vec<Duration> = self.token_times.windows(2).map(|w| w[1] - w[0]).collect();
        // vLLM's definition: TPOT = (latency - TTFT) / (output tokens - 1).
        let tpot = match (ttft, total) {
            (Some(f), Some(t)) if n > 1 => Some((t - f) / (n as u32 - 1)),
            _ => None,
        };
        GenerationMetrics {
            prompt_tokens: self.prompt_tokens,
            output_tokens: n,
            ttft_ms: ttft.map(ms),
            tpot_ms: tpot.map(ms),
            itl_ms: itl.into_iter().map(ms).collect(),
            // The first token's time is the prompt's forward pass: prefill throughput.
            prefill_tok_per_s: ttft.map(|t| self.prompt_tokens as f64 / t.as_secs_f64()),
            decode_tok_per_s: tpot.map(|t| 1.0 / t.as_secs_f64()),
            total_ms: total.map(ms),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerationMetrics {
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    #[serde(skip)]
    pub itl_ms: Vec<f64>,
    pub prefill_tok_per_s: Option<f64>,
    pub decode_tok_per_s: Option<f64>,
    pub total_ms: Option<f64>,
}

/// Median and tail percentiles, by nearest rank on sorted samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpot_follows_vllm_definition() {
        let start = Instant::now();
        let trace = GenerationTrace {
            prompt_tokens: 10,
            started: start,
            token_times: vec![
                start + Duration::from_millis(100),
                start + Duration::from_millis(120),
                start + Duration::from_millis(140),
                start + Duration::from_millis(160),
            ],
        };
        let m = trace.metrics();
        assert!((m.ttft_ms.unwrap() - 100.0).abs() < 1e-6);
        assert!((m.tpot_ms.unwrap() - 20.0).abs() < 1e-6);
        assert!((m.prefill_tok_per_s.unwrap() - 100.0).abs() < 1e-6);
        assert!((m.decode_tok_per_s.unwrap() - 50.0).abs() < 1e-6);
        assert_eq!(m.itl_ms.len(), 3);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let s: Vec<f64> = (1..=100).map(|x| x as f64).collect();
        assert_eq!(percentile(&s, 50.0), Some(50.0));
        assert_eq!(percentile(&s, 99.0), Some(99.0));
        assert_eq!(percentile(&s, 100.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
