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
