use crate::util::*;
use std::time::Duration;

#[test]
fn fake_sensor_reports_power_times_wall_time() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &[
            "measure",
            "--sensor",
            "fake:250x2",
            "--json",
            "--",
            "sleep",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    let wall = v["wall_s"].as_f64().unwrap();
    assert!((0.95..1.5).contains(&wall), "{wall}");
    let energy = v["energy_j"].as_f64().unwrap();
    assert!(
        close(energy, 500.0 * wall, 0.01),
        "{energy} J over {wall} s"
    );
    assert!(close(v["avg_power_w"].as_f64().unwrap(), 500.0, 0.01));
    assert_eq!(v["peak_power_w"].as_f64().unwrap(), 500.0);
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    for d in devices {
        assert_eq!(d["energy_method"], "counter");
        assert!(close(d["energy_j"].as_f64().unwrap(), 250.0 * wall, 0.01));
        assert!(close(
            d["integrated_power_j"].as_f64().unwrap(),
            250.0 * wall,
            0.01
        ));
        assert!(d["name"].as_str().is_some() && d["id"].as_str().is_some());
        assert!(
            d["mean_sm_util_pct"].is_null(),
            "unmeasured quantities are null"
        );
    }
    assert_eq!(
        v["warnings"].as_array().unwrap().len(),
        0,
        "{}",
        v["warnings"]
    );
    assert_eq!(v["exit_code"], 0);
    assert!(v["id"].as_i64().is_some(), "stored in the database");
    assert!(dir.path().join("wattbench.db").exists());
    assert!(v["provenance"]["git_sha"].as_str().is_some());
    assert!(v["sampler"]["samples"].as_u64().unwrap() >= 10);
}

#[test]
fn replayed_power_ramp_integrates_to_its_known_integral() {
    let dir = tempfile::tempdir().unwrap();
    let trace = fixture("ramp_power.csv");
    let spec = format!("replay:{}", trace.display());
    let o = run_in(
        dir.path(),
        &["measure", "--sensor", &spec, "--json", "--", "sleep", "1.5"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    let t0 = v["window_start_s"].as_f64().unwrap();
    let t1 = t0 + v["wall_s"].as_f64().unwrap();
    // p(t) = 100 + 50 t  =>  E = 100 (t1 - t0) + 25 (t1² - t0²)
    let expected = 100.0 * (t1 - t0) + 25.0 * (t1 * t1 - t0 * t0);
    let got = v["energy_j"].as_f64().unwrap();
    assert!(
        close(got, expected, 0.005),
        "{got} J, expected {expected} J"
    );
    assert_eq!(v["devices"][0]["energy_method"], "power_integration");
    assert!(v["devices"][0]["counter_energy_j"].is_null());
    let kinds: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["no_counter"],
        "a missing counter falls back and says so"
    );
}

#[test]
fn replayed_counter_is_used_and_agrees_with_power() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("replay:{}", fixture("counter_200w.csv").display());
    let o = run_in(
        dir.path(),
        &["measure", "--sensor", &spec, "--json", "--", "sleep", "0.5"],
    );
    let v = json(&o);
    let wall = v["wall_s"].as_f64().unwrap();
    assert!(close(v["energy_j"].as_f64().unwrap(), 200.0 * wall, 0.005));
    assert_eq!(v["devices"][0]["energy_method"], "counter");
    assert_eq!(v["devices"][0]["id"], "gpuA");
}

#[test]
fn idle_baseline_gives_idle_power_and_net_energy() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &[
            "measure",
            "--sensor",
            "fake:100",
            "--idle-baseline",
            "300ms",
            "--json",
            "--",
            "sleep",
            "0.3",
        ],
    );
    let v = json(&o);
    assert!(close(v["idle_power_w"].as_f64().unwrap(), 100.0, 1e-6));
    assert!(v["net_energy_j"].as_f64().unwrap().abs() < 1e-6);
    assert!(close(
        v["devices"][0]["idle_power_w"].as_f64().unwrap(),
        100.0,
        1e-6
    ));
}

