//! Rows of the `measurements`, `measurement_devices` and `samples` tables.

use crate::db::Store;
use crate::error::StoreError;
use rusqlite::{params, Row};
use wattbench_core::{
    Capabilities, DeviceInfo, DeviceKind, DeviceResult, DeviceSeries, EnergyMethod, Measurement,
    Point, PowerLimits, Reading, Timeline, Watts,
};

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("record types always serialize; this is a bug")
}

pub(crate) fn insert(store: &mut Store, m: &Measurement) -> Result<i64, StoreError> {
    let path = store.path.clone();
    let tx = store.conn.transaction().map_err(|source| StoreError::Sql {
        path: path.clone(),
        source,
    })?;
    let id = insert_in(&tx, &path, m)?;
    tx.commit()
        .map_err(|source| StoreError::Sql { path, source })?;
    Ok(id)
}

/// Inserts a measurement inside the caller's transaction.
pub(crate) fn insert_in(
    tx: &rusqlite::Transaction<'_>,
    path: &std::path::Path,
    m: &Measurement,
) -> Result<i64, StoreError> {
    let err = move |source| StoreError::Sql {
        path: path.to_path_buf(),
        source,
    };
    tx.execute(
        "INSERT INTO measurements (started_at, finished_at, started_unix_s, wall_s, command_json, exit_code,
            energy_j, avg_power_w, peak_power_w, idle_power_w, net_energy_j, window_start_s, sampler_json,
            warnings_json, config_json, provenance_json, tool_version, git_sha, host)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        params![
            m.started_at,
            m.finished_at,
            m.started_unix_s,
            m.wall_s,
            json(&m.command),
            m.exit_code,
            m.energy_j,
            m.avg_power_w,
            m.peak_power_w,
            m.idle_power_w,
            m.net_energy_j,
            m.window_start_s,
            json(&m.sampler),
            json(&m.warnings),
            json(&m.config),
            json(&m.provenance),
            m.provenance.tool_version,
            m.provenance.git_sha,
            m.provenance.host,
        ],
    )
    .map_err(&err)?;
    let id = tx.last_insert_rowid();
    {
        let mut dev = tx
            .prepare(
                "INSERT INTO measurement_devices (measurement_id, position, device_id, device_index, kind, sensor,
                    name, uuid, driver_version, power_limit_w, power_limit_default_w, power_limit_min_w,
                    power_limit_max_w, capabilities_json, energy_j, energy_method, counter_energy_j,
                    integrated_power_j, avg_power_w, peak_power_w, idle_power_w, net_energy_j, counter_updates,
                    mean_sm_util_pct, mean_mem_util_pct, max_mem_used_bytes, mean_sm_clock_mhz, max_temperature_c)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
                    ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
            )
            .map_err(&err)?;
        for (pos, d) in m.devices.iter().enumerate() {
            let i = &d.info;
            let pl = i.power_limits.as_ref();
            dev.execute(params![
                id,
                pos as i64,
                i.id,
                i.index,
                i.kind.as_str(),
                i.sensor,
                i.name,
                i.uuid,
                i.driver_version,
                pl.map(|p| p.current_w.0),
                pl.and_then(|p| p.default_w.map(|w| w.0)),
                pl.and_then(|p| p.min_w.map(|w| w.0)),
                pl.and_then(|p| p.max_w.map(|w| w.0)),
                json(&i.capabilities),
                d.energy_j,
                d.energy_method.map(|m| m.as_str()),
                d.counter_energy_j,
                d.integrated_power_j,
                d.avg_power_w,
                d.peak_power_w,
                d.idle_power_w,
                d.net_energy_j,
                d.counter_updates as i64,
                d.mean_sm_util_pct,
                d.mean_mem_util_pct,
                d.max_mem_used_bytes.map(|b| b as i64),
                d.mean_sm_clock_mhz,
                d.max_temperature_c,
            ])
            .map_err(&err)?;
        }
        let mut sample = tx
            .prepare(
                "INSERT INTO samples (measurement_id, device_id, t_s, energy_j, power_w, avg_power_w, sm_util_pct,
                    mem_util_pct, mem_used_bytes, sm_clock_mhz, temperature_c)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .map_err(&err)?;
        for s in &m.timeline.series {
            for p in &s.points {
                let r = &p.reading;
                sample
                    .execute(params![
                        id,
                        s.device_id,
                        p.t_s,
                        r.energy_j,
                        r.power_w,
                        r.avg_power_w,
                        r.sm_util_pct,
                        r.mem_util_pct,
                        r.mem_used_bytes.map(|b| b as i64),
                        r.sm_clock_mhz,
                        r.temperature_c,
                    ])
                    .map_err(&err)?;
            }
        }
    }
    Ok(id)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    what: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        path: store.path.clone(),
        what,
        message: e.to_string(),
    })
}

