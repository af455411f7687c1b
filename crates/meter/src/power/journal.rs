//! The power-limit journal: which GPUs a process changed and their limits before, written (and
//! synced to disk) before the first change and removed once every limit is back. A journal left by
//! a process that is gone (SIGKILL, a crash, a power cut) is repaired by the next start.
//!
//! GPUs are named by UUID, taken from the GPU itself when it is first changed, so that a journal
//! never restores a different GPU that happens to have the same index later.

use super::{set_checked, PowerControl, PowerError};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub const VERSION: u32 = 1;

/// One changed GPU and its limit before the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub index: u32,
    pub uuid: String,
    pub original_mw: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    /// The process that made the changes.
    pub pid: u32,
    /// How to reach the GPUs again ([`PowerControl::spec`]).
    pub control: String,
    /// Unix seconds of the first change.
    pub started: u64,
    pub gpus: Vec<Entry>,
}

/// `WATTBENCH_POWER_JOURNAL`, else `$XDG_STATE_HOME/wattbench/power-journal.json`, else
/// `~/.local/state/wattbench/power-journal.json`.
pub fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("WATTBENCH_POWER_JOURNAL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("wattbench").join("power-journal.json")
}

fn journal_error(path: &Path, reason: impl ToString) -> PowerError {
    PowerError::Journal {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The journal at `path`, if there is one.
pub fn read(path: &Path) -> Result<Option<Journal>, PowerError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(journal_error(path, e)),
    };
    let j: Journal = serde_json::from_str(&text).map_err(|e| {
        journal_error(path, format!("{e}; restore the limits it lists by hand (nvidia-smi -i N -pl WATTS) and delete it"))
    })?;
    if j.version != VERSION {
        return Err(journal_error(
            path,
            format!(
                "version {} is not {VERSION}; it was written by another wattbench",
                j.version
            ),
        ));
    }
    Ok(Some(j))
}

/// Writes `j` to `path` durably: a temporary file, synced, renamed over the journal, and the
/// folder synced.
pub fn write(path: &Path, j: &Journal) -> Result<(), PowerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| journal_error(path, e))?;
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(j).expect("a journal serializes");
    let mut f = std::fs::File::create(&tmp).map_err(|e| journal_error(path, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| journal_error(path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub fn remove(path: &Path) -> Result<(), PowerError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(journal_error(path, e)),
    }
}

/// Whether process `pid` is alive and is a wattbench (not a later process that reused the id).
pub fn owner_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    // SAFETY: kill with signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => String::from_utf8_lossy(&cmd).contains("wattbench"),
        Err(_) => true,
    }
}

/// What restoring a journal did.
#[derive(Debug, Default)]
pub struct Restored {
    /// `gpuN (name, uuid): W` for every GPU set back (or already back).
    pub restored: Vec<String>,
    /// Entries whose GPU is not on this machine now: nothing to restore.
    pub missing: Vec<Entry>,
    /// Entries that could not be restored, and why.
    pub failed: Vec<(Entry, PowerError)>,
}

/// Sets every GPU of `entries` back to its original limit, found by UUID.
pub fn restore(control: &mut dyn PowerControl, entries: &[Entry]) -> Result<Restored, PowerError> {
    let gpus = control.gpus()?;
    let mut out = Restored::default();
    for e in entries {
        let Some(g) = gpus.iter().find(|g| g.uuid == e.uuid) else {
            out.missing.push(e.clone());
            continue;
        };
        let watts = f64::from(e.original_mw) / 1000.0;
        if g.limit_mw == Some(e.original_mw) && g.enforced_mw.is_none_or(|x| x == e.original_mw) {
            out.restored.push(format!("{}: {watts:.0} W", g.label()));
            continue;
        }
        match set_checked(control, g.index, e.original_mw) {
            Ok(()) => out.restored.push(format!("{}: {watts:.0} W", g.label())),
            Err(err) => out.failed.push((e.clone(), err)),
        }
    }
    Ok(out)
}

