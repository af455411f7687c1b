//! The results database against real SQLite files.

use rusqlite::Connection;
use wattbench_core::*;
use wattbench_store::{export, Store, StoreError, SCHEMA_VERSION};

fn measurement(watts: f64) -> Measurement {
    let info = DeviceInfo {
        id: "gpu0".into(),
        index: 0,
        kind: DeviceKind::Gpu,
        sensor: "nvml".into(),
        name: "Test GPU".into(),
        uuid: Some("GPU-1234".into()),
        driver_version: Some("580.1".into()),
        power_limits: Some(PowerLimits {
            current_w: Watts(700.0),
            default_w: Some(Watts(700.0)),
            min_w: Some(Watts(200.0)),
            max_w: Some(Watts(700.0)),
        }),
        capabilities: Capabilities {
            energy_counter: true,
            instant_power: true,
            ..Capabilities::default()
        },
    };
    let mut series = DeviceSeries::new("gpu0");
    for i in 0..=10 {
        series.points.push(Point {
            t_s: i as f64 * 0.1,
            reading: Reading {
                energy_j: Some(watts * i as f64 * 0.1),
                power_w: Some(watts),
                mem_used_bytes: Some(1 << 40),
                ..Reading::default()
            },
        });
    }
    let timeline = Timeline {
        series: vec![series],
    };
    let s = summarize(std::slice::from_ref(&info), &timeline, 0.0, 1.0, None);
    Measurement {
        id: None,
        started_at: "2026-11-26T15:00:00.000Z".into(),
        finished_at: "2026-11-26T15:00:01.000Z".into(),
        started_unix_s: 1.0,
        wall_s: 1.0,
        command: vec!["sleep".into(), "1".into()],
        exit_code: Some(0),
        energy_j: s.energy_j,
        avg_power_w: s.avg_power_w,
        peak_power_w: s.peak_power_w,
        idle_power_w: None,
        net_energy_j: None,
        devices: s.devices,
        warnings: vec![Warning::OtherProcesses {
            device: "gpu0".into(),
            pids: vec![42],
        }],
        sampler: SamplerStats::default(),
        config: serde_json::json!({ "interval_s": 0.1 }),
        provenance: Provenance::default(),
        window_start_s: 0.0,
        timeline,
    }
}

#[test]
fn a_measurement_round_trips_with_its_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let mut store = Store::open(&path).unwrap();
    let m = measurement(300.0);
    let id = store.insert_measurement(&m).unwrap();
    drop(store);
    let back = Store::open_existing(&path)
        .unwrap()
        .measurements(true)
        .unwrap();
    assert_eq!(back.len(), 1);
    let mut expected = m.clone();
    expected.id = Some(id);
    assert_eq!(back[0], expected);
    let without = Store::open_existing(&path)
        .unwrap()
        .measurements(false)
        .unwrap();
    assert!(without[0].timeline.series.is_empty());
}

#[test]
fn each_record_is_committed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let mut store = Store::open(&path).unwrap();
    store.insert_measurement(&measurement(100.0)).unwrap();
    // A second connection sees the row while the first is still open (as after a kill).
    let other = Connection::open(&path).unwrap();
    let n: i64 = other
        .query_row("SELECT count(*) FROM measurements", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    std::mem::forget(store);
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    Store::open(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = DELETE; PRAGMA user_version = {}",
        SCHEMA_VERSION + 1
    ))
    .unwrap();
    drop(conn);
    let before = std::fs::read(&path).unwrap();
    let e = Store::open(&path).err().unwrap();
    assert!(matches!(e, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1));
    assert!(e.to_string().contains("upgrade wattbench"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let e = Store::open(&path).err().unwrap();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e}");
}

