//! Request traces: when each request arrives, how long its prompt is and how many tokens it asks
//! for. Generated from a seed, or read from JSONL so real traces can be replayed.
//!
//! The generated workload is chat-like: arrivals are a Poisson process, and prompt and output
//! lengths are log-normal (many short requests, a long tail), clipped to a range. The defaults
//! are a scaled-down ShareGPT shape (the PagedAttention paper's workload has mean input 161 and
//! output 338 tokens): median prompt 64 tokens (mean about 105), median output 48 (mean about
//! 66), so a CPU run finishes in minutes.

use std::io::{BufRead, Write};
use std::path::Path;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Exp, LogNormal};
use serde::{Deserialize, Serialize};

use crate::Error;

/// One request of a trace. A real trace may give the prompt text; a generated one gives only its
/// length, and the runner fills it with real text of that many tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEntry {
    /// Seconds after the start of the trace.
    pub arrival_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    pub output_tokens: usize,
}

/// A log-normal length, clipped to `[min, max]`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LengthDist {
    pub median: f64,
    /// Standard deviation of the log of the length.
    pub sigma: f64,
    pub min: usize,
    pub max: usize,
}

impl LengthDist {
    fn sample(&self, rng: &mut StdRng) -> Result<usize, Error> {
        let d = LogNormal::new(self.median.max(1e-9).ln(), self.sigma)
            .map_err(|e| Error::Config(format!("length distribution: {e}")))?;
        Ok((d.sample(rng).round() as usize).clamp(self.min, self.max))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TraceSpec {
    pub requests: usize,
    /// Mean arrivals per second; infinite means everything arrives at once.
    pub rate: f64,
    pub seed: u64,
    pub prompt: LengthDist,
    pub output: LengthDist,
}

impl TraceSpec {
    /// The trace's recipe in words, for reports.
    pub fn describe(&self) -> String {
        format!(
            "{} requests, Poisson rate {}/s, seed {}, prompt log-normal(median {}, sigma {}) in [{}, {}], output log-normal(median {}, sigma {}) in [{}, {}]",
            self.requests, self.rate, self.seed, self.prompt.median, self.prompt.sigma,
            self.prompt.min, self.prompt.max, self.output.median, self.output.sigma,
            self.output.min, self.output.max
        )
    }

    pub fn chat_like(requests: usize, rate: f64, seed: u64) -> Self {
        Self {
            requests,
            rate,
            seed,
            prompt: LengthDist {
                median: 64.0,
                sigma: 1.0,
                min: 4,
                max: 1024,
            },
            output: LengthDist {
                median: 48.0,
                sigma: 0.8,
                min: 1,
                max: 512,
            },
        }
    }

    pub fn generate(&self) -> Result<Vec<TraceEntry>, Error> {
        if self.rate.is_nan() || self.rate <= 0.0 {
            return Err(Error::Config(format!(
                "request rate must be positive, got {} (hint: a rate of inf sends every request at once)",
                self.rate
            )));
        }
        let mut rng = StdRng::seed_from_u64(self.seed);
        let gaps = if self.rate.is_finite() {
            Some(Exp::new(self.rate).map_err(|e| Error::Config(format!("rate: {e}")))?)
        } else {
            None
        };
        let mut t = 0.0;
        let mut out = Vec::with_capacity(self.requests);
        for _ in 0..self.requests {
            if let Some(g) = &gaps {
                t += g.sample(&mut rng);
            }
            out.push(TraceEntry {
                // Microseconds are plenty, and keep the JSONL short.
                arrival_s: (t * 1e6).round() / 1e6,
                prompt_tokens: Some(self.prompt.sample(&mut rng)?),
                prompt: None,
                output_tokens: self.output.sample(&mut rng)?,
            });
        }
        Ok(out)
    }
}

const LINE_HINT: &str = r#"each line is a JSON object like {"arrival_s": 0.5, "prompt_tokens": 120, "output_tokens": 64}, or with "prompt": "text" instead of prompt_tokens"#;

pub fn read_jsonl(path: &Path) -> Result<Vec<TraceEntry>, Error> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_jsonl_from(std::io::BufReader::new(file), path)
}

/// A trace from any reader; `path` names it in messages. For traces that are not files, and for
/// fuzzing.
pub fn read_jsonl_from(reader: impl BufRead, path: &Path) -> Result<Vec<TraceEntry>, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |detail: String| Error::Trace {
            path: path.to_path_buf(),
            line: i + 1,
            detail,
            hint: LINE_HINT,
        };
        let e: TraceEntry = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        if e.prompt.is_none() && e.prompt_tokens.is_none() {
            return Err(bad("neither `prompt` nor `prompt_tokens` is given".into()));
        }
        if !e.arrival_s.is_finite() || e.arrival_s < 0.0 {
            return Err(bad(format!("arrival_s {} is not a time", e.arrival_s)));
        }
        out.push(e);
    }
    if out.is_empty() {
        return Err(Error::Trace {
            path: path.to_path_buf(),
            line: 0,
            detail: "no requests".into(),
            hint: LINE_HINT,
        });
    }
    // Served in arrival order whatever the file's order.
    out.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    Ok(out)
}

