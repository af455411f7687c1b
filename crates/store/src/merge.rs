//! Merging results databases: the per-task databases of a sweep run as a cluster job array
//! become one. Each source is opened (and migrated) like any database, then its measurements and
//! runs are copied with new row ids in one transaction per source. A run already present — the
//! same configuration key, repeat and start time — is skipped with everything that belongs to
//! it, and so is a measurement with the same start, host and command, so merging twice adds
//! nothing.

use crate::db::Store;
use crate::error::StoreError;
use rusqlite::{params, OptionalExtension};
use std::path::Path;

/// What one merge added and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MergeCount {
    pub runs_added: usize,
    pub runs_skipped: usize,
    pub measurements_added: usize,
    pub measurements_skipped: usize,
}

impl std::ops::AddAssign for MergeCount {
    fn add_assign(&mut self, o: MergeCount) {
        self.runs_added += o.runs_added;
        self.runs_skipped += o.runs_skipped;
        self.measurements_added += o.measurements_added;
        self.measurements_skipped += o.measurements_skipped;
    }
}

/// The columns of `table` in the main database, in order.
fn columns(tx: &rusqlite::Transaction<'_>, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = tx.prepare(&format!("PRAGMA main.table_info({table})"))?;
    let cols = st
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(cols)
}

/// Copies the rows of `src.table` that match `filter` (on column `key_col` = `key`), with
/// `overrides` (column, SQL expression) replacing columns; returns the rows copied.
fn copy(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    key_col: &str,
    key: i64,
    overrides: &[(&str, String)],
) -> rusqlite::Result<usize> {
    let cols = columns(tx, table)?;
    let (names, values): (Vec<String>, Vec<String>) = cols
        .iter()
        .filter_map(|c| match overrides.iter().find(|(o, _)| o == c) {
            Some((_, expr)) if expr.is_empty() => None,
            Some((_, expr)) => Some((c.clone(), expr.clone())),
            None => Some((c.clone(), c.clone())),
        })
        .unzip();
    tx.execute(
        &format!(
            "INSERT INTO main.{table} ({}) SELECT {} FROM src.{table} WHERE {key_col} = ?1",
            names.join(", "),
            values.join(", ")
        ),
        params![key],
    )
}

impl Store {
    /// Merges the database at `source` into this one (see the module documentation).
    pub fn merge_from(&mut self, source: &Path) -> Result<MergeCount, StoreError> {
        if source.canonicalize().ok() == self.path().canonicalize().ok() {
            return Err(StoreError::MergeIntoItself {
                path: source.to_path_buf(),
            });
        }
        // Opening migrates an older source to this schema, and refuses a newer or foreign one.
        drop(Store::open_existing(source)?);
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        self.conn
            .execute(
                "ATTACH DATABASE ?1 AS src",
                params![source.to_string_lossy()],
            )
            .map_err(sql)?;
        let result = self.merge_attached();
        let detach = self.conn.execute("DETACH DATABASE src", []);
        let count = result.map_err(sql)?;
        detach.map_err(sql)?;
        Ok(count)
    }

    fn merge_attached(&mut self) -> rusqlite::Result<MergeCount> {
        let tx = self.conn.transaction()?;
        let mut count = MergeCount::default();
        let mut moved: std::collections::HashMap<i64, Option<i64>> = Default::default();
        let measurements: Vec<(i64, f64, String, String)> = {
            let mut st = tx.prepare(
                "SELECT id, started_unix_s, host, command_json FROM src.measurements ORDER BY id",
            )?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows
        };
        for (id, started, host, command) in measurements {
            let existing: Option<i64> = tx
                .query_row(
                    "SELECT id FROM main.measurements WHERE started_unix_s = ?1 AND host = ?2 AND command_json = ?3",
                    params![started, host, command],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(e) = existing {
                count.measurements_skipped += 1;
                moved.insert(id, Some(e));
                continue;
            }
            copy(&tx, "measurements", "id", id, &[("id", String::new())])?;
            let new = tx.last_insert_rowid();
            let m = new.to_string();
            copy(
                &tx,
                "measurement_devices",
                "measurement_id",
                id,
                &[("measurement_id", m.clone())],
            )?;
            copy(
                &tx,
                "samples",
                "measurement_id",
                id,
                &[("measurement_id", m)],
            )?;
            moved.insert(id, Some(new));
            count.measurements_added += 1;
        }
        let runs: Vec<(i64, String, i64, String, Option<i64>)> = {
            let mut st = tx.prepare(
                "SELECT id, key, repeat, started_at, measurement_id FROM src.runs ORDER BY id",
            )?;
            let rows = st
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows
        };
        for (id, key, repeat, started, measurement) in runs {
            let exists: bool = tx
                .query_row(
                    "SELECT 1 FROM main.runs WHERE key = ?1 AND repeat = ?2 AND started_at = ?3",
                    params![key, repeat, started],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if exists {
                count.runs_skipped += 1;
                continue;
            }
            let m = measurement
                .and_then(|m| moved.get(&m).copied().flatten())
                .map_or("NULL".to_string(), |m| m.to_string());
            copy(
                &tx,
                "runs",
                "id",
                id,
                &[("id", String::new()), ("measurement_id", m)],
            )?;
            let new = tx.last_insert_rowid().to_string();
            copy(&tx, "batches", "run_id", id, &[("run_id", new.clone())])?;
            copy(&tx, "requests", "run_id", id, &[("run_id", new)])?;
            count.runs_added += 1;
        }
        tx.commit()?;
        Ok(count)
    }
}