fn kind_of(s: &str) -> Option<DeviceKind> {
    [
        DeviceKind::Gpu,
        DeviceKind::CpuPackage,
        DeviceKind::Dram,
        DeviceKind::Simulated,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}

fn device_row(store: &Store, r: &Row) -> Result<(i64, DeviceResult), StoreError> {
    let e = store.sql_err();
    let get_f = |i: usize| r.get::<_, Option<f64>>(i).map_err(&e);
    let kind: String = r.get(4).map_err(&e)?;
    let caps: String = r.get(13).map_err(&e)?;
    let method: Option<String> = r.get(15).map_err(&e)?;
    let power_limits = get_f(9)?.map(|current| -> Result<PowerLimits, StoreError> {
        Ok(PowerLimits {
            current_w: Watts(current),
            default_w: get_f(10)?.map(Watts),
            min_w: get_f(11)?.map(Watts),
            max_w: get_f(12)?.map(Watts),
        })
    });
    let info = DeviceInfo {
        id: r.get(2).map_err(&e)?,
        index: r.get(3).map_err(&e)?,
        kind: kind_of(&kind).ok_or_else(|| StoreError::Corrupt {
            path: store.path.clone(),
            what: "device kind",
            message: kind.clone(),
        })?,
        sensor: r.get(5).map_err(&e)?,
        name: r.get(6).map_err(&e)?,
        uuid: r.get(7).map_err(&e)?,
        driver_version: r.get(8).map_err(&e)?,
        power_limits: power_limits.transpose()?,
        capabilities: parse_json::<Capabilities>(store, "device capabilities", &caps)?,
    };
    Ok((
        r.get(0).map_err(&e)?,
        DeviceResult {
            info,
            energy_j: get_f(14)?,
            energy_method: method.as_deref().and_then(EnergyMethod::parse),
            counter_energy_j: get_f(16)?,
            integrated_power_j: get_f(17)?,
            avg_power_w: get_f(18)?,
            peak_power_w: get_f(19)?,
            idle_power_w: get_f(20)?,
            net_energy_j: get_f(21)?,
            counter_updates: r.get::<_, i64>(22).map_err(&e)? as usize,
            mean_sm_util_pct: get_f(23)?,
            mean_mem_util_pct: get_f(24)?,
            max_mem_used_bytes: r.get::<_, Option<i64>>(25).map_err(&e)?.map(|b| b as u64),
            mean_sm_clock_mhz: get_f(26)?,
            max_temperature_c: get_f(27)?,
        },
    ))
}

pub(crate) fn load_all(store: &Store, with_timeline: bool) -> Result<Vec<Measurement>, StoreError> {
    let e = store.sql_err();
    let mut stmt = store
        .conn
        .prepare(
            "SELECT id, started_at, finished_at, started_unix_s, wall_s, command_json, exit_code, energy_j,
                avg_power_w, peak_power_w, idle_power_w, net_energy_j, window_start_s, sampler_json, warnings_json,
                config_json, provenance_json
             FROM measurements ORDER BY id",
        )
        .map_err(&e)?;
    let mut rows = stmt.query([]).map_err(&e)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(&e)? {
        let text = |i: usize| r.get::<_, String>(i).map_err(&e);
        out.push(Measurement {
            id: Some(r.get(0).map_err(&e)?),
            started_at: text(1)?,
            finished_at: text(2)?,
            started_unix_s: r.get(3).map_err(&e)?,
            wall_s: r.get(4).map_err(&e)?,
            command: parse_json(store, "command", &text(5)?)?,
            exit_code: r.get(6).map_err(&e)?,
            energy_j: r.get(7).map_err(&e)?,
            avg_power_w: r.get(8).map_err(&e)?,
            peak_power_w: r.get(9).map_err(&e)?,
            idle_power_w: r.get(10).map_err(&e)?,
            net_energy_j: r.get(11).map_err(&e)?,
            window_start_s: r.get(12).map_err(&e)?,
            sampler: parse_json(store, "sampler statistics", &text(13)?)?,
            warnings: parse_json(store, "warnings", &text(14)?)?,
            config: parse_json(store, "config", &text(15)?)?,
            provenance: parse_json(store, "provenance", &text(16)?)?,
            devices: Vec::new(),
            timeline: Timeline::default(),
        });
    }
    let mut stmt = store
        .conn
        .prepare(
            "SELECT measurement_id, position, device_id, device_index, kind, sensor, name, uuid, driver_version,
                power_limit_w, power_limit_default_w, power_limit_min_w, power_limit_max_w, capabilities_json,
                energy_j, energy_method, counter_energy_j, integrated_power_j, avg_power_w, peak_power_w,
                idle_power_w, net_energy_j, counter_updates, mean_sm_util_pct, mean_mem_util_pct,
                max_mem_used_bytes, mean_sm_clock_mhz, max_temperature_c
             FROM measurement_devices ORDER BY measurement_id, position",
        )
        .map_err(&e)?;
    let mut rows = stmt.query([]).map_err(&e)?;
    while let Some(r) = rows.next().map_err(&e)? {
        let (mid, d) = device_row(store, r)?;
        if let Some(m) = out.iter_mut().find(|m| m.id == Some(mid)) {
            m.devices.push(d);
        }
    }
    if with_timeline {
        for m in &mut out {
            m.timeline = load_timeline(store, m)?;
        }
    }
    Ok(out)
}

pub(crate) fn timeline_of(store: &Store, id: i64) -> Result<Timeline, StoreError> {
    let e = store.sql_err();
    let mut stmt = store
        .conn
        .prepare(
            "SELECT device_id FROM measurement_devices WHERE measurement_id = ?1 ORDER BY position",
        )
        .map_err(&e)?;
    let ids: Vec<String> = stmt
        .query_map([id], |r| r.get(0))
        .map_err(&e)?
        .collect::<Result<_, _>>()
        .map_err(&e)?;
    load_timeline_for(store, id, ids.iter().map(String::as_str))
}

fn load_timeline(store: &Store, m: &Measurement) -> Result<Timeline, StoreError> {
    let id = m.id.unwrap_or(-1);
    load_timeline_for(store, id, m.devices.iter().map(|d| d.info.id.as_str()))
}

fn load_timeline_for<'a>(
    store: &Store,
    id: i64,
    devices: impl IntoIterator<Item = &'a str>,
) -> Result<Timeline, StoreError> {
    let e = store.sql_err();
    let mut stmt = store
        .conn
        .prepare_cached(
            "SELECT device_id, t_s, energy_j, power_w, avg_power_w, sm_util_pct, mem_util_pct, mem_used_bytes,
                sm_clock_mhz, temperature_c
             FROM samples WHERE measurement_id = ?1 ORDER BY rowid",
        )
        .map_err(&e)?;
    let mut timeline = Timeline::with_devices(devices);
    let mut rows = stmt.query([id]).map_err(&e)?;
    while let Some(r) = rows.next().map_err(&e)? {
        let device: String = r.get(0).map_err(&e)?;
        let point = Point {
            t_s: r.get(1).map_err(&e)?,
            reading: Reading {
                energy_j: r.get(2).map_err(&e)?,
                power_w: r.get(3).map_err(&e)?,
                avg_power_w: r.get(4).map_err(&e)?,
                sm_util_pct: r.get(5).map_err(&e)?,
                mem_util_pct: r.get(6).map_err(&e)?,
                mem_used_bytes: r.get::<_, Option<i64>>(7).map_err(&e)?.map(|b| b as u64),
                sm_clock_mhz: r.get(8).map_err(&e)?,
                temperature_c: r.get(9).map_err(&e)?,
            },
        };
        match timeline.series.iter_mut().find(|s| s.device_id == device) {
            Some(s) => s.points.push(point),
            None => timeline.series.push(DeviceSeries {
                device_id: device,
                points: vec![point],
            }),
        }
    }
    Ok(timeline)
}
