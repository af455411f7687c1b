//! `wattbench meter --listen ADDR`: this node's sensors as a Prometheus endpoint, for nodes
//! without dcgm-exporter (and for CPU and DRAM energy, which it does not export). Every scrape
//! reads every sensor at that moment; GPUs carry dcgm-exporter's metric names, units and labels.

use crate::cli::MeterArgs;
use crate::meters;
use crate::serve::http;
use anyhow::Context as _;
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wattbench_meter::prometheus::expose::render;
use wattbench_meter::{EnergySensor, ReadKind, SensorSet};

struct Exporter {
    sensors: Mutex<SensorSet>,
    start: Instant,
    node: String,
    token: Option<String>,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

pub fn run(args: MeterArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.token_env {
        Some(var) => Some(std::env::var(var).with_context(|| {
            format!("--token-env {var}: the environment variable {var} is not set; export it with the token scrapers must send")
        })?),
        None => None,
    };
    let sensors = meters::open(&args.sensor)?;
    if sensors.devices().is_empty() {
        anyhow::bail!(
            "no sensor works on this node, so there is nothing to serve; run `wattbench devices` to see why"
        );
    }
    let listener = TcpListener::bind(&args.listen).with_context(|| {
        format!(
            "listening on {}; pick another --listen address (port 0 takes a free one)",
            args.listen
        )
    })?;
    let node = args.node_name.clone().unwrap_or_else(host_name);
    let ids: Vec<String> = sensors.devices().iter().map(|d| d.id.clone()).collect();
    let addr = listener.local_addr()?;
    eprintln!(
        "serving {} device(s) of node {node} ({}) on http://{addr}/metrics{}",
        ids.len(),
        ids.join(", "),
        if token.is_some() {
            ", bearer token required"
        } else {
            ""
        }
    );
    let exporter = Arc::new(Exporter {
        sensors: Mutex::new(sensors),
        start: Instant::now(),
        node,
        token,
    });
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let exporter = exporter.clone();
        std::thread::spawn(move || {
            let _ = answer(&exporter, &stream);
        });
    }
    Ok(ExitCode::SUCCESS)
}

fn answer(e: &Exporter, stream: &TcpStream) -> std::io::Result<()> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let req = match http::read(stream) {
        Ok(r) => r,
        Err(why) => return http::text(stream, 400, PLAIN, &format!("{why}\n")),
    };
    if let Some(token) = &e.token {
        let sent = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "));
        if sent != Some(token.as_str()) {
            return http::text(stream, 401, PLAIN, "send Authorization: Bearer TOKEN\n");
        }
    }
    let path = req.path.split('?').next().unwrap_or("");
    if req.method != "GET" || !matches!(path, "/metrics" | "/") {
        return http::text(stream, 404, PLAIN, "the metrics are at GET /metrics\n");
    }
    let mut sensors = e.sensors.lock().unwrap_or_else(|p| p.into_inner());
    let t_s = e.start.elapsed().as_secs_f64();
    match sensors.read(t_s, ReadKind::Edge) {
        Ok(readings) => {
            let body = render(sensors.devices(), &readings, &e.node);
            drop(sensors);
            http::text(
                stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
        }
        Err(err) => {
            drop(sensors);
            http::text(
                stream,
                503,
                PLAIN,
                &format!("reading the sensors failed: {err}\n"),
            )
        }
    }
}
