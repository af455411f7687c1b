//! All integration tests, in one test binary. They run the real `wattbench` binary.

mod devices;
mod export;
mod measure;
mod monitor;
mod util;
