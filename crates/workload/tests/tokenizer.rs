//! The GGUF tokenizer of SmolLM2 against every Alpaca and GSM8K prompt, an independent
//! byte-level BPE written here, and the model's chat template.

mod common;
use common::*;
use std::collections::HashMap;
use wattbench_workload::gguf::{read_metadata, Value};
use wattbench_workload::hub::Hub;
use wattbench_workload::*;

/// GPT-2's byte-to-character table.
fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.into_iter().zip(cs) {
        table[b as usize] = char::from_u32(c).unwrap();
    }
    table
}

/// A deliberately plain byte-level BPE: SmolLM's pre-tokenization (each digit alone, then the
/// GPT-2 regex), then repeated merging of the lowest-ranked adjacent pair.
struct ReferenceBpe {
    vocab: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    table: Vec<char>,
    regex: fancy_regex::Regex,
}

impl ReferenceBpe {
    fn new(tokens: &[String], merges: &[String]) -> Self {
        ReferenceBpe {
            vocab: tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i as u32))
                .collect(),
            ranks: merges
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let first = m.chars().next().unwrap();
                    let cut = first.len_utf8() + m[first.len_utf8()..].find(' ').unwrap();
                    ((m[..cut].to_string(), m[cut + 1..].to_string()), i)
                })
                .collect(),
            table: byte_chars(),
            regex: fancy_regex::Regex::new(
                r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
            )
            .unwrap(),
        }
    }

    fn pieces(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = String::new();
        let flush = |rest: &mut String, out: &mut Vec<String>| {
            for m in self.regex.find_iter(rest) {
                out.push(m.unwrap().as_str().to_string());
            }
            rest.clear();
        };
        for c in text.chars() {
            if c.is_numeric() {
                flush(&mut rest, &mut out);
                out.push(c.to_string());
            } else {
                rest.push(c);
            }
        }
        flush(&mut rest, &mut out);
        out
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for piece in self.pieces(text) {
            let mut syms: Vec<String> = piece
                .bytes()
                .map(|b| self.table[b as usize].to_string())
                .collect();
            loop {
                let best = syms
                    .windows(2)
                    .enumerate()
                    .filter_map(|(i, w)| {
                        self.ranks
                            .get(&(w[0].clone(), w[1].clone()))
                            .map(|r| (*r, i))
                    })
                    .min();
                let Some((_, i)) = best else { break };
                let merged = format!("{}{}", syms[i], syms[i + 1]);
                syms.splice(i..i + 2, [merged]);
            }
            ids.extend(syms.iter().map(|s| self.vocab[s]));
        }
        ids
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn gguf_tokenizer_matches_an_independent_bpe_on_fixed_cases() {
    let Some(shared) = shared() else { return };
    let gguf = smollm_gguf(&shared);
    let tok = Tokenizer::load(&format!("gguf:{}", gguf.display())).unwrap();
    let meta = read_metadata(&gguf).unwrap();
    let reference = ReferenceBpe::new(
        &strings(meta.get("tokenizer.ggml.tokens").unwrap()),
        &strings(meta.get("tokenizer.ggml.merges").unwrap()),
    );
    let cases = [
        "What is the capital of France?",
        "Janet’s ducks lay 16 eggs per day; she sells the remainder for $2 each.",
        " 3",
        "naïve café — déjà vu 😀  spaces\tand\nnewlines\n\n",
        "It's 12,345.67 USD, isn't it? I'll say: \"yes\"!",
        "### Instruction:\nAdd 2+2.\n\n### Response:",
    ];
    for case in cases {
        assert_eq!(
            tok.encode(case).unwrap(),
            reference.encode(case),
            "{case:?}"
        );
    }
    assert_eq!(tok.encode(" 3").unwrap().len(), 2, "\" 3\" is Ġ then 3");
    assert_eq!(
        tok.encode("<|im_start|>user").unwrap()[0],
        1,
        "special tokens are whole"
    );
    assert_eq!(tok.eos_id, Some(2));
    assert!(!tok.add_bos);
}

#[test]
fn every_alpaca_and_gsm8k_prompt_round_trips() {
    let Some(shared) = shared() else { return };
    let tok = Tokenizer::load(&smollm_gguf(&shared).display().to_string()).unwrap();
    let mut o = LoadOptions::from_env();
    o.data_dir = Some(shared.join("data"));
    o.hub = Hub {
        endpoint: "http://127.0.0.1:9".into(),
        cache: std::env::temp_dir().join("wattbench-test-empty-hub"),
        offline: true,
        token: None,
    };
    let mut checked = 0;
    for (name, split) in [("alpaca", None), ("gsm8k", Some(Split::All))] {
        o.split = split;
        let ds = load(&DatasetSpec::parse(name).unwrap(), &o).unwrap();
        for r in &ds.records {
            let ids = tok.encode(&r.prompt).unwrap();
            assert_eq!(
                tok.decode(&ids).unwrap(),
                r.prompt,
                "{name} record {}",
                r.index
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 52_002 + 8_792);
}

#[test]
fn chat_template_of_the_gguf_is_applied() {
    let Some(shared) = shared() else { return };
    let tok = Tokenizer::load(&smollm_gguf(&shared).display().to_string()).unwrap();
    let text = tok
        .apply_chat_template("What is the capital of France?", None)
        .unwrap()
        .unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn synthetic_prompts_have_exact_token_lengths() {
    let Some(shared) = shared() else { return };
    let tok = Tokenizer::load(&smollm_gguf(&shared).display().to_string()).unwrap();
    let spec = DatasetSpec::parse("synthetic:in=normal(64,16),out=uniform(8,32)").unwrap();
    let s = SampleOptions {
        num_prompts: 40,
        seed: 3,
        ..SampleOptions::default()
    };
    let ds = prompts(&spec, &LoadOptions::from_env(), &s, Some(&tok)).unwrap();
    assert_eq!(ds.records.len(), 40);
    for r in &ds.records {
        let want = r.prompt_tokens.as_ref().unwrap();
        assert_eq!(&tok.encode(&r.prompt).unwrap(), want);
        assert!((8..=32).contains(&r.max_new_tokens.unwrap()));
    }
    let lens: Vec<usize> = ds
        .records
        .iter()
        .map(|r| r.prompt_tokens.as_ref().unwrap().len())
        .collect();
    assert!(
        lens.iter().any(|&l| l != lens[0]),
        "normal lengths vary: {lens:?}"
    );
    let again = prompts(&spec, &LoadOptions::from_env(), &s, Some(&tok)).unwrap();
    assert_eq!(again.records, ds.records);
}

#[test]
fn unsupported_or_missing_tokenizers_are_explained() {
    let e = Tokenizer::load("/nonexistent/tokenizer.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("--tokenizer"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("x.gguf");
    std::fs::write(&fake, b"GGML not really").unwrap();
    let e = Tokenizer::load(&fake.display().to_string())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a GGUF file"), "{e}");
}

#[test]
fn tokenizer_json_with_its_config_and_chat_template() {
    let dir = fixture("tiny-tokenizer");
    let tok = Tokenizer::load(&dir.display().to_string()).unwrap();
    let ids = tok.encode("hello world").unwrap();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(tok.decode(&ids).unwrap(), "hello world");
    assert_eq!(tok.eos_id, Some(1));
    assert_eq!(tok.bos_id, Some(0));
    assert!(tok.add_bos);
    assert!(tok.is_special(1) && !tok.is_special(ids[0]));
    assert_eq!(
        tok.apply_chat_template("  hi there ", None)
            .unwrap()
            .unwrap(),
        "<s>[USER] hi there\n[ASSISTANT]"
    );
    let round = "naïve 😀 text\twith\nbytes";
    assert_eq!(tok.decode(&tok.encode(round).unwrap()).unwrap(), round);
}

#[test]
fn the_byte_tokenizer_round_trips_any_text_one_token_per_byte() {
    let t = Tokenizer::load("bytes").unwrap();
    let text = "Natalia sold 48 clips — in April, ¿sí? \n\t😀";
    let ids = t.encode(text).unwrap();
    assert_eq!(ids.len(), text.len(), "one token per UTF-8 byte");
    assert_eq!(ids[0], 3 + u32::from(b'N'));
    assert!(ids.iter().all(|&i| (3..259).contains(&i)));
    assert_eq!(t.decode_text(&ids).unwrap(), text);
    assert_eq!((t.bos_id, t.eos_id, t.add_bos), (Some(1), Some(2), true));
    assert!(t.is_special(2) && !t.is_special(3 + u32::from(b'a')));
    assert_eq!(
        t.decode_text(&[1, 3 + u32::from(b'h'), 3 + u32::from(b'i'), 2])
            .unwrap(),
        "hi"
    );
    assert_eq!(t.vocab_size(), 259);
}

#[test]
fn a_saved_gguf_tokenizer_reads_back_the_same() {
    let Some(dir) = shared() else { return };
    let gguf = dir.join("models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
    let t = Tokenizer::from_gguf(&gguf).unwrap();
    let out = tempfile::tempdir().unwrap();
    t.save(out.path()).unwrap();
    let back = Tokenizer::load(out.path().to_str().unwrap()).unwrap();
    let text = "Natalia sold clips to 48 of her friends in April. ¿Cuántos? 😀 12,345";
    assert_eq!(back.encode(text).unwrap(), t.encode(text).unwrap());
    assert_eq!(
        (back.bos_id, back.eos_id, back.add_bos),
        (t.bos_id, t.eos_id, t.add_bos)
    );
    assert_eq!(back.chat_template(), t.chat_template());
    assert_eq!(back.vocab_size(), t.vocab_size());
}
