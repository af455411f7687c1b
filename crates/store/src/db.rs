//! Opening the database and reading or writing records.

use crate::error::StoreError;
use crate::migrate::{migrate, SCHEMA_VERSION};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use wattbench_core::{Measurement, RunRecord};

/// Environment variable naming the database when `--db` is not given.
pub const DB_ENV: &str = "WATTBENCH_DB";
/// Default database file, in the working directory.
pub const DEFAULT_DB: &str = "wattbench.db";

pub struct Store {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, OpenFlags::default())
    }

    /// Opens an existing database for reading; never creates one.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        Self::open_with(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    fn open_with(path: &Path, flags: OpenFlags) -> Result<Store, StoreError> {
        let mut conn =
            Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Self::configure(&conn, path)?;
        migrate(&mut conn, path)?;
        Self::enable_wal(&conn, path)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Settings that write nothing, so that a database we must refuse stays untouched.
    fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .and_then(|_| conn.pragma_update(None, "foreign_keys", "ON"))
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })
    }

    /// WAL keeps readers (an export) from blocking a running measurement; every commit is durable.
    fn enable_wal(conn: &Connection, path: &Path) -> Result<(), StoreError> {
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })
    }

    /// The database path given as `--db`, else `$WATTBENCH_DB`, else `wattbench.db` here.
    pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .or_else(|| {
                std::env::var_os(DB_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DB))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> u32 {
        SCHEMA_VERSION
    }

    /// Stores a finished measurement with its devices and timeline in one transaction, committed
    /// before returning. Returns its id.
    pub fn insert_measurement(&mut self, m: &Measurement) -> Result<i64, StoreError> {
        crate::measurement::insert(self, m)
    }

    /// Every stored measurement in id order; timelines only when `with_timeline`.
    pub fn measurements(&self, with_timeline: bool) -> Result<Vec<Measurement>, StoreError> {
        crate::measurement::load_all(self, with_timeline)
    }

    /// The power timeline of measurement `id` (empty when it has none).
    pub fn measurement_timeline(&self, id: i64) -> Result<wattbench_core::Timeline, StoreError> {
        crate::measurement::timeline_of(self, id)
    }

    /// Stores a run with its energy window (devices and timeline), batches and requests in one
    /// transaction, committed before returning. Returns the run's id and its window's.
    pub fn insert_run(
        &mut self,
        run: &RunRecord,
        window: Option<&Measurement>,
    ) -> Result<(i64, Option<i64>), StoreError> {
        crate::run::insert(self, run, window)
    }

    /// Every stored run in id order, with its batches; with its requests when `with_requests`.
    pub fn runs(&self, with_requests: bool) -> Result<Vec<RunRecord>, StoreError> {
        crate::run::load_all(self, with_requests)
    }

    /// The runs that need no rerun (complete repeats, infeasible configurations), for resuming.
    pub fn finished_runs(&self) -> Result<crate::run::Finished, StoreError> {
        crate::run::finished(self)
    }

    pub(crate) fn sql_err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }
}
