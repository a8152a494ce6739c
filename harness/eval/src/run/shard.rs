//! Deterministic shards of a run, for a Slurm job array or a Kubernetes Indexed Job: `--shard
//! I/N` runs a fixed 1/N of the work units, chosen from the units' names alone (never timing),
//! so any shard can be re-run by itself and a re-run with `--resume` repeats nothing.
//!
//! Work units:
//! - multiple choice: one (item, technique) pair;
//! - perplexity: one window with every technique, because a technique's KL needs the
//!   baseline's log-probabilities of the same window on the same node;
//! - speed: one whole technique, because a speed figure must come from one machine.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::error::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based, as SLURM_ARRAY_TASK_ID (with --array=0-(N-1)) and JOB_COMPLETION_INDEX count.
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = crate::error::EvalError;

    fn from_str(s: &str) -> Result<Self> {
        let Some((i, n)) = s.split_once('/') else {
            bail!("shard `{s}` is not I/N (hint: 0/4 is the first of four shards)");
        };
        let (Ok(index), Ok(count)) = (i.trim().parse::<usize>(), n.trim().parse::<usize>()) else {
            bail!(
                "shard `{s}` is not I/N with whole numbers (hint: 0/4 is the first of four shards)"
            );
        };
        if count == 0 || index >= count {
            bail!(
                "shard {index}/{count}: the index counts from 0 and must be below the count (hint: shards of 4 are 0/4 to 3/4)"
            );
        }
        Ok(Self { index, count })
    }
}

/// A hash that is the same on every machine and every effbench version: the split must not
/// change when the binary does.
fn stable_bucket(key: &str, count: usize) -> usize {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(first) % count as u64) as usize
}

impl Shard {
    pub fn dir_name(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }

    pub fn owns_item(&self, technique: &str, item_id: &str) -> bool {
        stable_bucket(&format!("item\0{technique}\0{item_id}"), self.count) == self.index
    }

    pub fn owns_window(&self, window: usize) -> bool {
        window % self.count == self.index
    }

    pub fn owns_speed(&self, technique: &str) -> bool {
        stable_bucket(&format!("speed\0{technique}"), self.count) == self.index
    }
}

/// Written when a shard has finished every unit it owns; `merge` refuses shards without it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardDone {
    pub shard: Shard,
    pub labels: BTreeMap<String, String>,
    /// Records this shard holds per technique.
    pub records: BTreeMap<String, usize>,
    /// Quality units of the whole run per technique (items, or perplexity windows).
    pub total_units: usize,
    pub finished: String,
}

pub const DONE_FILE: &str = "shard.json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_shard_specs() {
        assert_eq!(
            "1/4".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 4 }
        );
        for bad in ["4/4", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_unit_belongs_to_exactly_one_shard_and_the_split_is_balanced() {
        let n = 4;
        let shards: Vec<Shard> = (0..n).map(|index| Shard { index, count: n }).collect();
        let mut per_shard = vec![0usize; n];
        for item in 0..2000 {
            let id = format!("anatomy/{item}");
            let owners: Vec<usize> = shards
                .iter()
                .filter(|s| s.owns_item("f16", &id))
                .map(|s| s.index)
                .collect();
            assert_eq!(owners.len(), 1);
            per_shard[owners[0]] += 1;
        }
        // 500 expected per shard; a fair split stays well within ±15%.
        assert!(
            per_shard.iter().all(|&c| (425..=575).contains(&c)),
            "{per_shard:?}"
        );
        for w in 0..10 {
            assert_eq!(shards.iter().filter(|s| s.owns_window(w)).count(), 1);
        }
        for t in ["f16", "as-stored", "int4"] {
            assert_eq!(shards.iter().filter(|s| s.owns_speed(t)).count(), 1);
        }
    }

    #[test]
    fn the_split_is_pinned() {
        // The split is part of the results format: a change here strands half-finished arrays.
        let owners: Vec<usize> = (0..12)
            .map(|i| {
                let id = format!("anatomy/{i}");
                (0..3)
                    .find(|&index| Shard { index, count: 3 }.owns_item("f16", &id))
                    .unwrap()
            })
            .collect();
        assert_eq!(owners, PINNED_OWNERS);
    }

    const PINNED_OWNERS: [usize; 12] = [2, 1, 1, 2, 1, 0, 1, 0, 0, 1, 0, 0];
}
