use super::*;

/// A small but real BERT-style tokenizer.json (as written by HuggingFace `tokenizers`).
fn bert_json(padding: &str, vocab_extra: &str) -> String {
    let added: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                r#"{{"id":{i},"content":"{t}","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}}"#
            )
        })
        .collect();
    format!(
        r###"{{
  "version": "1.0",
  "truncation": {{"direction":"Right","max_length":3,"strategy":"LongestFirst","stride":0}},
  "padding": {padding},
  "added_tokens": [{added}],
  "normalizer": {{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":true}},
  "pre_tokenizer": {{"type":"BertPreTokenizer"}},
  "post_processor": {{
    "type":"TemplateProcessing",
    "single":[{{"SpecialToken":{{"id":"[CLS]","type_id":0}}}},{{"Sequence":{{"id":"A","type_id":0}}}},{{"SpecialToken":{{"id":"[SEP]","type_id":0}}}}],
    "pair":[{{"SpecialToken":{{"id":"[CLS]","type_id":0}}}},{{"Sequence":{{"id":"A","type_id":0}}}},{{"SpecialToken":{{"id":"[SEP]","type_id":0}}}},{{"Sequence":{{"id":"B","type_id":1}}}},{{"SpecialToken":{{"id":"[SEP]","type_id":1}}}}],
    "special_tokens":{{"[CLS]":{{"id":"[CLS]","ids":[2],"tokens":["[CLS]"]}},"[SEP]":{{"id":"[SEP]","ids":[3],"tokens":["[SEP]"]}}}}
  }},
  "decoder": {{"type":"WordPiece","prefix":"##","cleanup":true}},
  "model": {{
    "type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":100,
    "vocab":{{"[PAD]":0,"[UNK]":1,"[CLS]":2,"[SEP]":3,"[MASK]":4,"hello":5,"world":6,"a":7,"test":8,"##s":9,
      "the":10,"quick":11,"brown":12,"fox":13,".":14,",":15,"!":16,"un":17,"##believ":18,"##able":19,"日":20,"本":21{vocab_extra}}}
  }}
}}"###,
        added = added.join(",")
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn write(json: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, json).unwrap();
    Fixture { _dir: dir, path }
}

fn load(max_length: usize) -> ModelTokenizer {
    let f = write(&bert_json("null", ""));
    ModelTokenizer::from_file(&f.path, max_length).unwrap()
}

fn ids(t: &ModelTokenizer, text: &str) -> Vec<i64> {
    let e = t.encode_batch(&[text]).unwrap();
    e.input_ids
}

#[test]
fn loads_and_reports_properties() {
    let t = load(16);
    assert_eq!(t.max_length(), 16);
    assert_eq!(t.pad_id(), 0);
    assert_eq!(t.vocab_size(), 22);
    assert_eq!(t.special_tokens(), 2);
    // The file's truncation (max_length 3) is ignored.
    assert_eq!(ids(&t, "the quick brown fox"), vec![2, 10, 11, 12, 13, 3]);
}

#[test]
fn known_ids() {
    let t = load(64);
    assert_eq!(ids(&t, "hello world"), vec![2, 5, 6, 3]);
    // Lowercasing, accent stripping, punctuation split, subwords, unknown words, CJK chars.
    assert_eq!(ids(&t, "Héllo, WÖRLD!"), vec![2, 5, 15, 6, 16, 3]);
    assert_eq!(ids(&t, "hellos unbelievable"), vec![2, 5, 9, 17, 18, 19, 3]);
    assert_eq!(ids(&t, "xyz 😀 日本"), vec![2, 1, 1, 20, 21, 3]);
    assert_eq!(ids(&t, ""), vec![2, 3]);
}

#[test]
fn truncation_keeps_special_tokens() {
    let t = load(4);
    assert_eq!(ids(&t, "the quick brown fox"), vec![2, 10, 11, 3]);
    assert_eq!(ids(&t, "hellos unbelievable"), vec![2, 5, 9, 3]);
    assert_eq!(ids(&t, "a"), vec![2, 7, 3]);
    let t = load(2);
    assert_eq!(ids(&t, "the quick brown fox"), vec![2, 3]);
    // Exactly max_length: unchanged.
    let t = load(6);
    assert_eq!(ids(&t, "the quick brown fox"), vec![2, 10, 11, 12, 13, 3]);
    assert_eq!(t.token_counts(&["the quick brown fox x"]).unwrap(), vec![6]);
}

