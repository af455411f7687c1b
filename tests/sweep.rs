//! `wattbench sweep` on the CPU: the grid, resuming after SIGKILL, infeasible points, bad input.

use crate::util::*;
use rusqlite::Connection;

const GRID: &[&str] = &[
    "sweep",
    "--model",
    "synthetic:tiny",
    "--batch-size",
    "2,4",
    "--max-new-tokens",
    "4,8",
    "--num-prompts",
    "8",
    "--repeats",
    "2",
    "--sensor",
    "fake:100",
    "--name",
    "t",
];

#[test]
fn a_sweep_runs_every_point_once_and_a_rerun_skips_them() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(dir.path(), GRID);
    assert!(o.status.success(), "{}", stderr(&o));
    let db = dir.path().join("wattbench.db");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM runs WHERE status = 'complete' AND sweep = 't'"
        ),
        8
    );
    assert_eq!(count(&db, "SELECT count(DISTINCT key) FROM runs"), 4);
    let o = run_in(dir.path(), &[GRID, &["--json"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    let points = j["points"].as_array().unwrap();
    assert_eq!(points.len(), 4);
    assert!(points.iter().all(|p| p["skipped"] == true), "{j}");
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs"),
        8,
        "nothing ran twice"
    );
}

#[test]
fn a_killed_sweep_resumes_without_redoing_finished_points() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wattbench.db");
    let args: Vec<&str> = [
        "sweep",
        "--model",
        "synthetic:tiny",
        "--batch-size",
        "1,2,4,8",
        "--max-new-tokens",
        "8,16,32",
        "--num-prompts",
        "64",
        "--sensor",
        "fake:100",
        "--name",
        "k",
    ]
    .to_vec();
    let mut child = bin()
        .current_dir(dir.path())
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no chance to clean up) once a few points are stored.
    let mut stored = 0;
    for _ in 0..600 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if db.exists() {
            stored = Connection::open(&db)
                .and_then(|c| c.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0)))
                .unwrap_or(0);
            if stored >= 3 {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        stored >= 3,
        "the sweep stored {stored} points before the kill"
    );
    let before = count(&db, "SELECT count(*) FROM runs WHERE status = 'complete'");
    assert!(
        before < 12,
        "the sweep had finished before the kill; make it longer"
    );
    let o = run_in(dir.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs WHERE status = 'complete'"),
        12
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM (SELECT key FROM runs WHERE status = 'complete' GROUP BY key HAVING count(*) > 1)"),
        0,
        "a finished point ran again"
    );
    assert!(stdout(&o).contains("done before"), "{}", stdout(&o));
}

#[test]
fn points_that_cannot_run_are_recorded_as_infeasible_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // 2040 new tokens do not fit the tiny model's context of 2048 with any GSM8K prompt.
    let grid = [
        "sweep",
        "--model",
        "synthetic:tiny",
        "--batch-size",
        "2,4",
        "--max-new-tokens",
        "4,2040",
        "--num-prompts",
        "4",
        "--sensor",
        "fake:100",
    ];
    let o = run_in(dir.path(), &grid);
    assert!(o.status.success(), "{}", stderr(&o));
    let db = dir.path().join("wattbench.db");
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs WHERE status = 'complete'"),
        2
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM runs WHERE status = 'infeasible' AND max_new_tokens = 2040"
        ),
        2
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM runs WHERE reason LIKE 'batch 2 could not run either%'"
        ),
        1
    );
    assert!(stdout(&o).contains("infeasible"), "{}", stdout(&o));
    // Infeasible points count as done: a rerun does not try them again.
    let again = run_in(dir.path(), &grid);
    assert!(again.status.success());
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), 4);
}

#[test]
fn bad_sweeps_are_refused_with_the_reason_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("s.toml");
    std::fs::write(
        &toml,
        "model = [\"synthetic:tiny\"]\nbatch_size = [2, 4\nmax_new_tokens = [8]\n",
    )
    .unwrap();
    let empty = dir.path().join("e.toml");
    std::fs::write(&empty, "model = [\"synthetic:tiny\"]\nbatch_size = []\n").unwrap();
    let unknown = dir.path().join("u.toml");
    std::fs::write(&unknown, "model = [\"synthetic:tiny\"]\nbatchsize = [2]\n").unwrap();
    let t = toml.to_str().unwrap();
    let e = empty.to_str().unwrap();
    let u = unknown.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--config", t], "at line 3"),
        (&["--config", e], "batch_size is an empty list"),
        (&["--config", u], "batchsize"),
        (&["--config", e, "--batch-size", "2"], "give one of them"),
        (
            &["--preset", "words-to-watts", "--config", t],
            "--preset and --config",
        ),
        (
            &[
                "--model",
                "synthetic:tiny",
                "--find-max-batch",
                "--batch-size",
                "4",
            ],
            "drop --batch-size",
        ),
        (&["--batch-size", "4"], "a sweep needs model"),
        (
            &["--model", "synthetic:tiny", "--batch-size", "0"],
            "at least 1",
        ),
        (
            &["--preset", "words-to-watts", "--device", "cpu"],
            "sized for GPUs",
        ),
        (
            &[
                "--model",
                "synthetic:tiny",
                "--gpus",
                "1,2",
                "--device",
                "cpu",
            ],
            "splits models over GPUs",
        ),
        (&["--model", "synthetic:tiny", "--gpus", "0"], "at least 1"),
    ];
    for (args, want) in cases {
        let o = run_in(
            dir.path(),
            &[&["sweep", "--sensor", "fake:1"], *args].concat(),
        );
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(
            stderr(&o).contains(want),
            "{args:?}: {want:?} missing from {}",
            stderr(&o)
        );
    }
    assert!(
        !dir.path().join("wattbench.db").exists(),
        "a refused sweep opened no database"
    );
    // A database from a newer wattbench is refused and left as it was.
    let db = dir.path().join("new.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "PRAGMA application_id = 1463899220; PRAGMA user_version = 99; CREATE TABLE x (y);",
        )
        .unwrap();
    let before = std::fs::read(&db).unwrap();
    let o = run_in(
        dir.path(),
        &[
            "sweep",
            "--model",
            "synthetic:tiny",
            "--num-prompts",
            "2",
            "--sensor",
            "fake:1",
            "--db",
            db.to_str().unwrap(),
        ],
    );
    assert!(stderr(&o).contains("newer wattbench"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn find_max_batch_reports_the_largest_batch_up_to_the_prompt_count() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &[
            "sweep",
            "--model",
            "synthetic:tiny",
            "--find-max-batch",
            "--max-new-tokens",
            "4",
            "--num-prompts",
            "6",
            "--sensor",
            "fake:1",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    let r = &j["max_batch"][0];
    // Nothing runs out of memory on the CPU at this size: the search stops at --num-prompts.
    assert_eq!(r["max_batch"], 6);
    assert_eq!(r["hit_limit"], true);
    let probes: Vec<u64> = r["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_u64().unwrap())
        .collect();
    assert_eq!(probes, [1, 2, 4, 6]);
}
