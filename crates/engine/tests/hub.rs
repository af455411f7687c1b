//! `hf:ORG/NAME` models from a real HTTP server on loopback that serves the hub's URL layout.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::sync::Arc;
use wattbench_engine::*;
use wattbench_workload::hub::Hub;

/// A tiny LLaMA checkpoint's files, by name.
fn files() -> HashMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let (h, f, v) = (8usize, 16usize, 12usize);
    let mut t = HashMap::new();
    let mut add = |name: &str, shape: &[usize]| {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 40.0)
            .collect();
        t.insert(
            name.to_string(),
            Tensor::from_vec(data, shape, &Device::Cpu).unwrap(),
        );
    };
    add("model.embed_tokens.weight", &[v, h]);
    for name in ["q_proj", "k_proj", "v_proj", "o_proj"] {
        add(&format!("model.layers.0.self_attn.{name}.weight"), &[h, h]);
    }
    add("model.layers.0.mlp.gate_proj.weight", &[f, h]);
    add("model.layers.0.mlp.up_proj.weight", &[f, h]);
    add("model.layers.0.mlp.down_proj.weight", &[h, f]);
    add("model.layers.0.input_layernorm.weight", &[h]);
    add("model.layers.0.post_attention_layernorm.weight", &[h]);
    add("model.norm.weight", &[h]);
    add("lm_head.weight", &[v, h]);
    candle_core::safetensors::save(&t, dir.path().join("model.safetensors")).unwrap();
    let mut out = HashMap::new();
    out.insert(
        "model.safetensors".to_string(),
        std::fs::read(dir.path().join("model.safetensors")).unwrap(),
    );
    out.insert(
        "config.json".to_string(),
        format!(
            r#"{{"hidden_size": {h}, "intermediate_size": {f}, "num_hidden_layers": 1, "num_attention_heads": 2,
                "vocab_size": {v}, "max_position_embeddings": 32}}"#
        )
        .into_bytes(),
    );
    out
}

#[test]
fn hub_models_download_once_into_the_cache() {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let files = files();
    let s = server.clone();
    let served = std::thread::spawn(move || {
        let mut n = 0;
        for req in s.incoming_requests() {
            n += 1;
            let path = req.url().to_string();
            let resp = if path == "/api/models/acme/tiny-llama/revision/main" {
                tiny_http::Response::from_string(
                    r#"{"sha": "feed01", "siblings": [{"rfilename": "config.json"},
                        {"rfilename": "model.safetensors"}, {"rfilename": "README.md"}]}"#,
                )
            } else if let Some(f) = path.strip_prefix("/acme/tiny-llama/resolve/feed01/") {
                match files.get(f) {
                    Some(b) => tiny_http::Response::from_data(b.clone()),
                    None => tiny_http::Response::from_string("missing").with_status_code(404),
                }
            } else {
                tiny_http::Response::from_string("not found").with_status_code(404)
            };
            let _ = req.respond(resp);
        }
        n
    });
    let cache = tempfile::tempdir().unwrap();
    let hub = Hub {
        endpoint: url,
        cache: cache.path().to_path_buf(),
        offline: false,
        token: None,
    };
    let spec = ModelSpec::parse("hf:acme/tiny-llama").unwrap();
    let m = load_model(
        &spec,
        "hf:acme/tiny-llama",
        &Device::Cpu,
        DType::F32,
        0,
        &hub,
    )
    .unwrap();
    assert_eq!(m.model.cfg.hidden_size, 8);
    assert!(!m.synthetic);
    let snap = cache
        .path()
        .join("models--acme--tiny-llama/snapshots/feed01");
    assert!(snap.join("model.safetensors").is_file() && snap.join("config.json").is_file());
    assert!(
        !snap.join("README.md").exists(),
        "only the files a model needs are fetched"
    );
    server.unblock();
    assert_eq!(served.join().unwrap(), 3, "one listing and two files");

    // Offline, from the cache alone.
    let offline = Hub {
        offline: true,
        ..hub
    };
    let again = load_model(
        &spec,
        "hf:acme/tiny-llama",
        &Device::Cpu,
        DType::F32,
        0,
        &offline,
    )
    .unwrap();
    assert_eq!(again.model.cfg, m.model.cfg);
    let empty = tempfile::tempdir().unwrap();
    let none = Hub {
        cache: empty.path().to_path_buf(),
        ..offline
    };
    let e = load_model(
        &spec,
        "hf:acme/tiny-llama",
        &Device::Cpu,
        DType::F32,
        0,
        &none,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("HF_HUB_OFFLINE"), "{e}");
}
