use crate::util::*;

#[test]
fn export_csv_and_json_read_back_every_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("results.db");
    let db_s = db.display().to_string();
    for w in ["fake:100", "fake:200x2"] {
        let o = run_in(
            dir.path(),
            &[
                "measure", "--db", &db_s, "--sensor", w, "--", "sleep", "0.2",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = bin()
        .env("WATTBENCH_DB", &db)
        .args(["export", "--format", "csv"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 3, "{text}");
    assert!(lines[0].starts_with("measurement_id,started_at"));
    assert!(lines[3].starts_with("2,") && lines[3].contains("fake1"));

    let o = run_in(
        dir.path(),
        &["export", "--db", &db_s, "--format", "json", "--timeline"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], "wattbench.measurement.v1");
    let ms = v["measurements"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    assert!(!ms[1]["timeline"]["series"][0]["points"]
        .as_array()
        .unwrap()
        .is_empty());

    let out = dir.path().join("t.csv");
    let o = run_in(
        dir.path(),
        &[
            "export",
            "--db",
            &db_s,
            "--timeline",
            "-o",
            &out.display().to_string(),
        ],
    );
    assert!(o.status.success());
    let t = std::fs::read_to_string(out).unwrap();
    assert!(t.starts_with("measurement_id,device_id,t_s,energy_j,power_w"));
}

#[test]
fn export_without_a_database_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(dir.path(), &["export"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no results database at wattbench.db"),
        "{}",
        stderr(&o)
    );
    assert!(
        !dir.path().join("wattbench.db").exists(),
        "export must not create a database"
    );
}
