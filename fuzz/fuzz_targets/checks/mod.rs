//! What every dataset loader must guarantee, whatever the bytes: an `Err` or a report whose
//! items are usable, and the same rows from a strict load as from a lenient one that skipped
//! nothing. A broken guarantee aborts the run, so the fuzzer reports it like a crash.

use std::collections::HashSet;
use std::path::Path;

use effbench_datasets::{load_layout_bytes, Error, Layout, LoadReport};

pub fn load_both_ways(name: &str, data: &[u8], layout: Layout) {
    let lenient = load_layout_bytes(Path::new(name), data, layout, false);
    let strict = load_layout_bytes(Path::new(name), data, layout, true);
    match (&lenient, &strict) {
        (Ok(report), _) => {
            check_items(report);
            match strict {
                Ok(s) => {
                    assert!(
                        report.skipped.is_empty(),
                        "strict passed rows lenient skipped"
                    );
                    assert_eq!(s.items, report.items);
                }
                Err(Error::BadRow { .. }) => {
                    assert!(
                        !report.skipped.is_empty(),
                        "strict refused a row lenient kept"
                    )
                }
                Err(e) => panic!("lenient load passed, strict failed otherwise: {e}"),
            }
        }
        // Only a whole-file failure stops a lenient load; strict must fail then too.
        (Err(Error::BadRow { .. }), _) => panic!("lenient load failed on a row"),
        (Err(_), Ok(_)) => panic!("lenient load failed, strict passed"),
        (Err(_), Err(_)) => {}
    }
}

fn check_items(report: &LoadReport) {
    let mut ids = HashSet::new();
    for item in &report.items {
        assert!(item.answer < item.choices.len(), "answer out of range");
        assert!(!item.subject.is_empty(), "empty subject");
        assert!(ids.insert(&item.id), "duplicate id {}", item.id);
        if let Some(r) = &item.rendered {
            let n = item.choices.len();
            assert!(n >= 2, "a rendered item with {n} choices");
            assert_eq!(r.continuations.len(), n, "a continuation per choice");
            assert!(
                r.contexts.len() == 1 || r.contexts.len() == n,
                "one context, or one per choice"
            );
        }
    }
}
