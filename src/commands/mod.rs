//! One module per subcommand.

pub mod datasets;
pub mod devices;
pub mod export;
pub mod generate;
pub mod measure;
pub mod merge;
pub mod meter;
pub mod monitor;
pub mod power_limit;
pub mod report;
pub mod run;
pub mod serve;
pub mod sweep;