/// Restores and removes the journal at `path` if the process that wrote it is gone. Returns
/// what was done, for the user (None: no journal, or its owner still runs). GPUs no longer on the
/// machine are reported and dropped; a journal whose limits could not all be restored stays, with
/// only those GPUs in it.
pub fn recover(path: &Path) -> Result<Option<String>, PowerError> {
    let Some(j) = read(path)? else {
        return Ok(None);
    };
    if owner_alive(j.pid) {
        return Ok(None);
    }
    let mut control = super::open(&j.control)?;
    let r = restore(control.as_mut(), &j.gpus)?;
    let mut lines = vec![format!(
        "wattbench (pid {}) changed GPU power limits and ended before restoring them; restored from {}:",
        j.pid,
        path.display()
    )];
    lines.extend(r.restored.iter().map(|l| format!("  {l}")));
    for m in &r.missing {
        lines.push(format!(
            "  {} (gpu{} then) is not on this machine now: its limit of {:.0} W was not restored",
            m.uuid,
            m.index,
            f64::from(m.original_mw) / 1000.0
        ));
    }
    if r.failed.is_empty() {
        remove(path)?;
    } else {
        for (e, err) in &r.failed {
            lines.push(format!("  {} not restored: {err}", e.uuid));
        }
        let left = Journal {
            gpus: r.failed.iter().map(|(e, _)| e.clone()).collect(),
            ..j
        };
        write(path, &left)?;
        lines.push(
            "  the journal keeps these GPUs; run `sudo wattbench power-limit restore` to retry"
                .into(),
        );
    }
    Ok(Some(lines.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::fake::{FakeControl, FakeState};

    fn setup(dir: &Path, n: u32) -> (String, PathBuf) {
        let state = dir.join("gpus.json");
        FakeState::h100s(n).write(&state).unwrap();
        (
            format!("fake:{}", state.display()),
            dir.join("journal.json"),
        )
    }

    #[test]
    fn a_dead_owners_journal_is_restored_by_uuid_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, path) = setup(dir.path(), 2);
        let mut c = FakeControl::open(spec.strip_prefix("fake:").unwrap()).unwrap();
        c.set_limit(1, 300_000).unwrap();
        let j = Journal {
            version: VERSION,
            // No process has this id (above the kernel's pid_max).
            pid: 4_194_305,
            control: spec.clone(),
            started: 0,
            gpus: vec![Entry {
                index: 1,
                uuid: "GPU-fake-0001".into(),
                original_mw: 700_000,
            }],
        };
        write(&path, &j).unwrap();
        assert_eq!(read(&path).unwrap(), Some(j));
        let msg = recover(&path).unwrap().unwrap();
        assert!(
            msg.contains("gpu1 (Simulated H100, GPU-fake-0001): 700 W"),
            "{msg}"
        );
        assert!(!path.exists());
        let s = FakeState::read(Path::new(spec.strip_prefix("fake:").unwrap())).unwrap();
        assert_eq!(s.gpus[1].limit_mw, Some(700_000));
        assert_eq!(s.gpus[0].limit_mw, Some(700_000));
        assert_eq!(s.calls.len(), 2, "one change, one restore: {:?}", s.calls);
        assert_eq!(recover(&path).unwrap(), None);
    }

    #[test]
    fn a_live_owners_journal_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, path) = setup(dir.path(), 1);
        let j = Journal {
            version: VERSION,
            pid: std::process::id(),
            control: spec,
            started: 0,
            gpus: vec![],
        };
        write(&path, &j).unwrap();
        assert_eq!(recover(&path).unwrap(), None);
        assert!(path.exists());
    }

    #[test]
    fn gpus_that_are_gone_are_reported_and_dropped_and_failures_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, path) = setup(dir.path(), 2);
        let state = PathBuf::from(spec.strip_prefix("fake:").unwrap());
        let mut s = FakeState::read(&state).unwrap();
        s.gpus[0].limit_mw = Some(250_000);
        s.gpus[0].enforced_mw = Some(250_000);
        s.fail_calls = vec![1];
        s.write(&state).unwrap();
        let entry = |index: u32, uuid: &str| Entry {
            index,
            uuid: uuid.into(),
            original_mw: 700_000,
        };
        let j = Journal {
            version: VERSION,
            pid: 4_194_305,
            control: spec,
            started: 0,
            gpus: vec![entry(0, "GPU-fake-0000"), entry(5, "GPU-elsewhere")],
        };
        write(&path, &j).unwrap();
        let msg = recover(&path).unwrap().unwrap();
        assert!(
            msg.contains("GPU-elsewhere (gpu5 then) is not on this machine now"),
            "{msg}"
        );
        assert!(msg.contains("GPU-fake-0000 not restored: "), "{msg}");
        let left = read(&path).unwrap().unwrap();
        assert_eq!(left.gpus, vec![entry(0, "GPU-fake-0000")]);
        // The next start retries, and the simulated failure was only the first call.
        let msg = recover(&path).unwrap().unwrap();
        assert!(msg.contains("GPU-fake-0000): 700 W"), "{msg}");
        assert!(!path.exists());
    }

    #[test]
    fn a_journal_that_is_not_json_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.json");
        std::fs::write(&path, "{").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("nvidia-smi -i N -pl WATTS"), "{e}");
    }
}
