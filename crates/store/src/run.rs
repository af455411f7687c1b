//! Rows of the `runs`, `batches` and `requests` tables.

use crate::db::Store;
use crate::error::StoreError;
use crate::measurement::insert_in;
use rusqlite::params;
use std::collections::HashSet;
use wattbench_core::{BatchRecord, Measurement, RequestRecord, RunRecord, RunStatus};

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("record types always serialize; this is a bug")
}

/// Stores a run, its energy window (if measured), batches and requests in one transaction.
pub(crate) fn insert(
    store: &mut Store,
    run: &RunRecord,
    window: Option<&Measurement>,
) -> Result<(i64, Option<i64>), StoreError> {
    let path = store.path.clone();
    let err = |source| StoreError::Sql {
        path: path.clone(),
        source,
    };
    let tx = store.conn.transaction().map_err(err)?;
    let measurement_id = match window {
        Some(m) => Some(insert_in(&tx, &path, m)?),
        None => run.measurement_id,
    };
    let c = &run.config;
    tx.execute(
        "INSERT INTO runs (key, sweep, repeat, status, reason, measurement_id, model, dataset, device, batch_size,
            max_new_tokens, started_at, wall_s, warmup_s, harness_s, energy_j, config_json, notes_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            run.key,
            run.sweep,
            run.repeat as i64,
            run.status.as_str(),
            run.reason,
            measurement_id,
            c.model,
            c.dataset,
            c.device,
            c.batch_size as i64,
            c.max_new_tokens,
            run.started_at,
            run.wall_s,
            run.warmup_s,
            run.harness_s,
            run.energy_j,
            json(c),
            json(&run.notes),
        ],
    )
    .map_err(err)?;
    let id = tx.last_insert_rowid();
    {
        let mut b = tx
            .prepare(
                "INSERT INTO batches (run_id, idx, start_s, wall_s, prefill_s, decode_s, prompts, padded_prompt_len,
                    input_tokens, output_tokens, energy_j, avg_power_w)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .map_err(err)?;
        for x in &run.batches {
            b.execute(params![
                id,
                x.index as i64,
                x.start_s,
                x.wall_s,
                x.prefill_s,
                x.decode_s,
                x.prompts as i64,
                x.padded_prompt_len as i64,
                x.input_tokens as i64,
                x.output_tokens as i64,
                x.energy_j,
                x.avg_power_w,
            ])
            .map_err(err)?;
        }
        let mut r = tx
            .prepare(
                "INSERT INTO requests (run_id, batch, position, dataset_index, input_tokens, output_tokens, words,
                    finish, energy_j, latency_s, output_text, correct, ttft_s, tpot_s)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .map_err(err)?;
        for x in &run.requests {
            r.execute(params![
                id,
                x.batch as i64,
                x.position as i64,
                x.dataset_index as i64,
                x.input_tokens as i64,
                x.output_tokens as i64,
                x.words.map(|w| w as i64),
                x.finish,
                x.energy_j,
                x.latency_s,
                x.output_text,
                x.correct,
                x.ttft_s,
                x.tpot_s,
            ])
            .map_err(err)?;
        }
    }
    tx.commit().map_err(err)?;
    Ok((id, measurement_id))
}

