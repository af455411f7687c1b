use crate::util::*;
use std::time::Duration;

#[test]
fn monitor_logs_every_sample_to_csv_for_its_duration() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("log.csv");
    let o = run_in(
        dir.path(),
        &[
            "monitor",
            "--sensor",
            "fake:120x2",
            "--interval",
            "50ms",
            "--duration",
            "600ms",
            "--csv",
            &csv.display().to_string(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert!(rows.len() >= 2 * 10, "{} rows", rows.len());
    assert!(rows.iter().any(|r| r.contains(",fake1,")));
    assert!(stdout(&o).contains("power W"));
    let err = stderr(&o);
    let energy: f64 = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("fake0: "))
        .and_then(|v| v.trim_end_matches(" J").parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        (60.0..90.0).contains(&energy),
        "about 120 W for 0.6 s: {energy}"
    );
}

#[test]
fn monitor_ends_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("log.csv");
    let child = bin()
        .args([
            "monitor",
            "--sensor",
            "fake:10",
            "--csv",
            &csv.display().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("monitored"), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&csv).unwrap().lines().count() > 3);
}

#[test]
fn monitor_without_devices_explains_why() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .env("WATTBENCH_POWERCAP_ROOT", dir.path().join("none"))
        .env("CUDA_VISIBLE_DEVICES", "")
        .args(["monitor", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no device to monitor") && stderr(&o).contains("fake:WATTS"));
}
