//! Metadata-to-tokenizer conversion on tiny hand-built vocabularies: no model files needed.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use super::*;

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

/// GPT-2's printable stand-in for each byte, in byte order: the 256 base tokens of a byte-level
/// vocabulary.
fn byte_chars() -> Vec<String> {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut next = 256;
    (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

/// A byte-level BPE vocabulary: the 256 byte tokens, then `extra` normal tokens, then
/// `<|im_start|>`, `<|im_end|>` (control) and `<tool>` (user-defined).
struct Tiny {
    md: HashMap<String, Value>,
}

impl Tiny {
    fn gpt2(pre: Option<&str>, extra: &[&str], merges: &[&str]) -> Self {
        let mut tokens = byte_chars();
        tokens.extend(extra.iter().map(|s| s.to_string()));
        let mut types = vec![1; tokens.len()];
        for (text, ty) in [("<|im_start|>", 3), ("<|im_end|>", 3), ("<tool>", 4)] {
            tokens.push(text.to_string());
            types.push(ty);
        }
        let mut md = HashMap::new();
        md.insert(KEY_MODEL.into(), Value::String("gpt2".into()));
        if let Some(pre) = pre {
            md.insert(KEY_PRE.into(), Value::String(pre.into()));
        }
        md.insert(
            KEY_TOKENS.into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        );
        md.insert(
            KEY_TOKEN_TYPE.into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        );
        md.insert(KEY_MERGES.into(), strings(merges));
        Tiny { md }
    }

    fn standard() -> Self {
        Self::gpt2(
            Some("smollm"),
            &["he", "the", "Ġt", "Ġthe"],
            &["h e", "t he", "Ġ t", "Ġt he"],
        )
    }

    fn id(&self, text: &str) -> u32 {
        let Value::Array(tokens) = &self.md[KEY_TOKENS] else {
            unreachable!()
        };
        tokens
            .iter()
            .position(|t| matches!(t, Value::String(s) if s == text))
            .unwrap_or_else(|| panic!("{text:?} not in the tiny vocabulary")) as u32
    }

    fn tokenizer(&self) -> Tokenizer {
        from_gguf_metadata(&self.md).expect("tiny vocabulary builds")
    }

    fn ids(&self, text: &str) -> Vec<u32> {
        self.tokenizer()
            .encode(text, false)
            .unwrap()
            .get_ids()
            .to_vec()
    }
}

use gguf::{KEY_MERGES, KEY_MODEL, KEY_PRE, KEY_SCORES, KEY_TOKENS, KEY_TOKEN_TYPE};

#[test]
fn merges_apply_by_rank_not_by_length() {
    let t = Tiny::standard();
    // "the": `h e` (rank 0) first, then `t he` (rank 1).
    // " the": `h e` first, then `t he` beats `Ġ t` (rank 2), leaving "Ġ" + "the"; "Ġthe" is
    // unreachable because no merge joins "Ġ" and "the".
    assert_eq!(t.ids("the the"), vec![t.id("the"), t.id("Ġ"), t.id("the")]);
}

#[test]
fn smollm_splits_every_digit() {
    let t = Tiny::standard();
    assert_eq!(
        t.ids("a 12"),
        vec![t.id("a"), t.id("Ġ"), t.id("1"), t.id("2")]
    );
}

#[test]
fn control_tokens_are_parsed_only_with_parse_special_user_defined_always() {
    let t = Tiny::standard();
    let mut tok = t.tokenizer();
    let text = "<|im_start|>the<tool>";
    let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
    assert_eq!(ids, vec![t.id("<|im_start|>"), t.id("the"), t.id("<tool>")]);

    // llama.cpp's parse_special=false.
    tok.set_encode_special_tokens(true);
    let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
    let mut want: Vec<u32> = "<|im_start|>"
        .chars()
        .map(|c| t.id(&c.to_string()))
        .collect();
    want.extend([t.id("the"), t.id("<tool>")]);
    assert_eq!(ids, want);
}

#[test]
fn decode_inverts_encode_for_any_text() {
    let tok = Tiny::standard().tokenizer();
    for text in [
        "",
        "the the  thethe\n\n\tx",
        "Grüße, 世界! 🙂👍🏽 ½ \u{00a0}\u{3000}\r\n",
        "<|im_start|>user\nhi<|im_end|>",
        "don't 'S 1234567",
    ] {
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(tok.decode(&ids, false).unwrap(), text, "ids {ids:?}");
    }
}

#[test]
fn skip_special_drops_control_tokens_only() {
    let t = Tiny::standard();
    let tok = t.tokenizer();
    let ids = tok.encode("<|im_start|>the<tool>", false).unwrap();
    assert_eq!(tok.decode(ids.get_ids(), true).unwrap(), "the<tool>");
}

#[test]
fn no_bos_unless_the_file_asks() {
    let mut t = Tiny::standard();
    t.md.insert(
        "tokenizer.ggml.bos_token_id".into(),
        Value::U32(t.id("<|im_start|>")),
    );
    assert_eq!(
        t.tokenizer().encode("the", true).unwrap().get_ids(),
        [t.id("the")]
    );

    t.md.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(true));
    let tok = t.tokenizer();
    assert_eq!(
        tok.encode("the", true).unwrap().get_ids(),
        [t.id("<|im_start|>"), t.id("the")]
    );
    assert_eq!(tok.encode("the", false).unwrap().get_ids(), [t.id("the")]);
}

#[test]
fn bos_and_eos_wrap_each_sequence_when_asked() {
    let mut t = Tiny::standard();
    let (bos, eos) = (t.id("<|im_start|>"), t.id("<|im_end|>"));
    t.md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(bos));
    t.md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(eos));
    t.md.insert("tokenizer.ggml.add_eos_token".into(), Value::Bool(true));
    let the = t.id("the");
    assert_eq!(
        t.tokenizer().encode("the", true).unwrap().get_ids(),
        [the, eos]
    );

    t.md.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(true));
    let tok = t.tokenizer();
    assert_eq!(tok.encode("the", true).unwrap().get_ids(), [bos, the, eos]);
    assert_eq!(
        tok.encode(("the", "the"), true).unwrap().get_ids(),
        [bos, the, eos, bos, the, eos]
    );
}