/// Every stored run in id order, with batches; requests only when `with_requests`.
pub(crate) fn load_all(store: &Store, with_requests: bool) -> Result<Vec<RunRecord>, StoreError> {
    let e = store.sql_err();
    let corrupt = |what: &'static str, message: String| StoreError::Corrupt {
        path: store.path.clone(),
        what,
        message,
    };
    let mut stmt = store
        .conn
        .prepare(
            "SELECT id, key, sweep, repeat, status, reason, measurement_id, started_at, wall_s, warmup_s,
                harness_s, energy_j, config_json, notes_json
             FROM runs ORDER BY id",
        )
        .map_err(&e)?;
    let mut rows = stmt.query([]).map_err(&e)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(&e)? {
        let status: String = r.get(4).map_err(&e)?;
        let config: String = r.get(12).map_err(&e)?;
        let notes: String = r.get(13).map_err(&e)?;
        out.push(RunRecord {
            id: Some(r.get(0).map_err(&e)?),
            key: r.get(1).map_err(&e)?,
            sweep: r.get(2).map_err(&e)?,
            repeat: r.get::<_, i64>(3).map_err(&e)? as usize,
            status: RunStatus::parse(&status).ok_or_else(|| corrupt("run status", status))?,
            reason: r.get(5).map_err(&e)?,
            measurement_id: r.get(6).map_err(&e)?,
            started_at: r.get(7).map_err(&e)?,
            wall_s: r.get(8).map_err(&e)?,
            warmup_s: r.get(9).map_err(&e)?,
            harness_s: r.get(10).map_err(&e)?,
            energy_j: r.get(11).map_err(&e)?,
            config: serde_json::from_str(&config)
                .map_err(|x| corrupt("run configuration", x.to_string()))?,
            notes: serde_json::from_str(&notes).map_err(|x| corrupt("run notes", x.to_string()))?,
            batches: Vec::new(),
            requests: Vec::new(),
        });
    }
    let index: std::collections::HashMap<i64, usize> = out
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.id.map(|id| (id, i)))
        .collect();
    let mut stmt = store
        .conn
        .prepare(
            "SELECT run_id, idx, start_s, wall_s, prefill_s, decode_s, prompts, padded_prompt_len, input_tokens,
                output_tokens, energy_j, avg_power_w
             FROM batches ORDER BY run_id, idx",
        )
        .map_err(&e)?;
    let mut rows = stmt.query([]).map_err(&e)?;
    let mut batches = Vec::new();
    while let Some(r) = rows.next().map_err(&e)? {
        let n = |i: usize| r.get::<_, i64>(i).map_err(&e);
        batches.push((
            n(0)?,
            BatchRecord {
                index: n(1)? as usize,
                start_s: r.get(2).map_err(&e)?,
                wall_s: r.get(3).map_err(&e)?,
                prefill_s: r.get(4).map_err(&e)?,
                decode_s: r.get(5).map_err(&e)?,
                prompts: n(6)? as usize,
                padded_prompt_len: n(7)? as usize,
                input_tokens: n(8)? as u64,
                output_tokens: n(9)? as u64,
                energy_j: r.get(10).map_err(&e)?,
                avg_power_w: r.get(11).map_err(&e)?,
            },
        ));
    }
    for (id, b) in batches {
        if let Some(&i) = index.get(&id) {
            out[i].batches.push(b);
        }
    }
    if with_requests {
        let mut stmt = store
            .conn
            .prepare(
                "SELECT run_id, batch, position, dataset_index, input_tokens, output_tokens, words, finish, energy_j,
                    latency_s, output_text, correct, ttft_s, tpot_s
                 FROM requests ORDER BY run_id, batch, position",
            )
            .map_err(&e)?;
        let mut rows = stmt.query([]).map_err(&e)?;
        let mut requests = Vec::new();
        while let Some(r) = rows.next().map_err(&e)? {
            let n = |i: usize| r.get::<_, i64>(i).map_err(&e);
            requests.push((
                n(0)?,
                RequestRecord {
                    batch: n(1)? as usize,
                    position: n(2)? as usize,
                    dataset_index: n(3)? as usize,
                    input_tokens: n(4)? as u64,
                    output_tokens: n(5)? as u64,
                    words: r.get::<_, Option<i64>>(6).map_err(&e)?.map(|w| w as u64),
                    finish: r.get(7).map_err(&e)?,
                    energy_j: r.get(8).map_err(&e)?,
                    latency_s: r.get(9).map_err(&e)?,
                    output_text: r.get(10).map_err(&e)?,
                    correct: r.get(11).map_err(&e)?,
                    ttft_s: r.get(12).map_err(&e)?,
                    tpot_s: r.get(13).map_err(&e)?,
                },
            ));
        }
        for (id, q) in requests {
            if let Some(&i) = index.get(&id) {
                out[i].requests.push(q);
            }
        }
    }
    Ok(out)
}

/// The runs that need no rerun, for resuming: complete repeats, and configurations found
/// infeasible (all their repeats).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Finished {
    pub complete: HashSet<(String, usize)>,
    pub infeasible: HashSet<String>,
}

impl Finished {
    /// Whether repeat `repeat` of the configuration `key` is done.
    pub fn contains(&self, key: &str, repeat: usize) -> bool {
        self.infeasible.contains(key) || self.complete.contains(&(key.to_string(), repeat))
    }
}

pub(crate) fn finished(store: &Store) -> Result<Finished, StoreError> {
    let e = store.sql_err();
    let mut stmt = store
        .conn
        .prepare("SELECT key, repeat, status FROM runs WHERE status IN ('complete', 'infeasible')")
        .map_err(&e)?;
    let mut rows = stmt.query([]).map_err(&e)?;
    let mut out = Finished::default();
    while let Some(r) = rows.next().map_err(&e)? {
        let key: String = r.get(0).map_err(&e)?;
        let status: String = r.get(2).map_err(&e)?;
        if status == "infeasible" {
            out.infeasible.insert(key);
        } else {
            out.complete
                .insert((key, r.get::<_, i64>(1).map_err(&e)? as usize));
        }
    }
    Ok(out)
}
