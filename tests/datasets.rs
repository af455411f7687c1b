use crate::util::*;

/// wattbench with the hub pointed at a closed loopback port and an empty cache.
fn offline_bin(dir: &std::path::Path) -> std::process::Command {
    let mut c = bin();
    c.current_dir(dir)
        .env_remove("WATTBENCH_DATA")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("HF_HOME", dir.join("hf"))
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HUB_OFFLINE");
    c
}

#[test]
fn datasets_lists_where_each_dataset_loads_from() {
    let dir = tempfile::tempdir().unwrap();
    let o = offline_bin(dir.path()).arg("datasets").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("bundled GSM8K test split (no download)"),
        "{out}"
    );
    assert!(
        out.contains("hub http://127.0.0.1:9/datasets/tatsu-lab/alpaca"),
        "{out}"
    );
}

#[test]
fn datasets_describes_the_real_alpaca_and_gsm8k() {
    let Some(shared) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let o = offline_bin(dir.path())
        .args(["datasets", "alpaca", "--json", "--data-dir"])
        .arg(shared.join("data"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["records"], 52_002);
    assert!(
        v["prompt"]["tokens"].is_null(),
        "no tokenizer, no token counts"
    );
    let gguf = shared.join("models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
    let o = offline_bin(dir.path())
        .args([
            "datasets",
            "gsm8k",
            "--split",
            "all",
            "--json",
            "--data-dir",
        ])
        .arg(shared.join("data"))
        .arg("--tokenizer")
        .arg(&gguf)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["records"], 8_792);
    assert!(v["prompt"]["tokens"]["mean"].as_f64().unwrap() > 30.0);
    assert_eq!(v["prompt"]["histogram_unit"], "tokens");
    let o = offline_bin(dir.path())
        .args([
            "datasets",
            "synthetic:in=16,out=8",
            "--num-prompts",
            "5",
            "--json",
            "--tokenizer",
        ])
        .arg(&gguf)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["records"], 5);
    assert_eq!(v["prompt"]["tokens"]["min"], 16);
    assert_eq!(v["prompt"]["tokens"]["max"], 16);
}

#[test]
fn datasets_bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"a\"}\n{\"prompt\": \n").unwrap();
    let o = offline_bin(dir.path())
        .args([
            "datasets",
            &format!("jsonl:{}", bad.display()),
            "--prompt-field",
            "prompt",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bad.jsonl, line 2: not valid JSON"),
        "{}",
        stderr(&o)
    );
    let o = offline_bin(dir.path())
        .args(["datasets", "alpaca"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("Alpaca (tatsu-lab/alpaca) was not found locally")
            && err.contains("--data-dir"),
        "{err}"
    );
    let o = offline_bin(dir.path())
        .args(["datasets", "gsm8k", "--num-prompts", "2000"])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("--with-replacement"), "{}", stderr(&o));
    let o = offline_bin(dir.path())
        .args(["datasets", "squad"])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("unknown dataset \"squad\""),
        "{}",
        stderr(&o)
    );
}