pub fn write_jsonl(path: &Path, entries: &[TraceEntry]) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for e in entries {
        let line = serde_json::to_string(e).expect("a trace entry serialises");
        writeln!(f, "{line}").map_err(io)?;
    }
    f.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_traces_are_seeded_and_skewed() {
        let spec = TraceSpec::chat_like(2000, 4.0, 7);
        let a = spec.generate().unwrap();
        assert_eq!(a, spec.generate().unwrap());
        assert_ne!(a, TraceSpec::chat_like(2000, 4.0, 8).generate().unwrap());
        let mut prompts: Vec<usize> = a.iter().map(|e| e.prompt_tokens.unwrap()).collect();
        prompts.sort();
        let median = prompts[prompts.len() / 2] as f64;
        let mean = prompts.iter().sum::<usize>() as f64 / prompts.len() as f64;
        // Log-normal: median near 64, mean well above it (the long tail).
        assert!((median - 64.0).abs() < 8.0, "{median}");
        assert!(mean > median * 1.3, "{mean} vs {median}");
        assert!(prompts[0] >= 4 && *prompts.last().unwrap() <= 1024);
        // Poisson arrivals at 4/s: 2000 requests take about 500 s.
        let last = a.last().unwrap().arrival_s;
        assert!((last - 500.0).abs() < 50.0, "{last}");
        assert!(a.windows(2).all(|w| w[0].arrival_s <= w[1].arrival_s));
    }

    #[test]
    fn infinite_rate_sends_everything_at_once_and_bad_rates_are_refused() {
        let a = TraceSpec::chat_like(5, f64::INFINITY, 1)
            .generate()
            .unwrap();
        assert!(a.iter().all(|e| e.arrival_s == 0.0));
        let err = TraceSpec::chat_like(5, 0.0, 1).generate().unwrap_err();
        assert!(err.to_string().contains("rate of inf"), "{err}");
    }

    #[test]
    fn jsonl_round_trips_and_bad_lines_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        let entries = TraceSpec::chat_like(10, 2.0, 3).generate().unwrap();
        write_jsonl(&p, &entries).unwrap();
        let back = read_jsonl(&p).unwrap();
        assert_eq!(back.len(), entries.len());
        for (a, b) in back.iter().zip(&entries) {
            assert!((a.arrival_s - b.arrival_s).abs() < 1e-9);
            assert_eq!(
                (a.prompt_tokens, a.output_tokens),
                (b.prompt_tokens, b.output_tokens)
            );
        }
        std::fs::write(
            &p,
            "{\"arrival_s\": 1.0, \"prompt\": \"hi\", \"output_tokens\": 3}\n\n{\"arrival_s\": 0.0, \"output_tokens\": 3}\n",
        )
        .unwrap();
        let err = read_jsonl(&p).unwrap_err().to_string();
        assert!(
            err.contains(":3:") && err.contains("prompt_tokens"),
            "{err}"
        );
        std::fs::write(&p, "not json\n").unwrap();
        assert!(read_jsonl(&p).unwrap_err().to_string().contains(":1:"));
    }
}
