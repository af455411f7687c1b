//! `wattbench run` end to end on the CPU with the tiny synthetic model.

use crate::util::*;
use rusqlite::Connection;

#[test]
fn a_run_reports_the_papers_figures_and_energy_of_a_fake_300_w_device() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &[
            "run",
            "--model",
            "synthetic:tiny",
            "--dataset",
            "gsm8k",
            "--num-prompts",
            "16",
            "--batch-size",
            "8",
            "--max-new-tokens",
            "16",
            "--ignore-eos",
            "--sensor",
            "fake:300",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["responses"], 16);
    assert_eq!(j["output_tokens"], 256);
    let energy = j["energy_j"].as_f64().unwrap();
    let wall = j["wall_s"].as_f64().unwrap();
    assert!(wall > 0.0);
    assert!(
        (energy - 300.0 * wall).abs() <= 0.01 * 300.0 * wall,
        "energy {energy} J over {wall} s"
    );
    let per_token = j["j_per_token"].as_f64().unwrap();
    assert!((per_token - energy / 256.0).abs() < 1e-9 * energy);
    assert!((j["j_per_response"].as_f64().unwrap() - energy / 16.0).abs() < 1e-9 * energy);
    assert!((j["tokens_per_s"].as_f64().unwrap() - 256.0 / wall).abs() < 1e-6 * 256.0 / wall);
    assert!((j["responses_per_s"].as_f64().unwrap() - 16.0 / wall).abs() < 1e-6 * 16.0 / wall);
    assert!((j["avg_power_w"].as_f64().unwrap() - 300.0).abs() < 3.0);
    // Random weights: words are not counted, and the output says why.
    assert!(j["words"].is_null() && j["words_per_s"].is_null());
    assert!(j["notes"].to_string().contains("random weights"));
    assert_eq!(j["devices"][0]["device"], "fake0");
    let db = dir.path().join("wattbench.db");
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs WHERE status = 'complete'"),
        1
    );
    assert_eq!(count(&db, "SELECT count(*) FROM batches"), 2);
    assert_eq!(count(&db, "SELECT count(*) FROM requests"), 16);
    assert_eq!(count(&db, "SELECT sum(output_tokens) FROM requests"), 256);
    // The batches' energies add up to the run's, less the harness's moments between them.
    let batches: f64 = Connection::open(&db)
        .unwrap()
        .query_row("SELECT sum(energy_j) FROM batches", [], |r| r.get(0))
        .unwrap();
    assert!(
        batches <= energy + 1e-6 && batches > 0.97 * energy,
        "{batches} vs {energy}"
    );
    // The run's window is a measurement with its timeline.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM runs r JOIN measurements m ON m.id = r.measurement_id"
        ),
        1
    );
    assert!(count(&db, "SELECT count(*) FROM samples") >= 2);
}

#[test]
fn run_without_arguments_is_a_small_complete_benchmark() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .current_dir(dir.path())
        .env("WATTBENCH_POWERCAP_ROOT", dir.path().join("no-rapl"))
        .arg("run")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "synthetic:tiny on cpu",
        "gsm8k",
        "tokens/s",
        "energy/token",
        "3 repeats",
        "±",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    // No sensor here: the energy figures are n/a and the output says what to do.
    assert!(
        out.contains("no energy sensor") || out.contains("fake:WATTS"),
        "{out}"
    );
    let db = dir.path().join("wattbench.db");
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs WHERE status = 'complete'"),
        3
    );
    assert_eq!(count(&db, "SELECT count(*) FROM requests"), 3 * 64);
}

#[test]
fn repeats_give_means_with_confidence_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &[
            "run",
            "--model",
            "synthetic:tiny",
            "--num-prompts",
            "4",
            "--batch-size",
            "2",
            "--max-new-tokens",
            "4",
            "--repeats",
            "3",
            "--sensor",
            "fake:100",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["complete_repeats"], 3);
    assert_eq!(j["runs"].as_array().unwrap().len(), 3);
    let ci = j["ci95"]["tokens_per_s"].as_f64().unwrap();
    assert!(ci >= 0.0);
    let mean = j["tokens_per_s"].as_f64().unwrap();
    let each: Vec<f64> = j["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metrics"]["tokens_per_s"].as_f64().unwrap())
        .collect();
    assert!((mean - each.iter().sum::<f64>() / 3.0).abs() < 1e-9 * mean);
    // The same configuration, so the same key, in every repeat.
    let db = dir.path().join("wattbench.db");
    assert_eq!(count(&db, "SELECT count(DISTINCT key) FROM runs"), 1);
    assert_eq!(count(&db, "SELECT count(DISTINCT repeat) FROM runs"), 3);
}

#[test]
fn bad_run_flags_name_the_flag_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--batch-size", "0"], "--batch-size must be at least 1"),
        (&["--repeats", "0"], "--repeats must be at least 1"),
        (&["--top-p", "1.5"], "--top-p 1.5"),
        (&["--dataset", "alpaca", "--score"], "drop --score"),
        (&["--dataset", "nope"], "nope"),
        (&["--model", "synthetic:llama-9b"], "llama-7b"),
        (&["--max-new-tokens", "4000"], "context of 2048"),
        (&["--gpus", "0,1"], "--features nccl"),
        (&["--gpus", "0,0"], "names a GPU twice"),
        (&["--tensor-parallel", "0"], "at least 1"),
        (
            &["--gpus", "0,1", "--tensor-parallel", "2"],
            "cannot be used with",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["run", "--sensor", "fake:1", "--num-prompts", "2"];
        all.extend_from_slice(args);
        let o = run_in(dir.path(), &all);
        assert!(!o.status.success(), "{args:?} should fail");
        let e = stderr(&o);
        assert!(e.contains(want), "{args:?}: {want:?} missing from {e}");
    }
    // Nothing was measured, so nothing was stored, but for the configuration that cannot fit
    // the model's context: it is recorded as infeasible, as sweeps show such points.
    let db = dir.path().join("wattbench.db");
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), 1);
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs WHERE status = 'infeasible' AND reason LIKE '%context of 2048%'"),
        1
    );
}

#[test]
fn an_interrupted_run_keeps_what_it_measured() {
    let dir = tempfile::tempdir().unwrap();
    let child = bin()
        .current_dir(dir.path())
        .args([
            "run",
            "--model",
            "synthetic:tiny",
            "--num-prompts",
            "1000",
            "--batch-size",
            "4",
            "--max-new-tokens",
            "8",
            "--sensor",
            "fake:50",
            "--warmup",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let db = dir.path().join("wattbench.db");
    // Wait for the database to exist (the run has started), then a moment of batches.
    for _ in 0..200 {
        if db.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM runs WHERE status = 'failed' AND reason LIKE 'interrupted%'"
        ),
        1
    );
    assert!(count(&db, "SELECT count(*) FROM batches") >= 1);
}