#[test]
fn bad_max_length() {
    let f = write(&bert_json("null", ""));
    for m in [0, 1] {
        let e = ModelTokenizer::from_file(&f.path, m).unwrap_err();
        assert_eq!(e.code(), crate::error::ErrorCode::InvalidRequest, "{e}");
        assert!(
            e.to_string().contains(&format!("max_length ({m})")) || m == 0,
            "{e}"
        );
    }
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope").join("tokenizer.json");
    let e = ModelTokenizer::from_file(&missing, 8).unwrap_err();
    assert_eq!(e.code(), crate::error::ErrorCode::NotFound);
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );

    for bad in [
        "{not json",
        "{\"version\":\"1.0\",\"model\":{\"type\":\"Nope\"}}",
        "[]",
        "",
    ] {
        let f = write(bad);
        let e = ModelTokenizer::from_file(&f.path, 8).unwrap_err();
        assert_eq!(e.code(), crate::error::ErrorCode::Unavailable, "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&f.path.display().to_string()), "{msg}");
    }
    // A directory instead of a file: io error naming it.
    let e = ModelTokenizer::from_file(dir.path(), 8).unwrap_err();
    assert!(
        e.to_string().contains(&dir.path().display().to_string()),
        "{e}"
    );
}

#[test]
fn pad_id_sources() {
    // Padding config wins.
    let pad = r#"{"strategy":"BatchLongest","direction":"Right","pad_to_multiple_of":null,"pad_id":7,"pad_type_id":0,"pad_token":"a"}"#;
    let f = write(&bert_json(pad, ""));
    let t = ModelTokenizer::from_file(&f.path, 8).unwrap();
    assert_eq!(t.pad_id(), 7);
    // Padding in the file is not applied by the tokenizer: we pad to the batch's longest.
    let e = t.encode_batch(&["hello", "hello world"]).unwrap();
    assert_eq!(e.seq_len, 4);
    assert_eq!(e.input_ids, vec![2, 5, 3, 7, 2, 5, 6, 3]);

    // "<pad>" when there is no "[PAD]"; 0 when neither exists.
    let json = bert_json("null", "").replace("[PAD]", "<pad>");
    let f = write(&json);
    let t = ModelTokenizer::from_file(&f.path, 8).unwrap();
    assert_eq!(t.pad_id(), 0);
    let json = bert_json("null", "")
        .replace("\"[PAD]\":0,", "\"[PAD]\":0,\"<pad>\":22,")
        .replace("[PAD]", "[XX]");
    let f = write(&json);
    let t = ModelTokenizer::from_file(&f.path, 8).unwrap();
    assert_eq!(t.pad_id(), 22);
    let json = bert_json("null", ",\"[PAD2]\":22").replace("\"[PAD]\"", "\"[NOPAD]\"");
    let f = write(&json);
    let t = ModelTokenizer::from_file(&f.path, 8).unwrap();
    assert_eq!(t.pad_id(), 0);
    assert_eq!(t.inner().token_to_id("[PAD]"), None);
}

#[test]
fn mixed_batch_padding_mask_lengths() {
    let t = load(5);
    let e = t
        .encode_batch(&["hello world", "a", "", "the quick brown fox"])
        .unwrap();
    assert_eq!(e.batch, 4);
    assert_eq!(e.seq_len, 5);
    assert_eq!(e.lengths, vec![4, 3, 2, 5]);
    #[rustfmt::skip]
    assert_eq!(e.input_ids, vec![
        2, 5, 6, 3, 0,
        2, 7, 3, 0, 0,
        2, 3, 0, 0, 0,
        2, 10, 11, 12, 3,
    ]);
    #[rustfmt::skip]
    assert_eq!(e.attention_mask, vec![
        1, 1, 1, 1, 0,
        1, 1, 1, 0, 0,
        1, 1, 0, 0, 0,
        1, 1, 1, 1, 1,
    ]);
    assert_eq!(e.token_type_ids, vec![0; 20]);
    assert_eq!(
        t.token_counts(&["hello world", "a", "", "the quick brown fox"])
            .unwrap(),
        e.lengths
    );

    let empty = t.encode_batch(&[]).unwrap();
    assert_eq!((empty.batch, empty.seq_len), (0, 0));
    assert!(empty.input_ids.is_empty() && empty.lengths.is_empty());
    assert!(t.token_counts(&[]).unwrap().is_empty());
}

