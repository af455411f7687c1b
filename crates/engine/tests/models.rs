//! Real and malformed models: the SmolLM2 GGUF answers, broken inputs are explained.

use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use wattbench_engine::*;
use wattbench_workload::hub::Hub;

fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("WATTBENCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if p.join("models").is_dir() {
        Some(p)
    } else {
        eprintln!(
            "skipped: no shared folder at {} (set WATTBENCH_SHARED)",
            p.display()
        );
        None
    }
}

fn load(spec: &str) -> Result<LoadedModel, EngineError> {
    load_model(
        &ModelSpec::parse(spec)?,
        spec,
        &Device::Cpu,
        DType::F32,
        0,
        &Hub::from_env(),
    )
}

#[test]
fn smollm2_gguf_answers_paris_greedily() {
    let Some(shared) = shared() else { return };
    let path = shared.join("models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf");
    let m = load(&format!("gguf:{}", path.display())).unwrap();
    let tok = m.tokenizer.as_ref().unwrap();
    // One user turn of ChatML, without the template's default system message.
    let prompt =
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    let req = Request {
        prompt: tok.encode(prompt).unwrap(),
        max_new_tokens: 24,
    };
    let params = GenerationParams {
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        ignore_eos: false,
        eos_ids: vec![tok.eos_id.unwrap()],
    };
    let out = generate(&m.model, &[req], &params, "smollm2", None, &mut |_, _| {}).unwrap();
    let text = tok.decode(&out.outputs[0].tokens).unwrap();
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(out.outputs[0].finish, FinishReason::Eos, "{text:?}");
}

#[test]
fn synthetic_presets_load_and_generate() {
    let m = load("synthetic:tiny").unwrap();
    assert!(m.synthetic && m.tokenizer.is_none());
    let req = Request {
        prompt: vec![1, 2, 3],
        max_new_tokens: 5,
    };
    let params = GenerationParams {
        temperature: 0.8,
        top_p: 0.95,
        seed: 1,
        ignore_eos: true,
        eos_ids: vec![],
    };
    let out = generate(
        &m.model,
        &[req.clone(), req],
        &params,
        "tiny",
        None,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(out.outputs[0].tokens.len(), 5);
    let again = load("synthetic:tiny").unwrap();
    let (a, b) = (
        again.model.embed.to_vec2::<f32>().unwrap(),
        m.model.embed.to_vec2::<f32>().unwrap(),
    );
    assert_eq!(a, b, "synthetic weights are a function of the seed");
}

#[test]
fn bad_models_and_prompts_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let err = |spec: &str| load(spec).err().map(|e| e.to_string()).unwrap_or_default();

    let e = err(&dir.path().display().to_string());
    assert!(
        e.contains("config.json") && e.contains("cannot read"),
        "{e}"
    );
    std::fs::write(dir.path().join("config.json"), "{\"hidden_size\": 64,").unwrap();
    let e = err(&dir.path().display().to_string());
    assert!(e.contains("config.json: line 1"), "{e}");
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"hidden_size": 30, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10}"#,
    )
    .unwrap();
    assert!(err(&dir.path().display().to_string()).contains("not divisible"));

    // Right config, wrong tensor shape.
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10}"#,
    )
    .unwrap();
    let mut t = std::collections::HashMap::new();
    t.insert(
        "model.embed_tokens.weight".to_string(),
        candle_core::Tensor::zeros((10, 9), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&t, dir.path().join("model.safetensors")).unwrap();
    let e = err(&dir.path().display().to_string());
    assert!(
        e.contains("model weights") && e.contains("embed_tokens") && e.contains("shape"),
        "{e}"
    );

    // A GGUF of another architecture.
    let gguf = dir.path().join("gpt2.gguf");
    let mut f = std::fs::File::create(&gguf).unwrap();
    let arch = candle_core::quantized::gguf_file::Value::String("gpt2".into());
    let q = candle_core::quantized::QTensor::quantize(
        &candle_core::Tensor::zeros((2, 32), DType::F32, &Device::Cpu).unwrap(),
        candle_core::quantized::GgmlDType::F32,
    )
    .unwrap();
    candle_core::quantized::gguf_file::write(
        &mut f,
        &[("general.architecture", &arch)],
        &[("w", &q)],
    )
    .unwrap();
    drop(f);
    let e = err(&format!("gguf:{}", gguf.display()));
    assert!(e.contains("architecture \"gpt2\" is not supported"), "{e}");

    let e = wattbench_engine::device::parse_device("cuda")
        .err()
        .unwrap()
        .to_string();
    if !cfg!(feature = "cuda") {
        assert!(e.contains("--features cuda"), "{e}");
    }
    assert!(err("synthetic:llama-9b").contains("llama-7b"));

    let m = load("synthetic:tiny").unwrap();
    let long = Request {
        prompt: vec![1; 2000],
        max_new_tokens: 100,
    };
    let params = GenerationParams {
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        ignore_eos: true,
        eos_ids: vec![],
    };
    let e = generate(&m.model, &[long], &params, "tiny", None, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("2000 tokens") && e.contains("context of 2048"),
        "{e}"
    );
    let bad = Request {
        prompt: vec![1, 9999],
        max_new_tokens: 1,
    };
    let e = generate(&m.model, &[bad], &params, "tiny", None, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("9999") && e.contains("vocabulary"), "{e}");
}

/// A decode step whose cache column lives on the device is for CUDA graphs: on the CPU (no
/// engine kernels) it is refused with the reason, and the sampler's step count, which such steps
/// advance, moves only for sampled decoding.
#[test]
fn a_decode_step_at_a_device_column_needs_the_cuda_kernels() {
    use candle_core::Tensor;
    use wattbench_engine::model::KvCache;
    let m = load("synthetic:tiny").unwrap();
    let model = &m.model;
    let mut cache = KvCache::new(model, 2, 8).unwrap();
    let tokens = Tensor::new(&[[1u32], [2]], &Device::Cpu).unwrap();
    let positions = Tensor::new(&[[3u32], [3]], &Device::Cpu).unwrap();
    let starts = Tensor::new(&[0u32, 0], &Device::Cpu).unwrap();
    let col = Tensor::new(&[3u32], &Device::Cpu).unwrap();
    let err = model
        .decode_at(&tokens, &positions, &starts, &mut cache, &col)
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs the engine's CUDA kernels"), "{err}");

    let mut sampled = sampling::Sampler::new(0.8, 0.95, 1, &Device::Cpu).unwrap();
    assert_eq!(sampled.next_step(), 1);
    sampled.skip(3);
    assert_eq!(sampled.next_step(), 4);
    let mut greedy = sampling::Sampler::new(0.0, 1.0, 1, &Device::Cpu).unwrap();
    greedy.skip(3);
    assert_eq!(greedy.next_step(), 1);
}
