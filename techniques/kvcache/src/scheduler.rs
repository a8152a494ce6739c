//! A continuous-batching scheduler in the style of vLLM's: every step it admits waiting requests
//! while the cache has room, then runs one batched forward pass that decodes one token for every
//! running sequence and prefills the newly admitted ones. When a running sequence cannot grow,
//! the most recently admitted one is preempted: its KV is dropped and it is recomputed (prompt
//! plus the tokens it already produced) when it is admitted again. Any [`KvCache`] plugs in; the
//! cache alone decides what "room" means (whole reservations or blocks).
//!
//! Time is the scheduler's own clock: the measured duration of each step, and, when nothing runs,
//! a jump to the next arrival instead of sleeping until it. Latencies are therefore what a
//! server doing nothing else would show, without idle waiting in the benchmark's wall time.
//!
//! Generation is greedy. By default it ignores end-of-sequence tokens, so each request produces
//! exactly the output length its trace asks for (as serving benchmarks do with `ignore_eos`); a
//! [`Watcher`] can stop a request early instead (at a stop sequence or end of sequence, as a
//! generative task does) and is told as each request finishes, so results can be kept as they
//! are produced.

use std::collections::VecDeque;
use std::time::Instant;

use effbench_core::model::logits_rows;
use effbench_core::{CoreError, KvCache, KvUsage, LogitsFor, Model, SeqChunk};
use serde::Serialize;

use crate::Error;

#[derive(Debug, Clone)]
pub struct Request {
    pub id: u64,
    pub arrival_s: f64,
    pub prompt: Vec<u32>,
    pub max_new_tokens: usize,
    /// A prefix of the prompt whose KV the cache already holds, computed once for many
    /// requests (few-shot exemplars): the request starts as a fork of it and runs only the rest.
    pub forked_from: Option<SharedPrefix>,
}

/// A sequence the caller has put in the cache holding the first `len` tokens of a request's
/// prompt. It stays there, owned by the caller, for as long as requests fork from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedPrefix {
    pub seq: u64,
    pub len: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchedulerConfig {
    /// Most sequences decoded together (vLLM's max_num_seqs).
    pub max_running: usize,
    /// Most tokens in one forward pass; a longer prompt still runs, alone in its step.
    pub max_batched_tokens: usize,
    /// Longest sequence (prompt plus output) accepted.
    pub max_model_len: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_running: 64,
            max_batched_tokens: 2048,
            max_model_len: 2048,
        }
    }
}

/// What became of one request.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub id: u64,
    pub arrival_s: f64,
    pub prompt_tokens: usize,
    pub tokens: Vec<u32>,
    /// The log-probability of each output token under the distribution it was chosen from,
    /// when the watcher asked for them ([`Watcher::token_logprobs`]); empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub token_logprobs: Vec<f64>,
    /// When each output token was ready, on the scheduler's clock.
    pub token_times_s: Vec<f64>,
    pub preemptions: usize,
    /// Why the request was refused, if it was.
    pub refused: Option<String>,
}

impl Outcome {
    pub fn ttft_s(&self) -> Option<f64> {
        self.token_times_s.first().map(|t| t - self.arrival_s)
    }

    /// vLLM's TPOT: (latency - TTFT) / (output tokens - 1).
    pub fn tpot_s(&self) -> Option<f64> {
        let n = self.token_times_s.len();
        (n > 1).then(|| (self.token_times_s[n - 1] - self.token_times_s[0]) / (n - 1) as f64)
    }

    pub fn latency_s(&self) -> Option<f64> {
        self.token_times_s.last().map(|t| t - self.arrival_s)
    }
}

/// The cache's state after one step's forward pass, before finished sequences leave.
#[derive(Debug, Clone, Serialize)]
pub struct StepSample {
    pub end_s: f64,
    pub duration_s: f64,
    pub running: usize,
    pub batched_tokens: usize,
    pub usage: KvUsage,
}

/// A finished sequence's footprint just before it left the cache: bytes it held and bytes that
/// held its K/V. The gap is memory reserved for it that it never filled.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Departure {
    pub bytes_reserved: usize,
    pub bytes_used: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServeRun {
    pub outcomes: Vec<Outcome>,
    pub steps: Vec<StepSample>,
    pub departures: Vec<Departure>,
    pub preemptions: usize,
}

