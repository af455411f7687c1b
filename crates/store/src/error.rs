use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the results database {}: {source}; pass --db PATH (or set WATTBENCH_DB) to a writable location", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("no results database at {}; run `wattbench measure` first, or pass --db PATH (or set WATTBENCH_DB)", path.display())]
    Missing { path: PathBuf },

    #[error(
        "the results database {} was written by a newer wattbench (schema version {found}; this wattbench knows up to {supported}); \
         upgrade wattbench, or pass --db PATH to use another database. It was left untouched",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("{} is not a wattbench results database (it holds other tables); pass --db PATH to a new or wattbench file", path.display())]
    Foreign { path: PathBuf },

    #[error("results database {}: {source}", path.display())]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("results database {}: stored {what} is not valid: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        message: String,
    },

    #[error("{} is the database the others are merged into; pass another --db, or move it out of the folder", path.display())]
    MergeIntoItself { path: PathBuf },

    #[error("writing the export failed: {0}")]
    Export(String),
}