#[test]
fn add_bos_without_a_bos_id_is_an_error() {
    let mut t = Tiny::standard();
    t.md.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(true));
    let err = from_gguf_metadata(&t.md).unwrap_err().to_string();
    assert!(
        err.contains("add_bos_token") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn missing_pre_means_llama_cpp_default() {
    // The default list isolates runs of punctuation before the GPT-2 regex sees them, and splits
    // numbers into runs of three digits.
    let t = Tiny::gpt2(None, &[], &[]);
    let tok = t.tokenizer();
    let enc = tok.encode("a!? 12345", false).unwrap();
    let pieces: Vec<&str> = enc.get_tokens().iter().map(String::as_str).collect();
    assert_eq!(pieces, ["a", "!", "?", "Ġ", "1", "2", "3", "4", "5"]);
    let words = enc
        .get_word_ids()
        .iter()
        .map(|w| w.unwrap())
        .collect::<Vec<_>>();
    // "a" | "!?" | " " | "123" | "45"
    assert_eq!(words, [0, 1, 1, 2, 3, 3, 3, 4, 4]);
}

#[test]
fn qwen2_keeps_case_insensitive_contractions_and_single_digits() {
    let t = Tiny::gpt2(Some("qwen2"), &[], &[]);
    let enc = t.tokenizer().encode("IT'S 42", false).unwrap();
    let words = enc
        .get_word_ids()
        .iter()
        .map(|w| w.unwrap())
        .collect::<Vec<_>>();
    // "IT" | "'S" | " " | "4" | "2"
    assert_eq!(words, [0, 0, 1, 1, 2, 3, 4]);
}

#[test]
fn special_tokens_follow_llama_cpp() {
    let mut t = Tiny::standard();
    t.md.insert(
        "tokenizer.ggml.eos_token_id".into(),
        Value::U32(t.id("<|im_end|>")),
    );
    t.md.insert(
        "tokenizer.ggml.padding_token_id".into(),
        Value::U32(999_999),
    );
    let st = special_tokens(&t.md);
    assert_eq!(st.eos, Some(t.id("<|im_end|>")));
    // Guessed from its text, as llama.cpp does when no eot key exists.
    assert_eq!(st.eot, Some(t.id("<|im_end|>")));
    assert_eq!(st.pad, None, "out-of-range ids are dropped");
    assert_eq!(st.bos, None);
    assert_eq!(st.eog, vec![t.id("<|im_end|>")]);
    assert!(st.is_eog(t.id("<|im_end|>")));
    assert!(!st.add_bos && !st.add_eos);

    t.md.insert(KEY_PRE.into(), Value::String("llama-bpe".into()));
    assert!(
        special_tokens(&t.md).add_bos,
        "llama.cpp's default for llama3 vocabularies"
    );
}

#[test]
fn eog_text_promotes_a_normal_token_to_control() {
    // llama.cpp treats "</s>" as end-of-generation and control even where the file says normal,
    // so "</s>" in text is one token with parse_special.
    let mut t = Tiny::gpt2(Some("gpt-2"), &["</s>"], &[]);
    let tok = t.tokenizer();
    assert_eq!(
        tok.encode("a</s>", false).unwrap().get_ids(),
        [t.id("a"), t.id("</s>")]
    );
    t.md.remove(KEY_TOKEN_TYPE);
    assert_eq!(
        special_tokens(&t.md).eog,
        vec![t.id("</s>"), t.id("<|im_end|>")]
    );
}

fn error_of(md: &HashMap<String, Value>) -> String {
    let err = from_gguf_metadata(md).unwrap_err().to_string();
    assert!(!err.contains('\n'), "one-line message: {err}");
    assert!(err.contains("(hint: "), "message has a hint: {err}");
    err
}

#[test]
fn missing_tokens_is_an_error_naming_the_key() {
    let mut t = Tiny::standard();
    t.md.remove(KEY_TOKENS);
    assert!(error_of(&t.md).contains("tokenizer.ggml.tokens"));
}

#[test]
fn missing_model_or_merges_is_an_error_naming_the_key() {
    let mut t = Tiny::standard();
    t.md.remove(KEY_MERGES);
    assert!(error_of(&t.md).contains("tokenizer.ggml.merges"));
    t.md.remove(KEY_MODEL);
    assert!(error_of(&t.md).contains("tokenizer.ggml.model"));
}

#[test]
fn unsupported_model_and_pre_are_named() {
    let mut t = Tiny::standard();
    t.md.insert(KEY_PRE.into(), Value::String("klingon-v2".into()));
    assert!(error_of(&t.md).contains("`klingon-v2`"));
    t.md.insert(KEY_MODEL.into(), Value::String("bert".into()));
    assert!(error_of(&t.md).contains("`bert`"));
}

#[test]
fn malformed_merges_are_errors() {
    for (merges, why) in [
        (&["h e", "nospace"][..], "no space"),
        (&["h e", "q☃ e"][..], "\"q☃\" is not a token"),
        (&["e h"][..], "merged pair is not a token"),
    ] {
        let t = Tiny::gpt2(Some("smollm"), &["he"], merges);
        let err = error_of(&t.md);
        assert!(err.contains(why), "{err}");
    }
    let mut t = Tiny::standard();
    t.md.insert(KEY_MERGES.into(), Value::Array(vec![Value::U32(3)]));
    assert!(error_of(&t.md).contains("not a string"));
}

#[test]
fn a_merge_may_start_with_a_space() {
    // llama.cpp splits at the first space after the first byte, so "  x" is (" ", "x").
    let t = Tiny::gpt2(Some("gpt-2"), &[" ", " x"], &["  x"]);
    assert!(from_gguf_metadata(&t.md).is_ok());
}

#[test]
fn duplicate_tokens_are_an_error() {
    let t = Tiny::gpt2(Some("gpt-2"), &["a"], &[]);
    assert!(error_of(&t.md).contains("duplicate token \"a\""));
}

#[test]
fn bad_token_types_are_an_error() {
    let mut t = Tiny::standard();
    t.md.insert(KEY_TOKEN_TYPE.into(), Value::Array(vec![Value::I32(1)]));
    assert!(error_of(&t.md).contains("tokenizer.ggml.token_type"));
}

#[test]
fn arrays_that_disagree_in_length_are_one_line_errors() {
    let mut t = Tiny::standard();
    let Value::Array(tokens) = &t.md[KEY_TOKENS] else {
        unreachable!()
    };
    let n = tokens.len();
    t.md.insert(
        KEY_TOKEN_TYPE.into(),
        Value::Array(vec![Value::I32(1); n + 1]),
    );
    let err = error_of(&t.md);
    assert!(
        err.contains(&format!("{} types for {n} tokens", n + 1)) && !err.contains('\n'),
        "{err}"
    );

    t.md.insert(KEY_TOKENS.into(), Value::Array(vec![]));
    assert!(error_of(&t.md).contains("the vocabulary is empty"));

    for len in [3, 300] {
        let mut md = spm_metadata(&[("▁a", -1.0)]);
        md.insert(KEY_SCORES.into(), Value::Array(vec![Value::F32(0.0); len]));
        let err = error_of(&md);
        assert!(
            err.contains(&format!("{len} scores for 260 tokens")),
            "{err}"
        );
    }
}

#[test]
fn missing_files_say_tokenizer_not_found() {
    let path = std::path::Path::new("/nonexistent/effbench/tokenizer.json");
    let err = from_tokenizer_json(path).unwrap_err().to_string();
    assert!(
        err.starts_with("tokenizer not found: /nonexistent/effbench/tokenizer.json (hint: "),
        "{err}"
    );
    let err = from_gguf_file(&path.with_extension("gguf"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("tokenizer not found: "), "{err}");
}

#[test]
fn a_built_tokenizer_survives_a_tokenizer_json_round_trip() {
    let t = Tiny::standard();
    let tok = t.tokenizer();
    let path = std::env::temp_dir().join(format!("effbench-tokenizer-{}.json", std::process::id()));
    tok.save(&path, false).unwrap();
    let loaded = from_tokenizer_json(&path);
    std::fs::remove_file(&path).unwrap();
    let loaded = loaded.unwrap();
    for text in ["the the 123", "<|im_start|>x<tool>\n\n"] {
        assert_eq!(
            loaded.encode(text, false).unwrap().get_ids(),
            tok.encode(text, false).unwrap().get_ids()
        );
    }
}

/// Found by the `tokenizer_json` fuzz target: tokenizers panicked on a file cut right after
/// `"decoder":`, as a truncated download can be.
#[test]
fn a_tokenizer_json_cut_after_its_decoder_key_is_an_error_not_a_panic() {
    for bytes in [
        &br#"{"decoder":"#[..],
        br#"{"decoder":{"type":"#,
        br#"{"decoder":[1,"#,
        // Found by the same target: a lone surrogate escape under `"decoder"`.
        br#"{"decoder":{"type":"\udc00"}}"#,
    ] {
        let err = from_tokenizer_json_bytes(bytes).unwrap_err().to_string();
        assert!(
            err.starts_with("cannot load tokenizer") && !err.contains('\n'),
            "{err}"
        );
    }
}

#[test]
fn an_invalid_tokenizer_json_is_an_error() {
    let path = std::env::temp_dir().join(format!("effbench-bad-{}.json", std::process::id()));
    std::fs::write(&path, "{ not json").unwrap();
    let err = from_tokenizer_json(&path).unwrap_err().to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(
        err.starts_with("cannot load tokenizer") && err.contains("hint:"),
        "{err}"
    );
}

// SentencePiece ("llama") vocabularies.

/// `<unk>`, `<s>`, `</s>`, 256 byte tokens, then pieces with descending scores unless given.
fn spm_metadata(pieces: &[(&str, f32)]) -> HashMap<String, Value> {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0, 0.0, 0.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (text, score) in pieces {
        tokens.push(text.to_string());
        types.push(1);
        scores.push(*score);
    }
    let mut md = HashMap::new();
    md.insert(KEY_MODEL.into(), Value::String("llama".into()));
    md.insert(
        KEY_TOKENS.into(),
        Value::Array(tokens.into_iter().map(Value::String).collect()),
    );
    md.insert(
        KEY_TOKEN_TYPE.into(),
        Value::Array(types.into_iter().map(Value::I32).collect()),
    );
    md.insert(
        KEY_SCORES.into(),
        Value::Array(scores.into_iter().map(Value::F32).collect()),
    );
    md.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1));
    md.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(2));
    md.insert("tokenizer.ggml.unknown_token_id".into(), Value::U32(0));
    md.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(false));
    md
}

