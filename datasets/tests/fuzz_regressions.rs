//! Inputs the fuzzer (fuzz/, docs/fuzzing.md) found to crash a loader, minimised, each with the
//! answer it must get now.

use effbench_datasets::{load_layout_bytes, Error, Layout};

/// The cais/mmlu parquet seed with one column chunk's offset or length made negative in the
/// footer: the parquet crate asserts on that, so the loader must refuse the file first.
#[test]
fn parquet_chunk_outside_the_file_is_an_error_not_a_panic() {
    let bytes = include_bytes!("fixtures/parquet-negative-chunk-length.parquet");
    for strict in [false, true] {
        let err = load_layout_bytes("test.parquet", bytes, Layout::HfParquet, strict).unwrap_err();
        assert!(
            matches!(&err, Error::Parquet { reason, .. } if reason.contains("outside")),
            "{err}"
        );
    }
}

/// A dictionary page cut shorter than its header says: the parquet crate's decoder asserts on it
/// (in release too, as a slice index). The page-header walk now refuses it first; the loader
/// still contains a decoder panic as a second line.
#[test]
fn parquet_truncated_dictionary_page_is_an_error_not_a_panic() {
    let bytes = include_bytes!("fixtures/parquet-truncated-dictionary-page.parquet");
    let err = load_layout_bytes("test.parquet", bytes, Layout::HfParquet, false).unwrap_err();
    assert!(
        matches!(&err, Error::Parquet { reason, .. } if reason.contains("runs past the chunk")),
        "{err}"
    );
}

/// Found by the long fuzzing run: an 882-byte file whose page header's decompressed size is a
/// 35-bit varint, which the parquet crate wraps to 640 MiB and reserves before decompressing.
/// The loader walks the page headers first and refuses it.
#[test]
fn parquet_page_size_past_32_bits_is_refused_before_reading() {
    let bytes = include_bytes!("fixtures/parquet-page-size-past-32-bits.parquet");
    for strict in [false, true] {
        let err = load_layout_bytes("test.parquet", bytes, Layout::HfParquet, strict).unwrap_err();
        assert!(
            matches!(&err, Error::Parquet { reason, .. } if reason.contains("-29393682432 does not fit in 32 bits")),
            "{err}"
        );
    }
}
