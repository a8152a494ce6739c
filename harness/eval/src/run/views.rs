//! The rows of the commands that are views over a run: each asks one question of the engine
//! as a run of preset techniques, so it writes the same run directory and report as any run.

use effbench_kvcache::KvDtype;
use effbench_speculative::DraftSpec;

use crate::error::Result;
use crate::hint::hinted;

/// Speculative decoding against plain decoding: `base` first, then `base+spec:DRAFT@K` for
/// every draft and k, and `base+spec:DRAFT@adaptive:KMAX` after each draft's when `adaptive`.
/// Every draft is parsed first, so a misspelt one fails before any row runs.
pub fn speculative_rows(
    base: &str,
    drafts: &[String],
    ks: &[usize],
    adaptive: bool,
) -> Result<Vec<String>> {
    let Some(&kmax) = ks.iter().max().filter(|_| !ks.contains(&0)) else {
        return Err(hinted(
            "speculative decoding needs draft lengths of at least 1",
            "{k} takes counts such as 2,4,8",
        ));
    };
    for d in drafts {
        d.parse::<DraftSpec>()?;
    }
    let mut rows = vec![base.to_string()];
    for d in drafts {
        rows.extend(ks.iter().map(|k| format!("{base}+spec:{d}@{k}")));
        if adaptive {
            rows.push(format!("{base}+spec:{d}@adaptive:{kmax}"));
        }
    }
    Ok(rows)
}

/// The same trace served with `base`'s weights in a contiguous cache of `dtype`, a paged cache
/// of `block`-token blocks, or both, in that order.
pub fn serving_rows(
    base: &str,
    contiguous: bool,
    paged: bool,
    dtype: KvDtype,
    block: usize,
) -> Result<Vec<String>> {
    let mut rows = Vec::new();
    if contiguous {
        rows.push(match dtype {
            KvDtype::F32 => format!("{base}+kv:contiguous"),
            KvDtype::F16 => format!("{base}+kv:f16"),
        });
    }
    if paged {
        if dtype != KvDtype::F32 {
            return Err(hinted(
                "the paged cache stores K/V in f32 only",
                "serve the f16 cache contiguous only, or leave {kv_dtype} at f32",
            ));
        }
        rows.push(format!("{base}+kv:paged:{block}"));
    }
    Ok(rows)
}

/// A teacher and its students on the same text: the teacher's weights row, then `student:S`.
pub fn student_rows(teacher: &str, students: &[String]) -> Vec<String> {
    std::iter::once(teacher.to_string())
        .chain(students.iter().map(|s| format!("student:{s}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speculative_rows_put_plain_decoding_first_and_each_draft_at_each_k() {
        let drafts = ["ngram:3".to_string(), "layers:4".to_string()];
        let rows = speculative_rows("as-stored", &drafts, &[2, 4], true).unwrap();
        assert_eq!(
            rows,
            [
                "as-stored",
                "as-stored+spec:ngram:3@2",
                "as-stored+spec:ngram:3@4",
                "as-stored+spec:ngram:3@adaptive:4",
                "as-stored+spec:layers:4@2",
                "as-stored+spec:layers:4@4",
                "as-stored+spec:layers:4@adaptive:4",
            ]
        );
        for ks in [&[][..], &[0, 2][..]] {
            let e = speculative_rows("f16", &drafts, ks, false).unwrap_err();
            assert!(e.to_string().contains("at least 1"), "{e}");
        }
        assert!(speculative_rows("f16", &["nonsense".to_string()], &[2], false).is_err());
    }

    #[test]
    fn serving_rows_name_the_caches_and_refuse_a_paged_f16_cache() {
        let rows = serving_rows("int4", true, true, KvDtype::F32, 16).unwrap();
        assert_eq!(rows, ["int4+kv:contiguous", "int4+kv:paged:16"]);
        let rows = serving_rows("int4", true, false, KvDtype::F16, 16).unwrap();
        assert_eq!(rows, ["int4+kv:f16"]);
        let e = serving_rows("int4", true, true, KvDtype::F16, 16).unwrap_err();
        assert!(e.hinted().is_some(), "{e}");
    }
}