/// A line-by-line port of llama.cpp's `llm_tokenizer_spm_session::tokenize` (with the space
/// prefix and escaping `llama_vocab::impl::tokenize` applies first), as the reference.
fn llama_cpp_spm(md: &HashMap<String, Value>, text: &str) -> Vec<u32> {
    let Value::Array(tokens) = &md[KEY_TOKENS] else {
        unreachable!()
    };
    let Value::Array(scores) = &md[KEY_SCORES] else {
        unreachable!()
    };
    let ids: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string().unwrap().as_str(), i as u32))
        .collect();
    let score = |id: u32| scores[id as usize].to_f32().unwrap();
    let text = format!(" {text}").replace(' ', "▁");

    // (start, len) byte spans; len 0 once merged away.
    let mut sym: Vec<(usize, usize, isize, isize)> = Vec::new();
    for (i, (start, c)) in text.char_indices().enumerate() {
        let next = if start + c.len_utf8() == text.len() {
            -1
        } else {
            i as isize + 1
        };
        sym.push((start, c.len_utf8(), i as isize - 1, next));
    }
    // Max-heap on (score, -left).
    let mut queue: Vec<(f32, usize, usize, usize)> = Vec::new();
    let mut rev_merge: HashMap<String, (usize, usize)> = HashMap::new();
    let try_add = |left: isize,
                   right: isize,
                   sym: &Vec<(usize, usize, isize, isize)>,
                   queue: &mut Vec<(f32, usize, usize, usize)>,
                   rev: &mut HashMap<String, (usize, usize)>| {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (sym[left as usize], sym[right as usize]);
        let s = &text[l.0..l.0 + l.1 + r.1];
        if let Some(&id) = ids.get(s) {
            queue.push((score(id), left as usize, right as usize, s.len()));
            rev.insert(s.to_string(), (left as usize, right as usize));
        }
    };
    for i in 1..sym.len() {
        try_add(i as isize - 1, i as isize, &sym, &mut queue, &mut rev_merge);
    }
    while !queue.is_empty() {
        let best = (0..queue.len())
            .max_by(|&a, &b| {
                queue[a]
                    .0
                    .total_cmp(&queue[b].0)
                    .then(queue[b].1.cmp(&queue[a].1))
            })
            .unwrap();
        let (_, left, right, size) = queue.swap_remove(best);
        if sym[left].1 == 0 || sym[right].1 == 0 || sym[left].1 + sym[right].1 != size {
            continue;
        }
        sym[left].1 += sym[right].1;
        sym[right].1 = 0;
        sym[left].3 = sym[right].3;
        let after = sym[right].3;
        if after >= 0 {
            sym[after as usize].2 = left as isize;
        }
        let (prev, next) = (sym[left].2, sym[left].3);
        try_add(prev, left as isize, &sym, &mut queue, &mut rev_merge);
        try_add(left as isize, next, &sym, &mut queue, &mut rev_merge);
    }
    fn resegment(
        text: &str,
        sym: &[(usize, usize, isize, isize)],
        i: usize,
        ids: &HashMap<&str, u32>,
        rev: &HashMap<String, (usize, usize)>,
        out: &mut Vec<u32>,
    ) {
        let s = &text[sym[i].0..sym[i].0 + sym[i].1];
        if let Some(&id) = ids.get(s) {
            out.push(id);
        } else if let Some(&(l, r)) = rev.get(s) {
            resegment(text, sym, l, ids, rev, out);
            resegment(text, sym, r, ids, rev, out);
        } else {
            out.extend(s.bytes().map(|b| ids[format!("<0x{b:02X}>").as_str()]));
        }
    }
    let mut out = Vec::new();
    let mut i = 0isize;
    while i != -1 && !sym.is_empty() {
        resegment(&text, &sym, i as usize, &ids, &rev_merge, &mut out);
        i = sym[i as usize].3;
    }
    out
}