/// What a caller decides, and learns, while requests are served.
pub trait Watcher {
    /// Whether request `id` is done after producing `tokens`, its whole output so far. The
    /// default never stops a request before its token limit.
    fn stop(&mut self, _id: u64, _tokens: &[u32]) -> bool {
        false
    }

    /// Whether each output token's log-probability is kept in its [`Outcome`]. Off by default:
    /// a softmax over the vocabulary per token would add to the step times serving benchmarks
    /// report.
    fn token_logprobs(&self) -> bool {
        false
    }

    /// Called once for each request as it finishes (stopped, or at its token limit); an error
    /// ends the run.
    fn finished(&mut self, _outcome: &Outcome) -> Result<(), WatcherError> {
        Ok(())
    }
}

/// Whatever a [`Watcher`] could not do with a finished request.
pub type WatcherError = Box<dyn std::error::Error + Send + Sync>;

/// Serving benchmarks' watcher: every request runs to its token limit.
struct IgnoreEos;

impl Watcher for IgnoreEos {}

struct Running {
    req: usize,
    /// Tokens to feed next step: the whole prompt (plus any recomputed output) on admission,
    /// then the last sampled token.
    feed: Vec<u32>,
}

/// Serves `requests` (in arrival order) with `model` and `cache` until all are done or refused,
/// each to its token limit.
pub fn serve(
    model: &Model,
    cache: &mut dyn KvCache,
    requests: Vec<Request>,
    config: &SchedulerConfig,
) -> Result<ServeRun, Error> {
    serve_watched(model, cache, requests, config, &mut IgnoreEos)
}

