use crate::util::*;
use std::path::PathBuf;

fn gguf() -> Option<PathBuf> {
    Some(shared()?.join("models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

#[test]
fn generate_streams_the_answer_with_speed_and_energy() {
    let Some(model) = gguf() else { return };
    let o = bin()
        .args(["generate", "--model"])
        .arg(format!("gguf:{}", model.display()))
        .args([
            "--prompt",
            "What is the capital of France?",
            "--system",
            "You are a helpful assistant.",
            "--temperature",
            "0",
            "--max-new-tokens",
            "24",
            "--sensor",
            "fake:40",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Paris"), "{}", stdout(&o));
    assert!(
        !stdout(&o).contains("<|im_end|>"),
        "special tokens are not shown"
    );
    let err = stderr(&o);
    assert!(
        err.contains("prompt tokens") && err.contains("tok/s"),
        "{err}"
    );
    assert!(err.contains("J per new token"), "{err}");
}

#[test]
fn generate_explains_missing_tokenizers_and_features() {
    let o = bin()
        .args([
            "generate",
            "--model",
            "synthetic:tiny",
            "--prompt",
            "hi",
            "--sensor",
            "fake:1",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("has no tokenizer") && stderr(&o).contains("--tokenizer"),
        "{}",
        stderr(&o)
    );
    let o = bin()
        .args([
            "generate",
            "--model",
            "synthetic:tiny",
            "--device",
            "cuda",
            "--prompt",
            "hi",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    if !cfg!(feature = "cuda") {
        assert!(stderr(&o).contains("--features cuda"), "{}", stderr(&o));
    }
    let o = bin()
        .args([
            "generate",
            "--model",
            "synthetic:llama-99b",
            "--prompt",
            "hi",
        ])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("llama-7b"), "{}", stderr(&o));
}
