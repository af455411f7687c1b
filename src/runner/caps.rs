//! GPU power limits as an axis of runs and sweeps: checked before anything runs, set before each
//! point (and checked to be in force), and restored at the end, on error, on Ctrl-C or SIGTERM —
//! and, after a SIGKILL or a crash, by the next start, from the journal written before the first
//! change.

use crate::cli::PowerArgs;
use anyhow::bail;
use std::fmt::Write as _;
use std::path::PathBuf;
use wattbench_core::PowerCap;
use wattbench_meter::power::journal::{self, Entry, Journal};
use wattbench_meter::power::{self, find, set_checked, Cap, GpuPower, PowerControl};

/// The limits a run or sweep sets, resolved for each capped GPU, and what it changed so far.
pub struct Caps {
    control: Box<dyn PowerControl>,
    /// The GPUs capped, as found at the start.
    gpus: Vec<GpuPower>,
    /// Each cap as asked for, with the limit of every capped GPU (mW).
    pub plan: Vec<(Cap, Vec<u32>)>,
    journal_path: PathBuf,
    changed: Vec<Entry>,
    dry_run: bool,
}

impl Caps {
    /// Checks `limits` (from `--power-limit` or a sweep file) and `args` against the GPUs' real
    /// limits and bounds, before any model loads: None without limits. `run_gpus` are the GPUs
    /// the model runs on (NVML indices).
    pub fn prepare(
        args: &PowerArgs,
        limits: &[String],
        run_gpus: &[u32],
    ) -> anyhow::Result<Option<Caps>> {
        if limits.is_empty() {
            if args.dry_run {
                bail!("--dry-run shows the power limits a run would set; give them with --power-limit");
            }
            return Ok(None);
        }
        let caps = limits
            .iter()
            .map(|c| Cap::parse(c))
            .collect::<Result<Vec<_>, _>>()?;
        let targets = if args.power_gpus.is_empty() {
            run_gpus.to_vec()
        } else {
            args.power_gpus.clone()
        };
        if targets.is_empty() {
            bail!("--power-limit caps GPUs, and this run uses none; run on --device cuda, or name the GPUs to cap with --power-gpus");
        }
        let mut control = power::open(&args.power_control)?;
        let all = control.gpus()?;
        let mut gpus = Vec::new();
        for &i in &targets {
            let g = find(&all, i)?.clone();
            if !g.supported() {
                bail!(power::PowerError::Unsupported { gpu: g.label() });
            }
            if !gpus.iter().any(|x: &GpuPower| x.index == i) {
                gpus.push(g);
            }
        }
        let mut plan = Vec::new();
        for cap in caps {
            let mw = gpus
                .iter()
                .map(|g| cap.resolve(g))
                .collect::<Result<Vec<_>, _>>()?;
            plan.push((cap, mw));
        }
        if !args.dry_run {
            if !args.allow_power_changes {
                bail!("changing GPU power limits is opt-in: add --allow-power-changes (every limit is restored at the end), or --dry-run to see what would be set");
            }
            if !control.may_change() {
                bail!(power::PowerError::NotRoot);
            }
        }
        let journal_path = journal::default_path();
        if let Some(j) = journal::read(&journal_path)? {
            bail!(
                "the power-limit journal {} shows that wattbench (pid {}) is changing power limits now; wait for it to end, or run `wattbench power-limit restore` if it is gone",
                journal_path.display(),
                j.pid
            );
        }
        Ok(Some(Caps {
            control,
            gpus,
            plan,
            journal_path,
            changed: Vec::new(),
            dry_run: args.dry_run,
        }))
    }

    /// The caps as stored with each run: as asked for, with the limit of every capped GPU.
    pub fn configs(&self) -> Vec<PowerCap> {
        self.plan
            .iter()
            .map(|(cap, mw)| PowerCap {
                requested: cap.to_string(),
                gpus: self.gpus.iter().map(|g| g.index).collect(),
                limits_w: mw.iter().map(|&m| f64::from(m) / 1000.0).collect(),
            })
            .collect()
    }

