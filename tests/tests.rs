//! All integration tests, in one test binary. They run the real `wattbench` binary.

mod datasets;
mod devices;
mod export;
mod generate;
mod measure;
mod monitor;
mod power;
mod remote_meters;
mod report;
mod run;
mod serve;
mod slurm;
mod sweep;
mod util;
