//! Where k-shot exemplars come from: a dev split, or the test split itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::error::{Error, Result};
use crate::item::{BadRow, McItem, Split};
use crate::load::load_mmlu_csv_dir;
use crate::sample::pick_exemplars;

/// Exemplars per subject, in the order they appear in the prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FewShotSource {
    from_test: bool,
    by_subject: BTreeMap<String, Vec<McItem>>,
}

impl FewShotSource {
    /// Exemplars from a dev split, each subject's in the order given (file order), as
    /// lm-evaluation-harness's `first_n` sampler takes MMLU's 5 dev questions.
    pub fn from_dev(items: Vec<McItem>) -> Self {
        let mut by_subject: BTreeMap<String, Vec<McItem>> = BTreeMap::new();
        for item in items {
            by_subject
                .entry(item.subject.clone())
                .or_default()
                .push(item);
        }
        FewShotSource {
            from_test: false,
            by_subject,
        }
    }

    /// [`Self::from_dev`] on a directory of `<subject>_dev.csv` files, plus the rows skipped.
    pub fn load_dev_dir(dir: impl AsRef<Path>, strict: bool) -> Result<(Self, Vec<BadRow>)> {
        let report = load_mmlu_csv_dir(dir, Split::Dev, strict)?;
        Ok((Self::from_dev(report.items), report.skipped))
    }

    /// With no dev split: `shots` exemplars per subject drawn by the seeded sampler from test
    /// items, and the suite to score with any of them removed.
    ///
    /// A subject's exemplars come from its items *outside* `suite` when there are enough of
    /// them, so an `mmlu-lite` run scores the same item ids at every `shots`. Only when a
    /// subject has too few (as in a full run) are they drawn from all its items, and those
    /// drawn from the suite are dropped from the returned suite.
    pub fn from_test(
        all: &[McItem],
        suite: &[McItem],
        shots: usize,
        seed: u64,
    ) -> (Self, Vec<McItem>) {
        let in_suite: BTreeSet<&str> = suite.iter().map(|i| i.id.as_str()).collect();
        let mut subjects: BTreeMap<&str, Vec<&McItem>> = BTreeMap::new();
        for item in all {
            subjects.entry(&item.subject).or_default().push(item);
        }
        let mut by_subject = BTreeMap::new();
        for (subject, items) in subjects {
            let outside: Vec<&McItem> = items
                .iter()
                .copied()
                .filter(|i| !in_suite.contains(i.id.as_str()))
                .collect();
            let pool = if outside.len() >= shots {
                outside
            } else {
                items
            };
            let picked = pick_exemplars(subject, pool, shots, seed);
            by_subject.insert(subject.to_string(), picked.into_iter().cloned().collect());
        }
        let source = FewShotSource {
            from_test: true,
            by_subject,
        };
        let excluded = source.excluded_ids();
        let scored = suite
            .iter()
            .filter(|i| !excluded.contains(&i.id))
            .cloned()
            .collect();
        (source, scored)
    }

    /// The first `k` exemplars for `subject`; an error if it has fewer.
    pub fn exemplars(&self, subject: &str, k: usize) -> Result<&[McItem]> {
        let have = self.by_subject.get(subject).map_or(&[][..], Vec::as_slice);
        if have.len() < k {
            return Err(Error::NotEnoughShots {
                subject: subject.to_string(),
                available: have.len(),
                requested: k,
            });
        }
        Ok(&have[..k])
    }

    /// Whether exemplars were taken from the test split (and so must not be scored).
    pub fn is_from_test(&self) -> bool {
        self.from_test
    }

    /// Ids that must not be scored: every exemplar when they come from the test split, none
    /// when they come from a dev split.
    pub fn excluded_ids(&self) -> BTreeSet<String> {
        if !self.from_test {
            return BTreeSet::new();
        }
        self.by_subject
            .values()
            .flatten()
            .map(|i| i.id.clone())
            .collect()
    }

    /// Subjects that have exemplars, in name order.
    pub fn subjects(&self) -> impl Iterator<Item = &str> {
        self.by_subject.keys().map(String::as_str)
    }
}