    /// What `--dry-run` prints: every capped GPU's limits now, its bounds, and each cap's limit.
    pub fn describe(&self) -> String {
        let w =
            |mw: Option<u32>| mw.map_or("?".into(), |m| format!("{:.0} W", f64::from(m) / 1000.0));
        let mut s = format!(
            "power limits through {} (dry run: nothing changes)\n",
            self.control.spec()
        );
        for (k, g) in self.gpus.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {}: limit {}, enforced {}, default {}, bounds {}–{}",
                g.label(),
                w(g.limit_mw),
                w(g.enforced_mw),
                w(g.default_mw),
                w(g.min_mw).trim_end_matches(" W"),
                w(g.max_mw)
            );
            for (cap, mw) in &self.plan {
                let _ = writeln!(s, "    {cap}: would set {}", w(Some(mw[k])));
            }
        }
        s.push_str(if self.control.may_change() {
            "this user may change the limits"
        } else {
            "this user may not change the limits (NVML needs root)"
        });
        s
    }

    /// Sets every capped GPU to cap `k` of the plan; each GPU's original limit goes to the
    /// journal (on disk) before its first change.
    pub fn apply(&mut self, k: usize) -> anyhow::Result<()> {
        if self.dry_run {
            bail!("a dry run changes no limit; this is a bug");
        }
        let mw = self.plan[k].1.clone();
        for (g, &target) in self.gpus.iter().zip(&mw) {
            if !self.changed.iter().any(|e| e.uuid == g.uuid) {
                let original = g.limit_mw.expect("checked in prepare");
                let changed = &mut self.changed;
                changed.push(Entry {
                    index: g.index,
                    uuid: g.uuid.clone(),
                    original_mw: original,
                });
                journal::write(
                    &self.journal_path,
                    &Journal {
                        version: journal::VERSION,
                        pid: std::process::id(),
                        control: self.control.spec(),
                        started: std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs()),
                        gpus: changed.clone(),
                    },
                )?;
                if changed.len() == 1 {
                    register_abort(self.journal_path.clone());
                }
            }
            set_checked(self.control.as_mut(), g.index, target)?;
        }
        Ok(())
    }

    /// Puts every changed GPU back and removes the journal; what was restored, for the user.
    pub fn restore(&mut self) -> anyhow::Result<Vec<String>> {
        let entries = std::mem::take(&mut self.changed);
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let r = journal::restore(self.control.as_mut(), &entries)?;
        if let Some((e, err)) = r.failed.first() {
            // The journal stays, so the next start tries again.
            bail!("the power limit of {} was not restored: {err}; run `sudo wattbench power-limit restore`", e.uuid);
        }
        journal::remove(&self.journal_path)?;
        Ok(r.restored)
    }
}

/// The GPUs a model on `device` runs on: `cuda` is GPU 0, `cuda:N,M` GPUs N and M; none on
/// the CPU.
pub fn gpus_of(device: &str) -> Vec<u32> {
    match device.strip_prefix("cuda") {
        None => Vec::new(),
        Some("") => vec![0],
        Some(rest) => rest
            .trim_start_matches(':')
            .split(',')
            .filter_map(|i| i.trim().parse().ok())
            .collect(),
    }
}

impl Drop for Caps {
    fn drop(&mut self) {
        match self.restore() {
            Ok(lines) if !lines.is_empty() => {
                eprintln!("power limits restored: {}", lines.join("; "))
            }
            Ok(_) => {}
            Err(e) => eprintln!("error: {e:#}"),
        }
    }
}

/// On a second Ctrl-C or SIGTERM (which ends the process at once), the limits in the journal are
/// restored first.
fn register_abort(path: PathBuf) {
    crate::signals::on_abort(Box::new(move || {
        if let Ok(Some(j)) = journal::read(&path) {
            if let Ok(mut c) = power::open(&j.control) {
                if let Ok(r) = journal::restore(c.as_mut(), &j.gpus) {
                    if r.failed.is_empty() {
                        let _ = journal::remove(&path);
                    }
                    eprintln!("power limits restored: {}", r.restored.join("; "));
                }
            }
        }
    }));
}
