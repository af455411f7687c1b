#![allow(dead_code)]
//! Where the tests find the shared data: `$WATTBENCH_SHARED`, else `../shared` beside the
//! workspace. Tests that need it skip, saying so, only where that folder is absent.

use std::path::{Path, PathBuf};

pub fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("WATTBENCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if p.join("data").is_dir() {
        Some(p)
    } else {
        eprintln!(
            "skipped: no shared data folder at {} (set WATTBENCH_SHARED)",
            p.display()
        );
        None
    }
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn smollm_gguf(shared: &Path) -> PathBuf {
    shared.join("models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf")
}
