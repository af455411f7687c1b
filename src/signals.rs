//! Ctrl-C and SIGTERM during runs and sweeps: the first asks the work to stop after the current
//! batch (what was measured is kept); the second ends the process at once, with status 130, after
//! running the abort hooks (which put changed GPU settings back).

use anyhow::Context as _;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

type Hook = Box<dyn Fn() + Send>;

static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// Runs `hook` before the process ends on a second signal.
pub fn on_abort(hook: Hook) {
    HOOKS.lock().unwrap_or_else(|e| e.into_inner()).push(hook);
}

/// Sets `stop` on the first SIGINT or SIGTERM; on the next, runs the abort hooks and exits.
pub fn install(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("wattbench-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if stop.swap(true, Ordering::SeqCst) {
                    for hook in HOOKS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                        hook();
                    }
                    std::process::exit(130);
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}
