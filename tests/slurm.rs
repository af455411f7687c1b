//! `wattbench sweep --slurm` on a real Slurm (a one-node cluster on loopback, started by
//! `scripts/slurm-local.sh start`, which `.ci/run` runs as root), then `wattbench merge` and
//! `wattbench report` on what the job array wrote. Without a Slurm here the submission test says
//! it is skipped, unless `WATTBENCH_REQUIRE_SLURM=1` demands one.

use crate::util::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn slurm_up() -> bool {
    let up = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && {
                let s = String::from_utf8_lossy(&o.stdout);
                s.contains("idle") || s.contains("mixed") || s.contains("allocated")
            }
        });
    if !up {
        assert!(
            std::env::var("WATTBENCH_REQUIRE_SLURM").as_deref() != Ok("1"),
            "WATTBENCH_REQUIRE_SLURM=1 but no Slurm node answers sinfo; start one with scripts/slurm-local.sh start"
        );
        eprintln!("skipped: no Slurm node answers sinfo here (scripts/slurm-local.sh start makes one, as root)");
    }
    up
}

const SWEEP: &[&str] = &[
    "sweep",
    "--model",
    "synthetic:tiny",
    "--batch-size",
    "2,4",
    "--max-new-tokens",
    "4",
    "--num-prompts",
    "4",
    "--sensor",
    "fake:100",
    "--name",
    "slurm-t",
];

#[test]
fn a_sweep_runs_as_a_job_array_and_merges_into_one_report() {
    if !slurm_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &[
            SWEEP,
            &[
                "--slurm",
                "--slurm-tasks",
                "point",
                "--results",
                "out",
                "--json",
            ],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["tasks"], 2, "{v}");
    let job = v["job_id"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let q = Command::new("squeue")
            .args(["-h", "-j", &job])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "job {job} still queued or running"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = dir.path().join("out");
    for t in 0..2 {
        let db = out.join(format!("task-{t}.db"));
        assert!(
            db.exists(),
            "task {t} wrote nothing; its log: {:?}",
            std::fs::read_dir(out.join("logs")).map(|d| d.count())
        );
        assert_eq!(
            count(&db, "SELECT count(*) FROM runs WHERE status = 'complete'"),
            1
        );
    }
    let o = run_in(dir.path(), &["merge", "out", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["total"]["runs_added"], 2);
    let o = run_in(dir.path(), &["merge", "out", "--json"]);
    assert_eq!(
        json(&o)["total"]["runs_added"],
        0,
        "merging again adds nothing"
    );
    assert_eq!(json(&o)["total"]["runs_skipped"], 2);
    let merged = out.join("merged.db");
    assert_eq!(
        count(
            &merged,
            "SELECT count(DISTINCT batch_size) FROM runs WHERE sweep = 'slurm-t'"
        ),
        2
    );
    let o = run_in(
        dir.path(),
        &["report", "--db", "out/merged.db", "--out", "rep"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.path().join("rep/report.md").exists());
}

#[test]
fn the_batch_script_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &[
            SWEEP,
            &[
                "--slurm",
                "--partition",
                "gpu",
                "--time",
                "30:00",
                "--dry-run",
                "--db",
                "x.db",
            ],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let script = stdout(&o);
    for line in [
        "#SBATCH --array=0-0",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=30:00",
        "--tasks-by model",
        "'--batch-size' '2,4'",
    ] {
        assert!(script.contains(line), "{line} not in {script}");
    }
    assert!(
        !script.contains("x.db") && !script.contains("'--slurm'"),
        "{script}"
    );
    assert!(dir.path().join("wattbench-slurm-t/sweep.sbatch").exists());
    // No sbatch on PATH.
    let o = bin()
        .current_dir(dir.path())
        .env("PATH", "/nonexistent")
        .args([SWEEP, &["--slurm"]].concat())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("sbatch was not found"),
        "{}",
        stderr(&o)
    );
    // A task number the grid does not have.
    let o = run_in(dir.path(), &[SWEEP, &["--task", "7"]].concat());
    assert!(stderr(&o).contains("has 1 task(s)"), "{}", stderr(&o));
    // merge: not a folder, and a folder without databases.
    let o = run_in(dir.path(), &["merge", "nope"]);
    assert!(stderr(&o).contains("is not a folder"), "{}", stderr(&o));
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let o = run_in(dir.path(), &["merge", "empty"]);
    assert!(stderr(&o).contains("no *.db file"), "{}", stderr(&o));
}

#[test]
fn merge_keeps_each_run_with_its_batches_requests_and_measurement() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("parts")).unwrap();
    for (b, db) in [("2", "parts/a.db"), ("4", "parts/b.db")] {
        let mut args: Vec<&str> = SWEEP.to_vec();
        args[4] = b;
        let o = run_in(dir.path(), &[&args[..], &["--db", db]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run_in(dir.path(), &["merge", "parts", "--db", "all.db", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let total = &json(&o)["total"];
    assert_eq!(
        (
            total["runs_added"].as_i64(),
            total["measurements_added"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let merged = dir.path().join("all.db");
    let parts = |sql: &str| {
        count(&dir.path().join("parts/a.db"), sql) + count(&dir.path().join("parts/b.db"), sql)
    };
    for table in ["batches", "requests", "samples", "measurement_devices"] {
        let sql = format!("SELECT count(*) FROM {table}");
        assert_eq!(count(&merged, &sql), parts(&sql), "{table}");
    }
    // Every run points at its own measurement (the window over its batches), energies equal.
    let joined =
        "SELECT count(DISTINCT m.id) FROM runs r JOIN measurements m ON r.measurement_id = m.id \
                  WHERE abs(r.energy_j - m.energy_j) < 1e-9";
    assert_eq!(count(&merged, joined), 2);
    assert_eq!(
        count(
            &merged,
            "SELECT count(*) FROM requests q JOIN runs r ON q.run_id = r.id"
        ),
        parts("SELECT count(*) FROM requests")
    );
    // A target inside the folder is not merged into itself.
    let o = run_in(
        dir.path(),
        &["merge", "parts", "--db", "parts/a.db", "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["sources"].as_array().unwrap().len(), 1);
    assert_eq!(
        count(&dir.path().join("parts/a.db"), "SELECT count(*) FROM runs"),
        2
    );
}
