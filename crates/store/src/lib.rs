//! The results database: SQLite with a versioned schema, one committed transaction per finished
//! record, and CSV/JSON export.

pub mod db;
pub mod error;
pub mod export;
mod measurement;
mod merge;
mod migrate;
mod run;

pub use db::{Store, DB_ENV};
pub use error::StoreError;
pub use merge::MergeCount;
pub use migrate::SCHEMA_VERSION;
pub use run::Finished;
