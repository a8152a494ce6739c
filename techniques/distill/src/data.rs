//! Training sequences: windows of a text file, or a corpus the teacher writes itself from seed
//! prompts (sequence-level distillation: the student learns on the teacher's own samples, so no
//! external corpus is needed and no evaluation text leaks into training).

use std::io::{BufRead, Write};
use std::path::Path;

use effbench_core::decode::{Sampler, TemperatureTopP};
use effbench_core::model::logits_rows;
use effbench_core::{ContiguousKvCache, KvCache, KvShape, LogitsFor, Model, SeqChunk};
use sha2::{Digest, Sha256};

use crate::error::{io, DistillError, Result};

/// Openers across registers (encyclopaedic, narrative, technical, conversational, code), so the
/// teacher's samples cover more than one kind of text. Sequence i starts from prompt i mod n.
pub const SEED_PROMPTS: &[&str] = &[
    "The history of the Roman Empire",
    "Photosynthesis is the process by which",
    "Once upon a time, in a small village,",
    "The main causes of the First World War were",
    "To make a good cup of coffee,",
    "In mathematics, a prime number",
    "The city of Paris",
    "Climate change affects",
    "def fibonacci(n):",
    "The human heart has four chambers",
    "Here is a short story about a robot who",
    "The stock market",
    "In 1969, astronauts",
    "Water boils at",
    "A good resume should",
    "The theory of evolution",
    "Dear hiring manager,",
    "The following recipe",
    "Machine learning is",
    "The river flows through",
    "Shakespeare wrote",
    "How do vaccines work?",
    "The capital of Japan is",
    "Football, known as soccer in some countries,",
    "The French Revolution began",
    "An electric car",
    "The solar system consists of",
    "My favourite book is",
    "Volcanoes form when",
    "The Internet was invented",
    "In the kitchen, she",
    "Explain the difference between weather and climate.",
];

/// Non-overlapping windows of `seq_len` tokens; a shorter tail is kept if it has 16 or more.
pub fn windows(tokens: &[u32], seq_len: usize) -> Vec<Vec<u32>> {
    tokens
        .chunks(seq_len.max(2))
        .filter(|c| c.len() == seq_len || c.len() >= 16)
        .map(|c| c.to_vec())
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub sequences: usize,
    /// Total tokens per sequence, prompt included.
    pub seq_len: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    /// Sequences decoded together: one pass over the weights serves all of them.
    pub batch: usize,
}

/// The teacher's own continuations of `prompts` (token ids), seeded per sequence, so the same
/// options give the same corpus. A sequence ends early at a stop token, which it keeps.
pub fn generate_corpus(
    teacher: &Model,
    prompts: &[Vec<u32>],
    stop: &[u32],
    opts: &GenerateOptions,
    mut on_progress: impl FnMut(usize, usize),
) -> Result<Vec<Vec<u32>>> {
    if prompts.is_empty() || prompts.iter().any(|p| p.is_empty()) {
        return Err(DistillError::NoData("an empty seed prompt".into()));
    }
    if let Some(p) = prompts.iter().find(|p| p.len() >= opts.seq_len) {
        return Err(DistillError::Invalid(format!(
            "a seed prompt of {} tokens leaves no room in sequences of {} (hint: longer training sequences)",
            p.len(),
            opts.seq_len
        )));
    }
    let mut corpus = Vec::with_capacity(opts.sequences);
    let mut done_tokens = 0;
    let total_tokens = opts.sequences * opts.seq_len;
    let batch = opts.batch.max(1);
    let mut first = 0;
    while first < opts.sequences {
        let ids: Vec<usize> = (first..(first + batch).min(opts.sequences)).collect();
        let mut cache = ContiguousKvCache::new(
            KvShape::of(teacher.config()),
            opts.seq_len,
            teacher.device(),
        );
        let mut samplers: Vec<TemperatureTopP> = ids
            .iter()
            .map(|&i| {
                TemperatureTopP::new(
                    opts.temperature,
                    opts.top_p,
                    opts.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9),
                )
            })
            .collect();
        let mut seqs: Vec<Vec<u32>> = ids
            .iter()
            .map(|&i| prompts[i % prompts.len()].clone())
            .collect();
        let mut live: Vec<bool> = vec![true; ids.len()];
        let mut next: Vec<Vec<u32>> = seqs.clone();
        loop {
            let chunks: Vec<SeqChunk> = (0..ids.len())
                .filter(|&j| live[j])
                .map(|j| SeqChunk::new(j as u64, next[j].clone(), LogitsFor::Last))
                .collect();
            if chunks.is_empty() {
                break;
            }
            let out = teacher.forward(&chunks, &mut cache)?;
            for (chunk, logits) in chunks.iter().zip(out.per_chunk) {
                let j = chunk.seq as usize;
                let row = logits_rows(&logits.expect("asked for the last logits"))?;
                let token = samplers[j].sample(&row[0]);
                seqs[j].push(token);
                next[j] = vec![token];
                done_tokens += 1;
                if stop.contains(&token) || seqs[j].len() >= opts.seq_len {
                    live[j] = false;
                    cache.remove(j as u64);
                }
            }
            on_progress(done_tokens, total_tokens);
        }
        corpus.extend(seqs);
        first += batch;
    }
    Ok(corpus)
}

/// A stable name for what produced a corpus, so a cached one is reused only for the same inputs.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..12])
}

/// Reads a corpus cached by [`write_cache`] if its fingerprint matches (or whatever it is, when
/// `fingerprint` is None: a resumed run keeps the corpus it started on), else None.
pub fn read_cache(path: &Path, fingerprint: Option<&str>) -> Result<Option<Vec<Vec<u32>>>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let mut lines = std::io::BufReader::new(file).lines();
    let bad = |detail: String| DistillError::BadFile {
        path: path.to_path_buf(),
        detail,
    };
    let header: serde_json::Value = match lines.next() {
        Some(line) => serde_json::from_str(&line.map_err(io(path))?)
            .map_err(|e| bad(format!("header: {e}")))?,
        None => return Ok(None),
    };
    if fingerprint.is_some() && header.get("fingerprint").and_then(|f| f.as_str()) != fingerprint {
        return Ok(None);
    }
    let mut corpus = Vec::new();
    for line in lines {
        let line = line.map_err(io(path))?;
        corpus.push(serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?);
    }
    Ok(Some(corpus))
}

/// One JSON header line with the fingerprint, then one JSON array of token ids per sequence.
pub fn write_cache(path: &Path, fingerprint: &str, corpus: &[Vec<u32>]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io(&tmp))?);
    let header = serde_json::json!({"fingerprint": fingerprint, "sequences": corpus.len()});
    writeln!(f, "{header}").map_err(io(&tmp))?;
    for seq in corpus {
        writeln!(f, "{}", serde_json::to_string(seq).expect("json")).map_err(io(&tmp))?;
    }
    f.flush().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))
}