#[test]
fn an_unwritable_path_names_the_path_and_the_fix() {
    let e = Store::open(std::path::Path::new("/nonexistent-dir/x/r.db"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("/nonexistent-dir/x/r.db") && e.contains("--db"),
        "{e}"
    );
    let e = Store::open_existing(std::path::Path::new("/nonexistent-dir/r.db"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no results database"), "{e}");
}

#[test]
fn csv_export_has_one_row_per_device_and_empty_cells_for_nulls() {
    let mut m = measurement(250.0);
    m.id = Some(7);
    let mut out = Vec::new();
    export::write_csv(&[m.clone()], &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1);
    let col = |name: &str| &rows[0][headers.iter().position(|h| h == name).unwrap()];
    assert_eq!(col("measurement_id"), "7");
    assert_eq!(col("energy_j"), "250");
    assert_eq!(col("energy_method"), "counter");
    assert_eq!(col("idle_power_w"), "");
    assert_eq!(col("warnings"), "other_processes");
    let mut tl = Vec::new();
    export::write_timeline_csv(&[m], &mut tl).unwrap();
    assert_eq!(String::from_utf8(tl).unwrap().lines().count(), 12);
}

fn run_record(status: RunStatus) -> RunRecord {
    let config = RunConfig {
        model: "synthetic:tiny".into(),
        dataset: "gsm8k".into(),
        split: None,
        num_prompts: 3,
        batch_size: 2,
        max_new_tokens: 4,
        output_lengths: "max".into(),
        temperature: 0.8,
        top_p: 0.95,
        seed: 0,
        ignore_eos: true,
        device: "cpu".into(),
        gpus: vec![],
        dtype: "f32".into(),
        weights_seed: 0,
        tokenizer: "bytes".into(),
        chat_template: false,
        warmup_batches: 1,
        repeats: 1,
        sensors: vec!["fake:300".into()],
        interval_s: 0.1,
        power_limit: None,
        server: None,
    };
    let request = |batch, position, words, text: Option<&str>| RequestRecord {
        batch,
        position,
        dataset_index: 10 + position,
        input_tokens: 7,
        output_tokens: 4,
        words,
        finish: "length".into(),
        energy_j: Some(50.0),
        latency_s: 0.5,
        output_text: text.map(String::from),
        correct: text.map(|t| t.contains('7')),
        ttft_s: (position == 1).then_some(0.125),
        tpot_s: (position == 1).then_some(0.03125),
    };
    RunRecord {
        id: None,
        key: config.key(),
        sweep: Some("s1".into()),
        repeat: 0,
        status,
        reason: (status != RunStatus::Complete).then(|| "batch 1: out of memory".into()),
        config,
        measurement_id: None,
        started_at: "2026-11-26T15:00:00.000Z".into(),
        wall_s: 1.0,
        warmup_s: 0.3,
        harness_s: 0.001,
        energy_j: Some(300.0),
        notes: vec!["a note".into()],
        batches: vec![BatchRecord {
            index: 0,
            start_s: 0.0,
            wall_s: 0.5,
            prefill_s: 0.1,
            decode_s: 0.4,
            prompts: 2,
            padded_prompt_len: 7,
            input_tokens: 14,
            output_tokens: 8,
            energy_j: Some(150.0),
            avg_power_w: None,
        }],
        requests: vec![
            request(0, 0, Some(3), Some("so 7")),
            request(0, 1, None, None),
        ],
    }
}

#[test]
fn a_run_round_trips_with_its_window_batches_and_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let mut store = Store::open(&path).unwrap();
    let run = run_record(RunStatus::Complete);
    let (id, mid) = store.insert_run(&run, Some(&measurement(300.0))).unwrap();
    let (id2, none) = store
        .insert_run(&run_record(RunStatus::Infeasible), None)
        .unwrap();
    assert!(mid.is_some() && none.is_none() && id2 > id);
    drop(store);
    let store = Store::open_existing(&path).unwrap();
    let back = store.runs(true).unwrap();
    let mut expected = run.clone();
    expected.id = Some(id);
    expected.measurement_id = mid;
    assert_eq!(back[0], expected);
    assert_eq!(back[1].status, RunStatus::Infeasible);
    assert!(store.runs(false).unwrap()[0].requests.is_empty());
    assert_eq!(store.measurements(false).unwrap()[0].id, mid);
    let finished = store.finished_runs().unwrap();
    assert!(finished.contains(&run.key, 0));
    // The infeasible configuration (same key here) is done for every repeat.
    assert!(finished.contains(&run.key, 7));
    // A failed run is not finished: a resumed sweep runs it again.
    let dir2 = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir2.path().join("f.db")).unwrap();
    store.insert_run(&run, None).unwrap();
    let mut failed = run_record(RunStatus::Failed);
    failed.repeat = 1;
    store.insert_run(&failed, None).unwrap();
    let finished = store.finished_runs().unwrap();
    assert!(finished.contains(&run.key, 0) && !finished.contains(&run.key, 1));
}

#[test]
fn a_schema_1_database_gains_the_run_tables_and_keeps_its_measurements() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let mut store = Store::open(&path).unwrap();
    store.insert_measurement(&measurement(200.0)).unwrap();
    drop(store);
    // As a schema-1 wattbench left it: no run tables, version 1.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE requests; DROP TABLE batches; DROP TABLE runs; PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.measurements(false).unwrap().len(), 1);
    store
        .insert_run(&run_record(RunStatus::Complete), None)
        .unwrap();
    let v: u32 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}
