//! The seeded stratified sampler behind `mmlu-lite`.
//!
//! Identical on every machine and every Rust or crate version, because all of it is here:
//! splitmix64 for random numbers, rejection sampling for unbiased bounded draws, and a
//! partial Fisher-Yates shuffle over each subject's items in natural id order. Each subject
//! draws from its own stream (seed mixed with an FNV-1a hash of the subject name), so adding
//! or removing one subject never changes which items another subject contributes.

use std::collections::BTreeMap;

pub use effbench_stats::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::item::{canonical_cmp, natural_cmp, McItem};

/// Items per subject in the default `mmlu-lite` suite: 57 subjects x 10 = 570 items.
pub const DEFAULT_PER_SUBJECT: usize = 10;
/// The default `mmlu-lite` seed.
pub const DEFAULT_SEED: u64 = 0;

/// Streams for different purposes must not pick the same items for the same seed.
const SUBSET_STREAM: u64 = 0x6D6D_6C75_2D6C_6974; // "mmlu-lit"
const FEWSHOT_STREAM: u64 = 0x6665_7773_686F_7473; // "fewshots"

/// FNV-1a, 64-bit: a hash whose value is fixed by its definition, unlike `std`'s hashers.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn stream(seed: u64, purpose: u64, subject: &str) -> SplitMix64 {
    // One splitmix step decorrelates nearby seeds before the subject is mixed in.
    let base = SplitMix64::new(seed ^ purpose).next_u64();
    SplitMix64::new(base ^ fnv1a64(subject.as_bytes()))
}

/// Picks `k` of `items` (all of them if there are fewer): sorts them by natural id, shuffles the
/// first `k` positions with Fisher-Yates, and returns those positions in natural id order.
fn pick<'a, T: Stratified>(mut items: Vec<&'a T>, k: usize, rng: &mut SplitMix64) -> Vec<&'a T> {
    items.sort_by(|a, b| natural_cmp(a.id(), b.id()));
    let k = k.min(items.len());
    for i in 0..k {
        let j = i + rng.below_rejecting_top((items.len() - i) as u64) as usize;
        items.swap(i, j);
    }
    items.truncate(k);
    items.sort_by(|a, b| natural_cmp(a.id(), b.id()));
    items
}

/// What the seeded sampler needs of an item: a stable id, and the stratum (subject or task) it
/// is drawn from.
pub trait Stratified {
    fn id(&self) -> &str;
    fn subject(&self) -> &str;
}

impl Stratified for McItem {
    fn id(&self) -> &str {
        &self.id
    }
    fn subject(&self) -> &str {
        &self.subject
    }
}

fn by_subject<T: Stratified>(items: &[T]) -> BTreeMap<&str, Vec<&T>> {
    let mut groups: BTreeMap<&str, Vec<&T>> = BTreeMap::new();
    for item in items {
        groups.entry(item.subject()).or_default().push(item);
    }
    groups
}

/// `mmlu-lite`: `per_subject` items from every subject, chosen by the seeded sampler, ordered by
/// subject then id. A subject with fewer items contributes all it has; see [`short_subjects`].
pub fn stratified_subset<T: Stratified + Clone>(
    items: &[T],
    per_subject: usize,
    seed: u64,
) -> Vec<T> {
    by_subject(items)
        .into_iter()
        .flat_map(|(subject, group)| {
            let mut rng = stream(seed, SUBSET_STREAM, subject);
            pick(group, per_subject, &mut rng)
        })
        .cloned()
        .collect()
}

/// The `--full` suite: every item, in the same subject-then-id order as a subset.
pub fn full_suite(items: &[McItem]) -> Vec<McItem> {
    let mut all = items.to_vec();
    all.sort_by(canonical_cmp);
    all
}

/// A subject that could not supply the requested number of items.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortSubject {
    pub subject: String,
    pub available: usize,
    pub requested: usize,
}

/// The subjects that [`stratified_subset`] takes fewer than `per_subject` items from, so the
/// caller can say so instead of silently reporting an unbalanced suite.
pub fn short_subjects(items: &[McItem], per_subject: usize) -> Vec<ShortSubject> {
    by_subject(items)
        .into_iter()
        .filter(|(_, group)| group.len() < per_subject)
        .map(|(subject, group)| ShortSubject {
            subject: subject.to_string(),
            available: group.len(),
            requested: per_subject,
        })
        .collect()
}

/// Up to `k` items of one subject for few-shot exemplars, from a stream separate from the
/// subset's, in natural id order.
pub(crate) fn pick_exemplars<'a>(
    subject: &str,
    items: Vec<&'a McItem>,
    k: usize,
    seed: u64,
) -> Vec<&'a McItem> {
    let mut rng = stream(seed, FEWSHOT_STREAM, subject);
    pick(items, k, &mut rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs of the reference C implementation for seed 1234567.
        let mut rng = SplitMix64::new(1234567);
        let got: Vec<u64> = (0..5).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423,
                4593380528125082431,
                16408922859458223821
            ]
        );
    }

    #[test]
    fn fnv1a64_matches_known_values() {
        assert_eq!(fnv1a64(b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xAF63_DC4C_8601_EC8C);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_F739_67E8);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[rng.below_rejecting_top(5) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }
}
