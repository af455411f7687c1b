//! Energy of other nodes: `wattbench meter --listen` exporters and a dcgm-exporter-format endpoint,
//! all real processes and servers on loopback, read by `measure --sensor prometheus:...`.

use crate::util::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running `wattbench meter` and its metrics URL.
pub struct Meter {
    child: Child,
    pub url: String,
}

impl Drop for Meter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn meter(node: &str, sensor: &str, extra: &[&str]) -> Meter {
    meter_with_env(node, sensor, extra, &[]).0
}

/// A `wattbench meter` with `env`, and the line it printed when it started.
fn meter_with_env(
    node: &str,
    sensor: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Meter, String) {
    let mut c = bin();
    c.args([
        "meter",
        "--listen",
        "127.0.0.1:0",
        "--node-name",
        node,
        "--sensor",
        sensor,
    ])
    .args(extra)
    .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("wattbench meter starts");
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .trim_end_matches(',')
        .to_string();
    (Meter { child, url }, line)
}

/// Serves `body(t)` (t: seconds since the server started) to every request on loopback, with
/// `status`, until the test ends. Returns the URL.
fn static_server(status: u16, body: impl Fn(f64) -> String + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let start = Instant::now();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let text = body(start.elapsed().as_secs_f64());
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    format!("http://{addr}/metrics")
}

/// dcgm-exporter's format: one H100 on node-c drawing 300 W, its counter (mJ) advancing with time.
fn dcgm(t: f64) -> String {
    let labels = "gpu=\"0\",UUID=\"GPU-5f1c\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node-c\",DCGM_FI_DRIVER_VERSION=\"580.159.04\"";
    format!(
        "# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).\n# TYPE DCGM_FI_DEV_SM_CLOCK gauge\n\
         DCGM_FI_DEV_SM_CLOCK{{{labels}}} 1980\n\
         # HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n# TYPE DCGM_FI_DEV_POWER_USAGE gauge\n\
         DCGM_FI_DEV_POWER_USAGE{{{labels}}} 300.000000\n\
         # HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).\n\
         # TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n\
         DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{labels}}} {}\n",
        (5.0e9 + 300.0 * 1000.0 * t).round()
    )
}

fn measure(dir: &std::path::Path, urls: &[&str], seconds: &str) -> std::process::Output {
    let spec = format!("prometheus:{}", urls.join(","));
    run_in(
        dir,
        &[
            "measure",
            "--sensor",
            &spec,
            "--scrape-interval",
            "100ms",
            "--json",
            "--",
            "sleep",
            seconds,
        ],
    )
}

fn device<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("no device {id} in {}", v["devices"]))
}

fn warnings_of<'a>(v: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == kind)
        .collect()
}

#[test]
fn measure_sums_two_meters_and_a_dcgm_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let a = meter("node-a", "fake:100x2", &[]);
    let b = meter("node-b", "fake:50", &[]);
    let c = static_server(200, dcgm);
    let o = measure(dir.path(), &[&a.url, &b.url, &c], "1.5");
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    let wall = v["wall_s"].as_f64().unwrap();
    for (id, watts) in [
        ("node-a/fake0", 100.0),
        ("node-a/fake1", 100.0),
        ("node-b/fake0", 50.0),
        ("node-c/gpu0", 300.0),
    ] {
        let d = device(&v, id);
        assert_eq!(d["energy_method"], "counter", "{id}");
        let e = d["energy_j"].as_f64().unwrap();
        // Readings are filed under the local time each scrape started: within a few ms.
        assert!(
            close(e, watts * wall, 0.03),
            "{id}: {e} J over {wall} s at {watts} W"
        );
    }
    assert!(close(v["energy_j"].as_f64().unwrap(), 550.0 * wall, 0.03));
    assert!(device(&v, "node-c/gpu0")["name"]
        .as_str()
        .unwrap()
        .contains("NVIDIA H100 80GB HBM3 on node-c"));
    let aligned = warnings_of(&v, "scrape_alignment");
    assert_eq!(aligned.len(), 3, "one per endpoint: {}", v["warnings"]);
    for w in aligned {
        assert!(w["max_round_trip_ms"].as_f64().unwrap() < 500.0, "{w}");
        assert!(w["scrapes"].as_u64().unwrap() >= 5, "{w}");
    }
    assert!(
        warnings_of(&v, "endpoint_missed").is_empty(),
        "{}",
        v["warnings"]
    );
}