#[test]
fn exit_code_and_signals_of_the_command_are_passed_on() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &["measure", "--sensor", "fake:1", "--", "sh", "-c", "exit 7"],
    );
    assert_eq!(o.status.code(), Some(7));
    let o = run_in(
        dir.path(),
        &[
            "measure",
            "--sensor",
            "fake:1",
            "--json",
            "--",
            "sh",
            "-c",
            "kill -9 $$",
        ],
    );
    assert_eq!(o.status.code(), Some(137));
    assert_eq!(json(&o)["exit_code"], 137);
}

#[test]
fn sigterm_is_forwarded_and_the_measurement_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let child = bin()
        .current_dir(dir.path())
        .args([
            "measure", "--sensor", "fake:50", "--json", "--", "sleep", "30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(128 + libc::SIGTERM));
    let v = json(&o);
    assert!(v["wall_s"].as_f64().unwrap() < 5.0);
    assert!(v["id"].as_i64().is_some());
}

#[test]
fn text_output_names_devices_and_where_it_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &["measure", "--sensor", "fake:250x2", "--", "true"],
    );
    let err = stderr(&o);
    assert!(
        err.contains("fake0") && err.contains("fake1") && err.contains("counter"),
        "{err}"
    );
    assert!(
        err.contains("stored     measurement 1 in wattbench.db"),
        "{err}"
    );
}

#[test]
fn without_any_sensor_energy_is_null_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .current_dir(dir.path())
        .env("WATTBENCH_POWERCAP_ROOT", dir.path().join("none"))
        .env("CUDA_VISIBLE_DEVICES", "")
        .args(["measure", "--json", "--", "true"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = json(&o);
    assert!(v["energy_j"].is_null());
    assert_eq!(v["warnings"][0]["kind"], "no_energy_sensor");
    assert!(v["warnings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("wattbench devices"));
}

#[test]
fn bad_input_gets_clear_errors_and_nonzero_exits() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, &str, Option<i32>)> = vec![
        (
            vec!["--sensor".into(), "thermometer".into()],
            "unknown sensor \"thermometer\"",
            Some(1),
        ),
        (
            vec![
                "--sensor".into(),
                format!("replay:{}", fixture("malformed.csv").display()),
            ],
            "line 4, column 3: power_w \"1O0\" is not a number",
            Some(1),
        ),
        (
            vec![
                "--sensor".into(),
                "fake:250x2".into(),
                "--devices".into(),
                "3".into(),
            ],
            "device \"3\" does not exist (2 device(s) found: 0, 1); pass --devices 0,1",
            Some(1),
        ),
        (
            vec!["--interval".into(), "1ms".into()],
            "outside 10ms..10s",
            Some(2),
        ),
        (
            vec![
                "--db".into(),
                "/nonexistent-dir/sub/r.db".into(),
                "--sensor".into(),
                "fake:1".into(),
            ],
            "cannot open the results database /nonexistent-dir/sub/r.db",
            Some(1),
        ),
    ];
    let marker = dir.path().join("ran");
    for (flags, message, code) in cases {
        let mut args: Vec<String> = vec!["measure".into()];
        args.extend(flags);
        args.extend(["--".into(), "touch".into(), marker.display().to_string()]);
        let o = bin().current_dir(dir.path()).args(&args).output().unwrap();
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert_eq!(o.status.code(), code, "{args:?}");
        assert!(
            !marker.exists(),
            "the command must not run after bad input: {args:?}"
        );
    }
    let o = run_in(
        dir.path(),
        &["measure", "--sensor", "fake:1", "--", "no-such-command-xyz"],
    );
    assert_eq!(o.status.code(), Some(127));
    assert!(
        stderr(&o).contains("cannot start the command \"no-such-command-xyz\""),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("on PATH"));
}

#[test]
fn a_database_from_a_newer_wattbench_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        run_in(dir.path(), &["measure", "--sensor", "fake:1", "--", "true"])
            .status
            .success()
    );
    let db = dir.path().join("wattbench.db");
    let version: u32 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let o = run_in(dir.path(), &["measure", "--sensor", "fake:1", "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("schema version 99"), "{}", stderr(&o));
    let o = run_in(dir.path(), &["export"]);
    assert!(stderr(&o).contains("newer wattbench"), "{}", stderr(&o));
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&format!("PRAGMA user_version = {version}"))
        .unwrap();
    let o = run_in(dir.path(), &["export", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["measurements"].as_array().unwrap().len(),
        1,
        "the refused database kept its record"
    );
}