#[test]
fn sentencepiece_matches_a_port_of_llama_cpp() {
    let pieces = [
        ("▁", -1.0),
        ("a", -2.0),
        ("b", -3.0),
        ("c", -4.0),
        ("ab", -5.0),
        ("bc", -5.5),
        ("abc", -6.0),
        ("▁a", -7.0),
        ("▁ab", -8.0),
        ("▁abc", -9.0),
        ("ca", -10.0),
        ("▁▁", -11.0),
        ("é", -12.0),
        ("▁c", -13.0),
    ];
    let md = spm_metadata(&pieces);
    let tok = from_gguf_metadata(&md).unwrap();
    // "ab" (the best-scored pair) twice, then "abc", then "▁abc".
    let enc = tok.encode("abc abc", false).unwrap();
    assert_eq!(enc.get_tokens(), ["▁abc", "▁abc"]);
    for text in [
        "abc",
        "abc abc",
        "cab bca  abcabc",
        "  leading",
        "é and ü",
        "🙂 x",
        "aaaa bbbb cacaca",
    ] {
        let ours = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ours, llama_cpp_spm(&md, text), "text {text:?}");
        assert_eq!(tok.decode(&ours, false).unwrap(), text);
    }
    // Random strings over the vocabulary's letters, from a fixed-seed generator.
    let alphabet = ['a', 'b', 'c', ' ', 'é', 'x'];
    let mut state = 0x2545_f491_u64;
    for _ in 0..500 {
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) as usize
        };
        let len = 1 + next() % 20;
        let text: String = (0..len)
            .map(|_| alphabet[next() % alphabet.len()])
            .collect();
        let ours = tok.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(ours, llama_cpp_spm(&md, &text), "text {text:?}");
    }
}

