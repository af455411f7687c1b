//! Schema versions. The version lives in SQLite's `user_version`; `application_id` marks the file
//! as wattbench's. Migrations only ever move forward, each in its own transaction, and a database
//! from a newer wattbench is refused before anything is written to it.

use crate::error::StoreError;
use rusqlite::Connection;
use std::path::Path;

/// `application_id` of wattbench databases ("WATT").
pub const APPLICATION_ID: i32 = 0x5741_5454;

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_measurements.sql"),
    include_str!("migrations/0002_runs.sql"),
    include_str!("migrations/0003_request_latency.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sql {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(sql(path))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(sql(path))?;
        if tables > 0 && app != APPLICATION_ID {
            return Err(StoreError::Foreign {
                path: path.to_path_buf(),
            });
        }
    } else if app != APPLICATION_ID {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
        });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        tx.execute_batch(m).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
            i + 1
        ))
        .map_err(sql(path))?;
        tx.commit().map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}
