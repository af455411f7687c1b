//! Benchmark runs: a sample of prompts cut into batches, each batch generated inside its own
//! energy window, and the records the paper's figures are computed from.
//!
//! [`plan`] turns a dataset into token ids and lengths, [`execute`] warms up and runs the batches
//! of one repeat, [`summary`] aggregates repeats into the figures shown and printed as JSON, and
//! [`progress`] draws the live status line.

pub mod caps;
pub mod execute;
pub mod grid;
pub mod maxbatch;
pub mod plan;
pub mod progress;
pub mod serving;
pub mod session;
pub mod setup;
pub mod slurm;
pub mod summary;
