//! GPU power limits over simulated GPUs (`--power-control fake:FILE`, a JSON file that records
//! every set call): what a run or sweep changes, and that it always puts it back.

use crate::util::{bin, count, json, stderr, stdout};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A folder with simulated GPUs (two H100s unless changed) and its own journal.
struct Rig {
    dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        let rig = Rig {
            dir: tempfile::tempdir().unwrap(),
        };
        let gpu = |i: u32| {
            json!({"index": i, "uuid": format!("GPU-fake-{i:04}"), "name": "Simulated H100",
                   "limit_mw": 700000, "enforced_mw": 700000, "default_mw": 700000,
                   "min_mw": 200000, "max_mw": 700000})
        };
        rig.write_state(&json!({ "gpus": [gpu(0), gpu(1)] }));
        rig
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("gpus.json")).unwrap()).unwrap()
    }

    fn write_state(&self, v: &Value) {
        std::fs::write(self.path("gpus.json"), v.to_string()).unwrap();
    }

    /// Sets `path` of the state file (`gpus/0/min_mw`, or a new top-level key) to `value`.
    fn set(&self, path: &str, value: Value) {
        let mut s = self.state();
        match s.pointer_mut(&format!("/{path}")) {
            Some(v) => *v = value,
            None => {
                s[path] = value;
            }
        }
        self.write_state(&s);
    }

    fn limit(&self, gpu: usize) -> i64 {
        self.state()["gpus"][gpu]["limit_mw"].as_i64().unwrap()
    }

    /// Every set call as (GPU, mW, succeeded).
    fn calls(&self) -> Vec<(i64, i64, bool)> {
        self.state()["calls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["index"].as_i64().unwrap(),
                            c["mw"].as_i64().unwrap(),
                            c["ok"].as_bool().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn journal(&self) -> PathBuf {
        self.path("journal.json")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.current_dir(self.dir.path())
            .env("WATTBENCH_POWER_JOURNAL", self.journal())
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// A CPU sweep of the tiny model capping simulated GPU 0, plus `extra`.
    fn sweep_args<'a>(&self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec![
            "sweep",
            "--model",
            "synthetic:tiny",
            "--device",
            "cpu",
            "--sensor",
            "fake:100",
            "--num-prompts",
            "4",
            "--batch-size",
            "2",
            "--max-new-tokens",
            "4,8",
            "--power-control",
            "fake:gpus.json",
            "--power-gpus",
            "0",
            "--db",
            "runs.db",
        ];
        a.extend_from_slice(extra);
        a
    }

    /// Starts a long sweep (hundreds of one-prompt batches) at 300 W and waits until GPU 0 is
    /// capped.
    fn start_long_sweep(&self) -> Child {
        let child = self
            .command(&[
                "sweep",
                "--model",
                "synthetic:tiny",
                "--device",
                "cpu",
                "--sensor",
                "fake:100",
                "--num-prompts",
                "1000",
                "--with-replacement",
                "--batch-size",
                "1",
                "--max-new-tokens",
                "64",
                "--power-control",
                "fake:gpus.json",
                "--power-gpus",
                "0",
                "--power-limit",
                "300",
                "--allow-power-changes",
                "--db",
                "runs.db",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while self.limit(0) != 300_000 {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "the sweep never capped GPU 0"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A few batches run at the limit.
        std::thread::sleep(Duration::from_millis(1500));
        child
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

#[test]
fn a_sweep_over_limits_sets_each_in_turn_and_restores_the_original() {
    let rig = Rig::new();
    let out = rig.run(&rig.sweep_args(&[
        "--power-limit",
        "300,50%",
        "--allow-power-changes",
        "--json",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    // 300 W, then 50% of 700 W, then back to 700 W; GPU 1 untouched.
    assert_eq!(
        rig.calls(),
        [(0, 300_000, true), (0, 350_000, true), (0, 700_000, true)]
    );
    assert_eq!(rig.limit(0), 700_000);
    assert!(!rig.journal().exists());
    assert!(
        stderr(&out).contains("power limits restored: gpu0 (Simulated H100, GPU-fake-0000): 700 W")
    );
    let v = json(&out);
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 4);
    let limits: Vec<&str> = points
        .iter()
        .map(|p| p["point"]["power_limit"].as_str().unwrap())
        .collect();
    assert_eq!(limits, ["300W", "300W", "50%", "50%"]);
    let db = rig.path("runs.db");
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs WHERE status = 'complete'"),
        4
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs WHERE json_extract(config_json, '$.power_limit.limits_w[0]') = 350.0"),
        2
    );
    // Rerun: every point is done, nothing is set.
    let again = rig.run(&rig.sweep_args(&["--power-limit", "300,50%", "--allow-power-changes"]));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(rig.calls().len(), 3);
    // The report's Table III compares 350 W (50%) with 300 W... the higher limit is the reference.
    let rep = rig.run(&["report", "--db", "runs.db", "--out", "rep"]);
    assert!(rep.status.success(), "{}", stderr(&rep));
    let md = std::fs::read_to_string(rig.path("rep/report.md")).unwrap();
    let table: Vec<&str> = md
        .lines()
        .skip_while(|l| !l.starts_with("## Power caps"))
        .take_while(|l| !l.starts_with("## GPU utilization"))
        .filter(|l| l.starts_with("| synthetic:tiny"))
        .collect();
    assert_eq!(table.len(), 2, "{md}");
    assert!(
        table.iter().all(|l| l.contains("| 300 W | 50% (350 W) |")),
        "{table:?}"
    );
    assert!(rig.path("rep/figures/table3-energy-vs-time.svg").exists());
}

#[test]
fn run_takes_limits_too() {
    let rig = Rig::new();
    let out = rig.run(&[
        "run",
        "--model",
        "synthetic:tiny",
        "--device",
        "cpu",
        "--sensor",
        "fake:100",
        "--num-prompts",
        "2",
        "--batch-size",
        "2",
        "--max-new-tokens",
        "4",
        "--repeats",
        "1",
        "--power-control",
        "fake:gpus.json",
        "--power-gpus",
        "1",
        "--power-limit",
        "250W",
        "--allow-power-changes",
        "--db",
        "runs.db",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("power limit 250W (250 W)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(rig.calls(), [(1, 250_000, true), (1, 700_000, true)]);
    assert!(!rig.journal().exists());
}

#[test]
fn an_error_mid_sweep_restores_the_limits_and_keeps_what_was_measured() {
    let rig = Rig::new();
    // The second set call (50%) fails.
    rig.set("fail_calls", json!([2]));
    let out = rig.run(&rig.sweep_args(&["--power-limit", "300,50%", "--allow-power-changes"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("setting the power limit 50%")
            && err.contains("simulated failure of set call 2"),
        "{err}"
    );
    assert_eq!(
        rig.calls(),
        [(0, 300_000, true), (0, 350_000, false), (0, 700_000, true)]
    );
    assert_eq!(rig.limit(0), 700_000);
    assert!(!rig.journal().exists());
    assert_eq!(
        count(
            &rig.path("runs.db"),
            "SELECT count(*) FROM runs WHERE status = 'complete'"
        ),
        2
    );
}

#[test]
fn a_limit_the_gpu_does_not_enforce_stops_the_sweep() {
    let rig = Rig::new();
    rig.set("enforce", json!(false));
    let out = rig.run(&rig.sweep_args(&["--power-limit", "300", "--allow-power-changes"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the GPU enforces 700 W"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count(&rig.path("runs.db"), "SELECT count(*) FROM runs"), 0);
    assert_eq!(rig.limit(0), 700_000);
    assert!(!rig.journal().exists());
}

#[test]
fn ctrl_c_stops_after_the_batch_and_restores() {
    let rig = Rig::new();
    let child = rig.start_long_sweep();
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(rig.limit(0), 700_000);
    assert_eq!(rig.calls(), [(0, 300_000, true), (0, 700_000, true)]);
    assert!(!rig.journal().exists());
    // What was measured before the signal is stored.
    assert!(count(&rig.path("runs.db"), "SELECT count(*) FROM batches") > 0);
}

#[test]
fn a_second_sigterm_ends_at_once_and_still_restores() {
    let rig = Rig::new();
    let child = rig.start_long_sweep();
    signal(&child, libc::SIGTERM);
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(rig.limit(0), 700_000);
    assert!(!rig.journal().exists());
}

#[test]
fn after_sigkill_the_next_start_restores_from_the_journal() {
    let rig = Rig::new();
    let mut child = rig.start_long_sweep();
    child.kill().unwrap();
    child.wait().unwrap();
    // Left changed, with a journal naming only the GPU that was changed, by its UUID.
    assert_eq!(rig.limit(0), 300_000);
    let j: Value = serde_json::from_str(&std::fs::read_to_string(rig.journal()).unwrap()).unwrap();
    assert_eq!(
        j["gpus"],
        json!([{"index": 0, "uuid": "GPU-fake-0000", "original_mw": 700000}])
    );
    assert_eq!(j["pid"], json!(child.id()));
    let uuids: Vec<Value> = rig.state()["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["uuid"].clone())
        .collect();
    assert!(uuids.contains(&j["gpus"][0]["uuid"]));
    // Any command restores it.
    let out = rig.run(&["datasets"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "wattbench (pid {}) changed GPU power limits",
            child.id()
        )),
        "{err}"
    );
    assert!(
        err.contains("gpu0 (Simulated H100, GPU-fake-0000): 700 W"),
        "{err}"
    );
    assert_eq!(rig.limit(0), 700_000);
    assert!(!rig.journal().exists());
    let show = rig.run(&["power-limit", "show", "--power-control", "fake:gpus.json"]);
    assert!(
        stdout(&show).contains("no journal of changes"),
        "{}",
        stdout(&show)
    );
}

#[test]
fn power_limit_restore_skips_gpus_that_are_gone_and_restores_the_rest() {
    let rig = Rig::new();
    rig.set("gpus/1/limit_mw", json!(400_000));
    rig.set("gpus/1/enforced_mw", json!(400_000));
    let state = rig.path("gpus.json");
    std::fs::write(
        rig.journal(),
        json!({"version": 1, "pid": 4194305, "control": format!("fake:{}", state.display()), "started": 0,
               "gpus": [{"index": 1, "uuid": "GPU-fake-0001", "original_mw": 700000},
                        {"index": 7, "uuid": "GPU-not-here", "original_mw": 500000}]})
        .to_string(),
    )
    .unwrap();
    // `power-limit restore` (the start itself restores first, and says so).
    let out = rig.run(&["power-limit", "restore"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("GPU-not-here (gpu7 then) is not on this machine now"),
        "{all}"
    );
    assert_eq!(rig.limit(1), 700_000);
    assert_eq!(rig.calls(), [(1, 700_000, true)]);
    assert!(!rig.journal().exists());
}

/// Runs a refused sweep; nothing may have been set and no journal written.
fn refused(rig: &Rig, extra: &[&str]) -> String {
    let out = rig.run(&rig.sweep_args(extra));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(rig.calls().is_empty());
    assert!(!rig.journal().exists());
    assert!(!rig.path("runs.db").exists(), "refused before anything ran");
    stderr(&out)
}

#[test]
fn changes_are_refused_with_the_reason() {
    let rig = Rig::new();
    let e = refused(&rig, &["--power-limit", "300"]);
    assert!(e.contains("opt-in: add --allow-power-changes"), "{e}");
    let e = refused(&rig, &["--power-limit", "150", "--allow-power-changes"]);
    assert!(
        e.contains("150 W is outside this GPU's bounds of 200–700 W"),
        "{e}"
    );
    let e = refused(&rig, &["--power-limit", "20%", "--allow-power-changes"]);
    assert!(e.contains("20% (140 W) is outside"), "{e}");
    let e = refused(&rig, &["--power-limit", "fast", "--allow-power-changes"]);
    assert!(e.contains("invalid power limit \"fast\""), "{e}");
    let e = refused(
        &rig,
        &[
            "--power-limit",
            "300",
            "--allow-power-changes",
            "--power-gpus",
            "5",
        ],
    );
    assert!(e.contains("GPU 5 does not exist (GPUs here: 0, 1)"), "{e}");
    rig.set("may_change", json!(false));
    let e = refused(&rig, &["--power-limit", "300", "--allow-power-changes"]);
    assert!(e.contains("needs root"), "{e}");
    rig.set("may_change", json!(true));
    rig.set("gpus/0/min_mw", Value::Null);
    let e = refused(&rig, &["--power-limit", "300", "--allow-power-changes"]);
    assert!(e.contains("does not support power management"), "{e}");
    // A CPU run caps no GPU unless told which.
    let out = rig.run(&[
        "run",
        "--model",
        "synthetic:tiny",
        "--device",
        "cpu",
        "--power-control",
        "fake:gpus.json",
        "--power-limit",
        "300",
        "--allow-power-changes",
    ]);
    assert!(stderr(&out).contains("--power-gpus"), "{}", stderr(&out));
    assert!(rig.calls().is_empty());
}

#[test]
fn dry_run_shows_the_real_limits_and_bounds_and_changes_nothing() {
    let rig = Rig::new();
    rig.set("gpus/0/limit_mw", json!(650_000));
    rig.set("gpus/0/enforced_mw", json!(650_000));
    let out = rig.run(&rig.sweep_args(&["--power-limit", "100%,70%,250", "--dry-run"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("gpu0 (Simulated H100, GPU-fake-0000): limit 650 W, enforced 650 W, default 700 W, bounds 200–700 W"), "{text}");
    assert!(
        text.contains("100%: would set 700 W")
            && text.contains("70%: would set 490 W")
            && text.contains("250W: would set 250 W"),
        "{text}"
    );
    assert!(rig.calls().is_empty());
    assert!(!rig.path("runs.db").exists());
    assert!(!rig.journal().exists());
}
