//! Inputs the fuzzer (fuzz/, docs/fuzzing.md) found to crash a loader, minimised, each with the
//! answer it must get now.

use std::time::{Duration, Instant};

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
///
/// The fuzzer also changed one field-id delta in this file's footer (byte 0x401), which makes
/// the row group's `ordinal` (an i16 in the format) arrive as an i64; the footer walk now
/// refuses that first. With that byte set back to the one parquet-rs wrote, the file reaches
/// the page walk as before.
#[test]
fn parquet_truncated_dictionary_page_is_an_error_not_a_panic() {
    let found = include_bytes!("fixtures/parquet-truncated-dictionary-page.parquet");
    let err = load_layout_bytes("test.parquet", found, Layout::HfParquet, false).unwrap_err();
    assert!(
        matches!(&err, Error::Parquet { reason, .. } if reason.contains("RowGroup field 7 (ordinal) at byte 630 of the footer has Thrift type 6 (i64), not the format's i16")),
        "{err}"
    );

    let mut bytes = found.to_vec();
    assert_eq!(bytes[0x401], 0x36, "field 6 of the row group, delta 3");
    bytes[0x401] = 0x26; // field 5 (file_offset), delta 2, as written
    let err = load_layout_bytes("test.parquet", &bytes, Layout::HfParquet, false).unwrap_err();
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

/// Found by the long fuzzing run: a 719-byte file whose footer schema gives a node 792 million
/// children; the parquet crate reserves a list that long (6 GiB) while it builds the schema.
/// The loader walks the footer first and refuses the count.
#[test]
fn parquet_schema_node_with_more_children_than_the_schema_is_refused_before_reading() {
    let bytes = include_bytes!("fixtures/parquet-schema-children-past-the-schema.parquet");
    for strict in [false, true] {
        let err = load_layout_bytes("test.parquet", bytes, Layout::HfParquet, strict).unwrap_err();
        assert!(
            matches!(&err, Error::Parquet { reason, .. } if reason.contains("children, but only")),
            "{err}"
        );
    }
}

/// Found by the long fuzzing run as a slow input (4 s under the sanitizer): a footer list
/// claiming billions of booleans, which the parquet crate's skipper steps over one by one
/// without consuming bytes. The footer walk refuses a list longer than the bytes after it,
/// before the crate's skipper runs.
#[test]
fn parquet_footer_list_longer_than_the_file_is_refused_at_once() {
    let bytes = include_bytes!("fixtures/parquet-footer-list-longer-than-the-file.parquet");
    let err = load_layout_bytes("test.parquet", bytes, Layout::HfParquet, false).unwrap_err();
    assert!(
        matches!(&err, Error::Parquet { reason, .. } if reason.contains("bytes follow")),
        "{err}"
    );
}

/// Found by the long fuzzing run as a timeout (over 30 s under the sanitizer, 1 s without): a
/// page header whose field 8 (a struct in the format) is sent as an i32. The parquet crate
/// reads it as a struct anyway, so it parses the following bytes as fields and its skipper
/// spins over them. The page walk checks each known field's wire type first.
#[test]
fn parquet_page_header_field_of_the_wrong_wire_type_is_refused_before_reading() {
    for bytes in [
        &include_bytes!("fixtures/parquet-page-header-field-of-the-wrong-type.parquet")[..],
        &include_bytes!("fixtures/parquet-page-header-field-of-the-wrong-type-2.parquet")[..],
    ] {
        let err = load_layout_bytes("test.parquet", bytes, Layout::HfParquet, false).unwrap_err();
        assert!(
            matches!(&err, Error::Parquet { reason, .. } if reason.contains("not the format's")),
            "{err}"
        );
    }
}

/// Found by the long fuzzing run as two slow inputs (20 s each under the sanitizer, over a
/// second without; results/fuzz/README.md): footers whose fields carry wire types other than the
/// format's. The parquet crate reads a known field as the format's type whatever the wire says,
/// so it parsed the rest of the footer differently from the footer walk, and its skipper spun
/// ("Required field descending is missing", "Unexpected struct field type 14"). The footer walk
/// now knows the format's type of every field in every struct the footer holds, and refuses a
/// mismatch before the crate parses anything.
#[test]
fn parquet_footer_field_of_the_wrong_wire_type_is_refused_before_reading() {
    for (bytes, what) in [
        (
            &include_bytes!("fixtures/parquet-footer-field-of-the-wrong-type.parquet")[..],
            "RowGroup field 2 (total_byte_size) at byte 112 of the footer has Thrift type 8 (binary), not the format's i64",
        ),
        (
            &include_bytes!("fixtures/parquet-footer-field-of-the-wrong-type-2.parquet")[..],
            "FileMetaData field 6 (created_by) at byte 0 of the footer has Thrift type 3 (byte), not the format's binary",
        ),
    ] {
        for strict in [false, true] {
            let started = Instant::now();
            let err =
                load_layout_bytes("test.parquet", bytes, Layout::HfParquet, strict).unwrap_err();
            let took = started.elapsed();
            assert!(
                matches!(&err, Error::Parquet { reason, .. } if reason.contains(what)),
                "{err}"
            );
            assert!(!err.to_string().contains('\n'), "{err}");
            // About a microsecond natively; the bound leaves room for a loaded machine. The
            // parquet crate alone took 1.6 s on each.
            assert!(took < Duration::from_millis(250), "took {took:?}");
        }
    }
}

/// Files parquet-rs writes in the cais/mmlu shape (the fuzz seeds, plain and snappy) pass the
/// footer walk's field types and load to the last row. (The unit test
/// `footers_the_parquet_writer_writes_pass` covers a footer holding most of what the format has.)
#[test]
fn parquet_files_as_written_still_load() {
    for bytes in [
        &include_bytes!("../../fuzz/seeds/dataset_hf_parquet/plain.parquet")[..],
        &include_bytes!("../../fuzz/seeds/dataset_hf_parquet/snappy.parquet")[..],
    ] {
        let report = load_layout_bytes("test.parquet", bytes, Layout::HfParquet, false).unwrap();
        let ids: Vec<&str> = report.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["abstract_algebra/0", "high_school_chemistry/0"]);
    }
}