/// [`serve`], with `watcher` deciding when each request stops and told when it finishes.
pub fn serve_watched(
    model: &Model,
    cache: &mut dyn KvCache,
    requests: Vec<Request>,
    config: &SchedulerConfig,
    watcher: &mut dyn Watcher,
) -> Result<ServeRun, Error> {
    let per_seq_limit = cache.max_tokens_per_seq();
    let context = model.config().max_position_embeddings;
    let mut outcomes: Vec<Outcome> = requests
        .iter()
        .map(|r| Outcome {
            id: r.id,
            arrival_s: r.arrival_s,
            prompt_tokens: r.prompt.len(),
            tokens: Vec::new(),
            token_logprobs: Vec::new(),
            token_times_s: Vec::new(),
            preemptions: 0,
            refused: refusal(r, config.max_model_len.min(context), per_seq_limit),
        })
        .collect();
    let mut pending: VecDeque<usize> = (0..requests.len())
        .filter(|&i| outcomes[i].refused.is_none())
        .collect();
    let mut waiting: VecDeque<usize> = VecDeque::new();
    let mut running: Vec<Running> = Vec::new();
    let mut steps = Vec::new();
    let mut departures = Vec::new();
    let mut preemptions = 0;
    let mut now = 0.0f64;
    let keep_logprobs = watcher.token_logprobs();

    loop {
        while let Some(&i) = pending.front() {
            if requests[i].arrival_s > now {
                break;
            }
            waiting.push_back(i);
            pending.pop_front();
        }
        if running.is_empty() && waiting.is_empty() {
            match pending.front() {
                Some(&i) => {
                    now = requests[i].arrival_s;
                    continue;
                }
                None => break,
            }
        }
        let step_start = Instant::now();

        // Room for one more token in every decoding sequence, preempting from the back.
        let mut preempted_this_step = false;
        let mut i = 0;
        while i < running.len() {
            if running[i].feed.len() != 1 {
                i += 1;
                continue;
            }
            let id = requests[running[i].req].id;
            match cache.reserve(id, 1) {
                Ok(()) => i += 1,
                Err(CoreError::KvBudgetExhausted { .. }) => {
                    let victim = running.pop().expect("running is not empty");
                    cache.remove(requests[victim.req].id);
                    outcomes[victim.req].preemptions += 1;
                    preemptions += 1;
                    preempted_this_step = true;
                    waiting.push_front(victim.req);
                }
                Err(e) => return Err(e.into()),
            }
        }

        // Admit waiting requests in arrival order while the cache and the step have room.
        let mut batched: usize = running.iter().map(|r| r.feed.len()).sum();
        while !preempted_this_step && running.len() < config.max_running {
            let Some(&next) = waiting.front() else { break };
            let request = &requests[next];
            let skip = request.forked_from.map_or(0, |p| p.len);
            let mut feed = request.prompt[skip..].to_vec();
            feed.extend(&outcomes[next].tokens);
            if batched > 0 && batched + feed.len() > config.max_batched_tokens {
                break;
            }
            if let Some(prefix) = request.forked_from {
                cache.fork(prefix.seq, request.id)?;
            }
            match cache.reserve(request.id, feed.len()) {
                Ok(()) => {}
                Err(CoreError::KvBudgetExhausted { .. }) if !running.is_empty() => {
                    cache.remove(request.id);
                    break;
                }
                Err(e) => return Err(e.into()),
            }
            waiting.pop_front();
            batched += feed.len();
            running.push(Running { req: next, feed });
        }

        let batch: Vec<SeqChunk> = running
            .iter()
            .map(|r| SeqChunk::new(requests[r.req].id, r.feed.clone(), LogitsFor::Last))
            .collect();
        let out = model.forward(&batch, cache)?;
        let usage = cache.usage();
        let end = now + step_start.elapsed().as_secs_f64();
        let mut still = Vec::with_capacity(running.len());
        for (r, logits) in running.into_iter().zip(out.per_chunk) {
            let row = logits_rows(&logits.expect("asked for the last logits"))?;
            let token = effbench_core::model::argmax(&row[0]) as u32;
            let o = &mut outcomes[r.req];
            o.tokens.push(token);
            if keep_logprobs {
                o.token_logprobs
                    .push(effbench_core::model::log_softmax(&row[0])[token as usize]);
            }
            o.token_times_s.push(end);
            let id = requests[r.req].id;
            if o.tokens.len() >= requests[r.req].max_new_tokens || watcher.stop(id, &o.tokens) {
                let before = cache.usage();
                cache.remove(id);
                let after = cache.usage();
                departures.push(Departure {
                    bytes_reserved: before.bytes_reserved - after.bytes_reserved,
                    bytes_used: before.bytes_used - after.bytes_used,
                });
                watcher.finished(o).map_err(Error::Watcher)?;
            } else {
                still.push(Running {
                    req: r.req,
                    feed: vec![token],
                });
            }
        }
        running = still;
        // Token times are stamped at the end of the forward pass; bookkeeping after it is part
        // of the next step.
        let duration = step_start.elapsed().as_secs_f64();
        steps.push(StepSample {
            end_s: now + duration,
            duration_s: duration,
            running: batch.len(),
            batched_tokens: batch.iter().map(|c| c.tokens.len()).sum(),
            usage,
        });
        now += duration;
    }
    Ok(ServeRun {
        outcomes,
        steps,
        departures,
        preemptions,
    })
}

/// Why a request can never run here, in words for the report; None if it can.
fn refusal(r: &Request, max_len: usize, per_seq_limit: Option<usize>) -> Option<String> {
    let len = r.prompt.len() + r.max_new_tokens;
    if r.prompt.is_empty() {
        return Some("empty prompt".into());
    }
    if r.max_new_tokens == 0 {
        return Some("asks for no output tokens".into());
    }
    if r.forked_from.is_some_and(|p| p.len >= r.prompt.len()) {
        return Some("its shared prefix leaves no prompt token to run".into());
    }
    if len > max_len {
        return Some(format!(
            "prompt {} + output {} = {len} tokens is longer than the model context of {max_len} (hint: shorten it or raise the longest sequence served)",
            r.prompt.len(),
            r.max_new_tokens
        ));
    }
    if let Some(limit) = per_seq_limit {
        if len > limit {
            return Some(format!(
                "{len} tokens need more KV memory than the whole budget holds ({limit} tokens) (hint: a larger KV budget)"
            ));
        }
    }
    None
}
