//! The hub downloader against a real HTTP server on loopback that serves the hub's URL layout.

mod common;
use common::*;
use std::sync::{Arc, Mutex};
use wattbench_workload::hub::Hub;
use wattbench_workload::*;

/// Each request's path and Authorization header.
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct FakeHub {
    url: String,
    requests: RequestLog,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeHub {
    fn start() -> FakeHub {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let parquet = std::fs::read(fixture("gsm8k_main_test.parquet")).unwrap();
        let (s, r) = (server.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let auth = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.to_string());
                let path = req.url().to_string();
                r.lock().unwrap().push((path.clone(), auth));
                let resp = match path.as_str() {
                    "/api/datasets/openai/gsm8k/revision/main" => tiny_http::Response::from_string(
                        r#"{"sha": "0123abcd", "siblings": [{"rfilename": "README.md"},
                            {"rfilename": "main/test-00000-of-00001.parquet"},
                            {"rfilename": "main/train-00000-of-00001.parquet"},
                            {"rfilename": "socratic/test-00000-of-00001.parquet"}]}"#,
                    ),
                    "/datasets/openai/gsm8k/resolve/0123abcd/main/test-00000-of-00001.parquet"
                    | "/datasets/openai/gsm8k/resolve/0123abcd/main/train-00000-of-00001.parquet" => {
                        tiny_http::Response::from_data(parquet.clone())
                    }
                    "/api/datasets/broken/repo/revision/main" => {
                        tiny_http::Response::from_string("internal error").with_status_code(500)
                    }
                    _ => tiny_http::Response::from_string("not found").with_status_code(404),
                };
                let _ = req.respond(resp);
            }
        });
        FakeHub {
            url,
            requests,
            server,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn options(endpoint: &str, cache: &std::path::Path, offline: bool) -> LoadOptions {
    LoadOptions {
        split: None,
        data_dir: None,
        prompt_field: None,
        reference_field: None,
        gsm8k_instruction: false,
        hf_config: None,
        hub: Hub {
            endpoint: endpoint.to_string(),
            cache: cache.to_path_buf(),
            offline,
            token: Some("hf_test_token".into()),
        },
    }
}

#[test]
fn downloads_once_into_the_hub_cache_and_then_works_offline() {
    let mut hub = FakeHub::start();
    let cache = tempfile::tempdir().unwrap();
    let o = options(&hub.url, cache.path(), false);
    let ds = load(
        &DatasetSpec::parse("hf:openai/gsm8k").unwrap(),
        &LoadOptions {
            split: Some(Split::Test),
            ..o.clone()
        },
    )
    .unwrap();
    assert_eq!(
        ds.records.len(),
        20,
        "the fixture holds the first 20 GSM8K test problems"
    );
    assert!(ds.records[0]
        .prompt
        .starts_with("Janet’s ducks lay 16 eggs"));
    assert_eq!(
        gsm8k_final_answer(ds.records[0].reference.as_deref().unwrap()),
        Some("18")
    );
    let repo = cache.path().join("datasets--openai--gsm8k");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        "0123abcd"
    );
    assert!(repo
        .join("snapshots/0123abcd/main/test-00000-of-00001.parquet")
        .is_file());
    let reqs = hub.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(reqs
        .iter()
        .all(|(_, auth)| auth.as_deref() == Some("Bearer hf_test_token")));

    // The named dataset goes to openai/gsm8k too when no file is local (train is not bundled).
    let train = load(
        &DatasetSpec::parse("gsm8k").unwrap(),
        &LoadOptions {
            split: Some(Split::Train),
            ..o.clone()
        },
    )
    .unwrap();
    assert_eq!(train.records.len(), 20);

    hub.stop();
    // Server gone: the cache alone serves, offline or not.
    for offline in [false, true] {
        let again = load(
            &DatasetSpec::parse("hf:openai/gsm8k").unwrap(),
            &LoadOptions {
                split: Some(Split::Test),
                ..options(&hub.url, cache.path(), offline)
            },
        )
        .unwrap();
        assert_eq!(again.records, ds.records);
    }
}

#[test]
fn unreachable_hub_or_offline_without_cache_says_how_to_supply_the_data() {
    let cache = tempfile::tempdir().unwrap();
    let e = load(
        &DatasetSpec::parse("hf:openai/gsm8k").unwrap(),
        &options("http://127.0.0.1:9", cache.path(), false),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("openai/gsm8k") && e.contains("HF_HUB_OFFLINE=1"),
        "{e}"
    );
    let e = load(
        &DatasetSpec::parse("alpaca").unwrap(),
        &options("http://127.0.0.1:9", cache.path(), true),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("HF_HUB_OFFLINE is set") && e.contains("alpaca:PATH"),
        "{e}"
    );
    let mut hub = FakeHub::start();
    let e = load(
        &DatasetSpec::parse("hf:broken/repo").unwrap(),
        &options(&hub.url, cache.path(), false),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("500"), "{e}");
    hub.stop();
}
