//! `wattbench serve` on loopback, driven by `wattbench run --engine openai`: the real HTTP path
//! end to end, with the energy of a simulated sensor on the same clock.

use crate::util::{bin, count, json, stderr};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

/// A running `wattbench serve`; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut c = bin();
    c.args([
        "serve",
        "--model",
        "synthetic:tiny",
        "--port",
        "0",
        "--max-batch",
        "4",
    ])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(i) = line.find("http://") {
            break line[i..].split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining its stderr so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

fn drive(dir: &Path, url: &str, extra: &[&str]) -> std::process::Output {
    bin()
        .current_dir(dir)
        .env_remove("OPENAI_API_KEY")
        .args([
            "run",
            "--engine",
            "openai",
            "--base-url",
            url,
            "--model",
            "synthetic:tiny",
            "--sensor",
            "fake:100",
            "--num-prompts",
            "12",
            "--batch-size",
            "4",
            "--max-new-tokens",
            "8",
            "--ignore-eos",
            "--db",
            "runs.db",
            "--json",
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn run_drives_serve_and_meters_it_on_the_same_clock() {
    let server = serve(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = drive(dir.path(), &server.url, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["responses"], 12, "{v}");
    assert_eq!(
        v["output_tokens"], 96,
        "12 answers of exactly 8 tokens: {v}"
    );
    let wall = v["wall_s"].as_f64().unwrap();
    let energy = v["energy_j"].as_f64().unwrap();
    assert!(
        (energy - 100.0 * wall).abs() < 0.05 * energy,
        "{energy} J over {wall} s"
    );
    let s = &v["serving"][0]["summary"];
    assert_eq!(
        (s["requests"].as_u64(), s["succeeded"].as_u64()),
        (Some(12), Some(12))
    );
    for key in ["ttft_s", "itl_s", "tpot_s", "e2e_s"] {
        assert!(s[key]["p50"].as_f64().unwrap() > 0.0, "{key}: {s}");
    }
    assert!(s["ttft_s"]["p99"].as_f64() <= s["e2e_s"]["p99"].as_f64());
    let db = dir.path().join("runs.db");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM requests WHERE ttft_s > 0 AND tpot_s > 0"
        ),
        12
    );
    // Every joule of the window while requests were in flight went to one of them.
    let shared: f64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT sum(energy_j) FROM requests", [], |r| r.get(0))
        .unwrap();
    assert!(
        shared <= energy * 1.0001 && shared > 0.9 * energy,
        "{shared} of {energy} J"
    );
    let cfg: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT config_json FROM runs", [], |r| r.get(0))
        .unwrap();
    assert!(
        cfg.contains(&format!("\"base_url\":\"{}\"", server.url)),
        "{cfg}"
    );
}

#[test]
fn a_run_against_a_server_on_other_nodes_reports_each_node() {
    let server = serve(&[], &[]);
    let a = crate::remote_meters::meter("node-a", "fake:200x2", &[]);
    let b = crate::remote_meters::meter("node-b", "fake:300", &[]);
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("prometheus:{},{}", a.url, b.url);
    let out = drive(
        dir.path(),
        &server.url,
        &["--sensor", &spec, "--scrape-interval", "100ms"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let tokens = v["output_tokens"].as_f64().unwrap();
    let nodes = v["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(names, ["local", "node-a", "node-b"], "{}", v["nodes"]);
    let total: f64 = nodes.iter().map(|n| n["energy_j"].as_f64().unwrap()).sum();
    let energy = v["energy_j"].as_f64().unwrap();
    assert!(
        (total - energy).abs() < 1e-6 * energy,
        "{total} vs {energy}"
    );
    let wall = v["wall_s"].as_f64().unwrap();
    for (n, watts, devices) in [(&nodes[1], 400.0, 2), (&nodes[2], 300.0, 1)] {
        assert_eq!(n["devices"], devices);
        let e = n["energy_j"].as_f64().unwrap();
        assert!((e - watts * wall).abs() < 0.05 * e, "{n} over {wall} s");
        let per_token = n["j_per_token"].as_f64().unwrap();
        assert!((per_token - e / tokens).abs() < 1e-9 * per_token, "{n}");
    }
    let per_token = v["j_per_token"].as_f64().unwrap();
    assert!(
        (per_token - energy / tokens).abs() < 1e-6 * per_token,
        "the whole deployment"
    );
}

#[test]
fn chat_whole_responses_and_an_open_loop() {
    let server = serve(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let out = drive(
        dir.path(),
        &server.url,
        &["--endpoint", "chat", "--no-stream"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["output_tokens"], 96);
    let s = &v["serving"][0]["summary"];
    assert!(
        s["ttft_s"].is_null(),
        "no first token without a stream: {s}"
    );
    assert!(s["e2e_s"]["p50"].as_f64().unwrap() > 0.0);
    let out = drive(
        dir.path(),
        &server.url,
        &[
            "--request-rate",
            "20,40",
            "--arrivals",
            "constant",
            "--warmup",
            "0",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // A rate sweep: one point per rate, each its own run.
    let text = crate::util::stdout(&out);
    let points: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(points.len(), 2);
    for (p, rate) in points.iter().zip([20.0, 40.0]) {
        assert_eq!(p["config"]["server"]["request_rate"], rate);
        assert_eq!(p["serving"][0]["summary"]["succeeded"], 12);
    }
    assert_ne!(points[0]["key"], points[1]["key"]);
    let latencies: Vec<f64> = {
        let db = dir.path().join("runs.db");
        let conn = rusqlite::Connection::open(db).unwrap();
        let id: i64 = conn
            .query_row("SELECT max(id) FROM runs", [], |r| r.get(0))
            .unwrap();
        let mut st = conn
            .prepare("SELECT latency_s FROM requests WHERE run_id = ?1")
            .unwrap();
        st.query_map([id], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(latencies.len(), 12);
    assert!(latencies.iter().all(|&l| l > 0.0));
}

#[test]
fn the_api_key_is_required_and_failures_decide_the_exit_code() {
    let server = serve(&["--api-key-env", "TEST_KEY"], &[("TEST_KEY", "sesame")]);
    let dir = tempfile::tempdir().unwrap();
    // Without the key the warm-up fails and says why.
    let out = drive(dir.path(), &server.url, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("http_401"), "{}", stderr(&out));
    // Without a warm-up every request fails, is counted, and the run fails.
    let out = drive(dir.path(), &server.url, &["--warmup", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(
        v["serving"][0]["summary"]["failures"]["http_401"], 12,
        "{v}"
    );
    // With it, all is well.
    let mut c = bin();
    let out = c
        .current_dir(dir.path())
        .env("MY_KEY", "sesame")
        .args([
            "run",
            "--engine",
            "openai",
            "--base-url",
            &server.url,
            "--model",
            "synthetic:tiny",
            "--api-key-env",
            "MY_KEY",
            "--sensor",
            "fake:100",
            "--num-prompts",
            "4",
            "--batch-size",
            "4",
            "--max-new-tokens",
            "4",
            "--db",
            "runs.db",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn bad_server_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = drive(dir.path(), "http://127.0.0.1:9", &["--model", "x"]);
    assert!(!o.status.success());
    let o = bin()
        .current_dir(dir.path())
        .args(["run", "--engine", "openai", "--model", "m"])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("needs --base-url"), "{}", stderr(&o));
    let o = bin()
        .current_dir(dir.path())
        .args([
            "run",
            "--engine",
            "openai",
            "--base-url",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert!(stderr(&o).contains("needs --model NAME"), "{}", stderr(&o));
    // Server flags without a server.
    let o = bin()
        .current_dir(dir.path())
        .args(["run", "--model", "synthetic:tiny", "--request-rate", "2"])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("--request-rate is for --engine openai"),
        "{}",
        stderr(&o)
    );
    // Nothing listens on port 9: the warm-up's connection failures are the error.
    let o = drive(dir.path(), "http://127.0.0.1:9", &[]);
    assert!(stderr(&o).contains("connection"), "{}", stderr(&o));
    // The wrong model name: the server's 404 says which it serves.
    let server = serve(&[], &[]);
    let o = bin()
        .current_dir(dir.path())
        .args([
            "run",
            "--engine",
            "openai",
            "--base-url",
            &server.url,
            "--model",
            "llama",
            "--sensor",
            "fake:1",
            "--num-prompts",
            "2",
            "--batch-size",
            "2",
            "--max-new-tokens",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("http_404") && stderr(&o).contains("synthetic:tiny"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_sweep_over_concurrencies_against_a_server_resumes() {
    let server = serve(&[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let sweep = |extra: &[&str]| {
        bin()
            .current_dir(dir.path())
            .env_remove("OPENAI_API_KEY")
            .args([
                "sweep",
                "--engine",
                "openai",
                "--base-url",
                &server.url,
                "--model",
                "synthetic:tiny",
                "--sensor",
                "fake:100",
                "--num-prompts",
                "8",
                "--max-new-tokens",
                "4",
                "--ignore-eos",
                "--db",
                "runs.db",
                "--json",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = sweep(&["--batch-size", "2,4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for (p, c) in points.iter().zip([2, 4]) {
        assert_eq!(p["point"]["max_concurrency"], c);
        assert_eq!(p["skipped"], false);
        assert_eq!(p["output_tokens"], 32, "{p}");
        assert!(
            p["serving"][0]["summary"]["ttft_s"]["p50"]
                .as_f64()
                .unwrap()
                > 0.0
        );
    }
    let db = dir.path().join("runs.db");
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs WHERE sweep IS NOT NULL"),
        2
    );
    // Rerun: both points are done.
    let again = json(&sweep(&["--batch-size", "2,4"]));
    assert!(again["points"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["skipped"] == true));
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), 2);
    // Rates are the points of an open loop; a list of concurrencies beside them is refused.
    let out = sweep(&["--request-rate", "50,100", "--batch-size", "2,4"]);
    assert!(
        stderr(&out).contains("drop the list of --batch-size"),
        "{}",
        stderr(&out)
    );
    let out = sweep(&["--request-rate", "50,100", "--max-concurrency", "4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let rates: Vec<f64> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["point"]["request_rate"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, [50.0, 100.0]);
    // The report tells the loads apart.
    let out = bin()
        .current_dir(dir.path())
        .args(["report", "--db", "runs.db", "--out", "rep"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let md = std::fs::read_to_string(dir.path().join("rep/report.md")).unwrap();
    for want in [
        "| 2 in flight |",
        "| 4 in flight |",
        "| 50/s, ≤ 4 in flight |",
        "| 100/s, ≤ 4 in flight |",
    ] {
        assert!(md.contains(want), "{want} missing:\n{md}");
    }
    // The embedded engine refuses the server's flags.
    let out = bin()
        .current_dir(dir.path())
        .args([
            "sweep",
            "--model",
            "synthetic:tiny",
            "--max-concurrency",
            "4",
        ])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("--max-concurrency is for --engine openai"),
        "{}",
        stderr(&out)
    );
}