#[test]
fn parallel_batch_matches_sequential() {
    let t = load(12);
    let texts: Vec<String> = (0..200)
        .map(|i| "hello world the quick brown fox ".repeat(i % 5) + &"a ".repeat(i % 13))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert!(parallel(&refs));
    let all = t.encode_batch(&refs).unwrap();
    let counts = t.token_counts(&refs).unwrap();
    assert_eq!(counts, all.lengths);
    assert_eq!(all.seq_len, 12);
    for (i, r) in refs.iter().enumerate() {
        let one = t.encode_batch(&[r]).unwrap();
        let row = &all.input_ids[i * all.seq_len..(i + 1) * all.seq_len];
        assert_eq!(&row[..one.seq_len], &one.input_ids[..]);
        assert!(row[one.seq_len..].iter().all(|&x| x == 0));
        let mrow = &all.attention_mask[i * all.seq_len..(i + 1) * all.seq_len];
        assert_eq!(mrow.iter().sum::<i64>(), all.lengths[i] as i64);
    }
}

#[test]
fn token_counts_cheap_path() {
    let t = load(8);
    assert_eq!(
        t.token_counts(&[
            "hello world",
            "a",
            "",
            "hellos unbelievable the quick brown fox"
        ])
        .unwrap(),
        vec![4, 3, 2, 8]
    );
}

fn u16_ref(text: &str, b: usize) -> usize {
    text[..b].encode_utf16().count()
}

#[test]
fn tokenize_byte_ranges() {
    let t = load(8);
    let s = "héllo wörld 😀 test";
    assert_eq!(
        t.tokenize(s).unwrap(),
        vec![(0, 6), (7, 13), (14, 18), (19, 23)]
    );
    assert_eq!(
        t.tokenize("unbelievable hellos").unwrap(),
        vec![(0, 2), (2, 8), (8, 12), (13, 18), (18, 19)]
    );
    assert!(t.tokenize("").unwrap().is_empty());
    assert!(t.tokenize("   ").unwrap().is_empty());
}

#[test]
fn token_windows_utf16_offsets() {
    let t = load(8);
    let s = "héllo wörld 😀 test";
    let w = t.token_windows(s, 2, 1).unwrap();
    let texts: Vec<&str> = w.iter().map(|c| c.text(s)).collect();
    assert_eq!(texts, vec!["héllo wörld", "wörld 😀", "😀 test"]);
    let u16: Vec<(usize, usize)> = w.iter().map(|c| (c.start, c.end)).collect();
    assert_eq!(u16, vec![(0, 11), (6, 14), (12, 19)]);
    let bytes: Vec<(usize, usize)> = w.iter().map(|c| (c.start_byte, c.end_byte)).collect();
    assert_eq!(bytes, vec![(0, 13), (7, 18), (14, 23)]);
    let units: Vec<u16> = s.encode_utf16().collect();
    for c in &w {
        assert_eq!(c.start, u16_ref(s, c.start_byte));
        assert_eq!(c.end, u16_ref(s, c.end_byte));
        assert_eq!(
            String::from_utf16(&units[c.start..c.end]).unwrap(),
            c.text(s)
        );
    }

    // Subword tokens count individually; windows ignore truncation (max_length 8 here).
    let s = "  unbelievable hellos, the quick brown fox!  ";
    let w = t.token_windows(s, 4, 1).unwrap();
    let texts: Vec<&str> = w.iter().map(|c| c.text(s)).collect();
    assert_eq!(
        texts,
        vec![
            "unbelievable hello",
            "hellos, the",
            "the quick brown fox",
            "fox!"
        ]
    );
    assert_eq!(t.token_windows(s, 100, 0).unwrap().len(), 1);
    assert_eq!(t.token_windows(s, 100, 0).unwrap()[0].text(s), s.trim());

    // No tokens: one window over the whole text.
    let w = t.token_windows("   ", 4, 1).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].start, w[0].end), (0, 3));

    // Bad stride / max_tokens: invalid_request naming both.
    for (m, st) in [(2, 2), (0, 0), (3, 5)] {
        let e = t.token_windows(s, m, st).unwrap_err();
        assert_eq!(e.code(), crate::error::ErrorCode::InvalidRequest);
        assert!(e.to_string().contains(&format!("stride ({st})")), "{e}");
        assert!(e.to_string().contains(&format!("max_tokens ({m})")), "{e}");
    }
}

#[test]
fn sanitize_overlapping_and_mid_char_offsets() {
    let s = "a😀b";
    // Two byte-level pieces of 😀 sharing its range, a mid-char range, out-of-range end.
    let got = sanitize_offsets(s, &[(0, 1), (1, 5), (1, 5), (2, 3), (5, 99)]);
    assert_eq!(got, vec![(0, 1), (1, 5), (5, 5), (5, 5), (5, 6)]);
    assert!(chunk::windows(s, &got, 2, 1).is_ok());
}
