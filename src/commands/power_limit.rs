//! `wattbench power-limit show|restore`: GPU power limits as they are, and putting back what a
//! stopped wattbench left changed.

use crate::cli::{PowerLimitAction, PowerLimitArgs};
use crate::ui;
use anyhow::bail;
use std::process::ExitCode;
use wattbench_meter::power::{self, journal};

pub fn run(args: PowerLimitArgs) -> anyhow::Result<ExitCode> {
    let path = journal::default_path();
    match args.action {
        PowerLimitAction::Show { power_control } => {
            let mut control = power::open(&power_control)?;
            let w = |mw: Option<u32>| {
                mw.map_or("unsupported".into(), |m| {
                    format!("{:.0}", f64::from(m) / 1000.0)
                })
            };
            let rows: Vec<Vec<String>> = control
                .gpus()?
                .iter()
                .map(|g| {
                    vec![
                        format!("gpu{}", g.index),
                        g.name.clone(),
                        g.uuid.clone(),
                        w(g.limit_mw),
                        w(g.enforced_mw),
                        w(g.default_mw),
                        format!("{}–{}", w(g.min_mw), w(g.max_mw)),
                    ]
                })
                .collect();
            println!(
                "{}",
                ui::table(
                    &[
                        "GPU",
                        "name",
                        "UUID",
                        "limit W",
                        "enforced W",
                        "default W",
                        "bounds W"
                    ],
                    &rows,
                    3
                )
            );
            match journal::read(&path)? {
                None => println!("\nno journal of changes at {}", path.display()),
                Some(j) => println!(
                    "\njournal {}: wattbench pid {} ({}) changed {} GPU(s) through {}",
                    path.display(),
                    j.pid,
                    if journal::owner_alive(j.pid) {
                        "still running"
                    } else {
                        "gone: run `wattbench power-limit restore`"
                    },
                    j.gpus.len(),
                    j.control
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        PowerLimitAction::Restore => {
            let Some(j) = journal::read(&path)? else {
                println!("nothing to restore: no journal at {}", path.display());
                return Ok(ExitCode::SUCCESS);
            };
            if journal::owner_alive(j.pid) && j.pid != std::process::id() {
                bail!(
                    "wattbench pid {} is still changing power limits (journal {}); stop it (Ctrl-C restores them) and try again",
                    j.pid,
                    path.display()
                );
            }
            match journal::recover(&path)? {
                Some(msg) => println!("{msg}"),
                None => println!("nothing to restore"),
            }
            Ok(if journal::read(&path)?.is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