#[test]
fn an_exporter_that_collects_less_often_than_it_is_scraped_is_reported() {
    // dcgm-exporter answers from a cache between collections: here it collects once a second.
    let c = static_server(200, |t| dcgm(t.floor()));
    let dir = tempfile::tempdir().unwrap();
    let o = measure(dir.path(), &[&c], "1.5");
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    let stale = warnings_of(&v, "stale_scrapes");
    assert_eq!(stale.len(), 1, "{}", v["warnings"]);
    let (n, of) = (
        stale[0]["stale"].as_u64().unwrap(),
        stale[0]["scrapes"].as_u64().unwrap(),
    );
    assert!(n >= of / 2 && n < of, "{n} of {of} scrapes stale");
    assert!(stale[0]["message"].as_str().unwrap().contains("-c MS"));
}

#[test]
fn an_exporter_that_stops_gives_a_warning_and_a_partial_figure() {
    let dir = tempfile::tempdir().unwrap();
    let a = meter("node-a", "fake:100", &[]);
    let b = meter("node-b", "fake:50", &[]);
    let b_url = b.url.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        drop(b); // kills the exporter
    });
    let o = measure(dir.path(), &[&a.url, &b_url], "2");
    killer.join().unwrap();
    assert!(o.status.success(), "the run goes on: {}", stderr(&o));
    let v = json(&o);
    let wall = v["wall_s"].as_f64().unwrap();
    let full = device(&v, "node-a/fake0")["energy_j"].as_f64().unwrap();
    assert!(close(full, 100.0 * wall, 0.03), "{full} J over {wall} s");
    let partial = device(&v, "node-b/fake0")["energy_j"].as_f64().unwrap();
    assert!(
        partial > 5.0 && partial < 50.0 * 1.2,
        "node-b's energy stops when it stops answering: {partial} J"
    );
    let missed = warnings_of(&v, "endpoint_missed");
    assert_eq!(missed.len(), 1, "{}", v["warnings"]);
    assert_eq!(missed[0]["url"], b_url);
    assert!(
        missed[0]["to_s"].is_null(),
        "it never came back: {}",
        missed[0]
    );
    let from = missed[0]["from_s"].as_f64().unwrap();
    assert!((0.3..1.5).contains(&from), "{from}");
    assert!(missed[0]["message"].as_str().unwrap().contains("partial"));
}

#[test]
fn bad_endpoints_are_errors_that_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/metrics", l.local_addr().unwrap())
    };
    let html = static_server(200, |_| {
        "<!DOCTYPE html><html><body>Sign in</body></html>".into()
    });
    let no_energy = static_server(200, |_| {
        "# TYPE up gauge\nup 1\nprocess_cpu_seconds_total 3.5\nDCGM_FI_DEV_SM_CLOCK{gpu=\"0\"} 1980\n".into()
    });
    let not_found = static_server(404, |_| "404 page not found".into());
    for (url, says) in [
        (closed.as_str(), "cannot read the metrics at"),
        (html.as_str(), "HTML"),
        (no_energy.as_str(), "no GPU energy or power"),
        (not_found.as_str(), "HTTP 404"),
        ("node1:9400/metrics", "http://node1:9400/metrics"),
    ] {
        let o = measure(dir.path(), &[url], "0");
        assert!(!o.status.success(), "{url}");
        let e = stderr(&o);
        assert!(e.contains(url) && e.contains(says), "{url}: {e}");
    }
    let o = run_in(
        dir.path(),
        &["measure", "--sensor", "prometheus:", "--", "true"],
    );
    assert!(
        stderr(&o).contains("name the metrics URLs"),
        "{}",
        stderr(&o)
    );
    let o = run_in(
        dir.path(),
        &["meter", "--listen", "not-an-address", "--sensor", "fake:1"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--listen"), "{}", stderr(&o));
}

#[test]
fn a_meter_with_a_token_answers_only_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (m, line) = meter_with_env(
        "n",
        "fake:10",
        &["--token-env", "METER_TOKEN"],
        &[("METER_TOKEN", "s3cret")],
    );
    assert!(line.contains("bearer token required"), "{line}");
    let o = measure(dir.path(), &[&m.url], "0");
    assert!(stderr(&o).contains("wants a token"), "{}", stderr(&o));
    let spec = format!("prometheus:{}", m.url);
    let o = bin()
        .current_dir(dir.path())
        .args([
            "measure",
            "--sensor",
            &spec,
            "--scrape-token-env",
            "T",
            "--json",
            "--",
            "sleep",
            "0.3",
        ])
        .env("T", "s3cret")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(json(&o)["energy_j"].as_f64().unwrap() > 0.0);
}