#[test]
fn sentencepiece_adds_bos_by_default() {
    let mut md = spm_metadata(&[("a", -1.0)]);
    md.remove("tokenizer.ggml.add_bos_token");
    let tok = from_gguf_metadata(&md).unwrap();
    assert_eq!(tok.encode("a", true).unwrap().get_ids()[0], 1);
    assert!(special_tokens(&md).add_bos);
}

#[test]
fn vocabulary_difference_sees_ids_sizes_and_merges() {
    let standard = Tiny::standard().tokenizer();
    assert_eq!(
        vocabulary_difference(&standard, &Tiny::standard().tokenizer()),
        None
    );
    // Same tokens at the same ids, one merge fewer: " the" becomes "Ġthe", not "Ġ" + "the".
    let fewer_merges = Tiny::gpt2(
        Some("smollm"),
        &["he", "the", "Ġt", "Ġthe"],
        &["h e", "Ġ t", "Ġt he"],
    )
    .tokenizer();
    let why = vocabulary_difference(&standard, &fewer_merges).expect("merges differ");
    assert!(why.contains("splits differently"), "{why}");
    // Two tokens swapped: the first id that differs is named.
    let swapped = Tiny::gpt2(
        Some("smollm"),
        &["the", "he", "Ġt", "Ġthe"],
        &["h e", "t he", "Ġ t", "Ġt he"],
    )
    .tokenizer();
    let why = vocabulary_difference(&standard, &swapped).expect("ids differ");
    assert!(why.contains("token id 256"), "{why}");
    // One extra token: every shared id agrees, the sizes do not.
    let bigger = Tiny::gpt2(
        Some("smollm"),
        &["he", "the", "Ġt", "Ġthe", "the!"],
        &["h e", "t he", "Ġ t", "Ġt he"],
    )
    .tokenizer();
    assert!(vocabulary_difference(&standard, &bigger).is_some());
    assert!(vocabulary_difference(&bigger, &standard).is_some());
}
