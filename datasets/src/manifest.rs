//! What a suite is, in a form that can be printed, recorded and compared across runs.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::item::{canonical_cmp, McItem};

/// Bumped if the canonical serialisation below ever changes, so old and new hashes never match.
const HASH_DOMAIN: &[u8] = b"effbench-mc-v1\n";

/// The identity of a suite: which items, and exactly what they say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteManifest {
    pub name: String,
    pub seed: u64,
    /// `None` for a full suite.
    pub per_subject: Option<usize>,
    /// In canonical order: subject, then natural id order.
    pub item_ids: Vec<String>,
    /// See [`content_hash`].
    pub content_hash: String,
    pub subjects: usize,
    pub items: usize,
}

impl SuiteManifest {
    pub fn new(
        name: impl Into<String>,
        seed: u64,
        per_subject: Option<usize>,
        items: &[McItem],
    ) -> Self {
        let sorted = canonical(items);
        SuiteManifest {
            name: name.into(),
            seed,
            per_subject,
            item_ids: sorted.iter().map(|i| i.id.clone()).collect(),
            content_hash: hash_sorted(&sorted),
            subjects: items
                .iter()
                .map(|i| i.subject.as_str())
                .collect::<BTreeSet<_>>()
                .len(),
            items: items.len(),
        }
    }

    /// The first 12 hex digits: enough to tell suites apart in a table or a log line.
    pub fn short_hash(&self) -> &str {
        &self.content_hash[..12.min(self.content_hash.len())]
    }
}

impl fmt::Display for SuiteManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} items, {} subjects, ",
            self.name, self.items, self.subjects
        )?;
        match self.per_subject {
            Some(n) => write!(f, "{n} per subject, seed {}", self.seed)?,
            None => f.write_str("full")?,
        }
        write!(f, ", content {}", self.short_hash())
    }
}

/// sha256 (hex) of the items in canonical order (subject, then natural id), independent of the
/// order they are given in. The bytes hashed are `effbench-mc-v1\n`, then for each item: `id`,
/// `subject`, `question`, the number of choices as u64 little-endian, each choice, and `answer`
/// as u64 little-endian, where every string is its UTF-8 length as u64 little-endian followed
/// by its bytes. Length prefixes make the encoding unambiguous without escaping. An item with a
/// rendered prompt then adds `rendered`, its metric name, and its contexts and continuations,
/// each list as its count followed by its strings.
pub fn content_hash(items: &[McItem]) -> String {
    hash_sorted(&canonical(items))
}

fn canonical(items: &[McItem]) -> Vec<&McItem> {
    let mut sorted: Vec<&McItem> = items.iter().collect();
    sorted.sort_by(|a, b| canonical_cmp(a, b));
    sorted
}

/// The hash encoding both kinds of suite use: after a domain line, every count as u64
/// little-endian and every string as its UTF-8 length (u64 little-endian) and bytes, so the
/// encoding is unambiguous without escaping.
pub(crate) struct ContentHasher(Sha256);

impl ContentHasher {
    pub(crate) fn new(domain: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(domain);
        ContentHasher(h)
    }

    pub(crate) fn num(&mut self, n: usize) {
        self.0.update((n as u64).to_le_bytes());
    }

    pub(crate) fn text(&mut self, s: &str) {
        self.num(s.len());
        self.0.update(s.as_bytes());
    }

    /// A count, then each string.
    pub(crate) fn texts(&mut self, all: &[String]) {
        self.num(all.len());
        for s in all {
            self.text(s);
        }
    }

    pub(crate) fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

fn hash_sorted(items: &[&McItem]) -> String {
    let mut h = ContentHasher::new(HASH_DOMAIN);
    for item in items {
        h.text(&item.id);
        h.text(&item.subject);
        h.text(&item.question);
        h.texts(&item.choices);
        h.num(item.answer);
        // Appended only when present, so every suite hashed before rendered prompts existed
        // keeps its hash (and its runs stay resumable).
        if let Some(r) = &item.rendered {
            h.text("rendered");
            h.text(r.norm.metric());
            h.texts(&r.contexts);
            h.texts(&r.continuations);
        }
    }
    h.finish()
}
