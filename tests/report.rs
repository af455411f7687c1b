//! `wattbench report`: from the database alone, the same records giving the same files.

use crate::util::*;
use rusqlite::Connection;
use std::path::Path;

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "figures"] {
        let d = dir.join(sub);
        let mut names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        for p in names {
            out.push((
                p.strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            ));
        }
    }
    out
}

#[test]
fn a_report_of_a_sweep_has_the_papers_figures_and_tables_and_depends_on_records_only() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &[
            "sweep",
            "--model",
            "synthetic:tiny",
            "--batch-size",
            "2,4",
            "--max-new-tokens",
            "4,2040",
            "--num-prompts",
            "4",
            "--repeats",
            "2",
            "--sensor",
            "fake:100",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_in(dir.path(), &["report", "--out", "r1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r1 = dir.path().join("r1");
    let md = std::fs::read_to_string(r1.join("report.md")).unwrap();
    for want in [
        "## Throughput (the paper's Fig. 2)",
        "## Energy per token (Figs. 6–7)",
        "## Energy per response (Figs. 8–9)",
        "(Table II)",
        "(Table III)",
        "(Tables IV–V)",
        "## Power timeline",
        "figures/fig6-energy-per-token-gsm8k.png",
        "fake device drawing 100 W",
        "infeasible",
        "± ",
    ] {
        assert!(md.contains(want), "{want:?} missing from the report:\n{md}");
    }
    let html = std::fs::read_to_string(r1.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
    assert!(
        !html.contains("src=\"http") && !html.contains("<script"),
        "self-contained, no scripts"
    );
    let png = std::fs::read(r1.join("figures/fig2-throughput-gsm8k.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // Every figure states its workload, card and tool.
    let svg = std::fs::read_to_string(r1.join("figures/fig6-energy-per-token-gsm8k.svg")).unwrap();
    assert!(
        svg.contains("Workload: gsm8k")
            && svg.contains("Card: fake device")
            && svg.contains("wattbench 0.")
    );
    // The same records under other row ids give byte-identical files.
    let db = dir.path().join("wattbench.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "PRAGMA foreign_keys = OFF; UPDATE runs SET id = id + 1000; \
             UPDATE batches SET run_id = run_id + 1000; UPDATE requests SET run_id = run_id + 1000;",
        )
        .unwrap();
    let o = run_in(dir.path(), &["report", "--out", "r2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (files(&r1), files(&dir.path().join("r2")));
    assert_eq!(a.len(), b.len());
    for ((na, fa), (nb, fb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(fa == fb, "{na} differs");
    }
}

#[test]
fn a_report_needs_runs() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(dir.path(), &["report"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no results database"), "{}", stderr(&o));
    assert!(
        run_in(dir.path(), &["measure", "--sensor", "fake:1", "--", "true"])
            .status
            .success()
    );
    let o = run_in(dir.path(), &["report"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("holds no runs yet"), "{}", stderr(&o));
    assert!(!dir.path().join("report").exists(), "nothing written");
    let o = run_in(dir.path(), &["report", "--timeline", "7"]);
    assert!(!o.status.success());
}

/// Opens the HTML report in headless Chromium: it must load without errors. Runs where Chromium
/// is installed (CI installs it); elsewhere it says it was skipped.
#[test]
fn the_html_report_opens_in_headless_chromium() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        eprintln!("skipped: no chromium here (apt-get install chromium)");
        return;
    };
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
            "--sensor",
            "fake:10",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run_in(dir.path(), &["report"]).status.success());
    let page = dir.path().join("report/report.html");
    let shot = dir.path().join("shot.png");
    let o = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,2400")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        !err.contains("CONSOLE") && !err.contains("Uncaught"),
        "{err}"
    );
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "the page rendered"
    );
}

#[test]
fn a_sweep_over_shard_counts_gets_the_papers_figures_over_shards() {
    // The 7B sweep over 1 and 2 H100s kept in bench/results.
    let db = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench/results/2026-11-26-h100x2-tp/sweep.db");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("sweep.db");
    std::fs::copy(&db, &copy).unwrap();
    let o = run_in(dir.path(), &["report", "--db", "sweep.db", "--out", "r"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(dir.path().join("r/report.md")).unwrap();
    for want in [
        "## Energy per second over shard counts (Figs. 4–5)",
        "## Energy per token over shard counts (Figs. 6–7)",
        "## Energy per response over shard counts (Figs. 8–9)",
        "figures/fig6-energy-per-token-by-shards-gsm8k-256.png",
    ] {
        assert!(md.contains(want), "{want:?} missing from the report:\n{md}");
    }
    let svg = std::fs::read_to_string(
        dir.path()
            .join("r/figures/fig6-energy-per-token-by-shards-gsm8k-256.svg"),
    )
    .unwrap();
    assert!(svg.contains("shards (GPUs per run)") && svg.contains("llama-7b · batch 64"));
    assert!(svg.contains("GPUs per run: 1, 2"), "{svg}");
}
