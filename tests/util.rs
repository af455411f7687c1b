use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wattbench"));
    c.env_remove("WATTBENCH_DB")
        .env_remove("WATTBENCH_POWERCAP_ROOT");
    c
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs wattbench with `args` in `dir`, returning its output.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    bin()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the wattbench binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON object on the last line of stdout.
pub fn json(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    let last = out
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout; stderr: {}", stderr(o)));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {last}"))
}

/// The shared data and models: `$WATTBENCH_SHARED`, else `../shared` beside the project. Tests
/// that need it skip, saying so, only where it is absent.
pub fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("WATTBENCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if p.join("data").is_dir() {
        Some(p)
    } else {
        eprintln!(
            "skipped: no shared folder at {} (set WATTBENCH_SHARED)",
            p.display()
        );
        None
    }
}

pub fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs())
}

/// A fake powercap tree with one package and its DRAM zone.
pub fn fake_powercap(dir: &Path) -> PathBuf {
    let root = dir.join("powercap");
    for (zone, name, uj) in [
        ("intel-rapl:0", "package-0", "123456789"),
        ("intel-rapl:0/intel-rapl:0:0", "dram", "1000000"),
    ] {
        let z = root.join(zone);
        std::fs::create_dir_all(&z).unwrap();
        std::fs::write(z.join("name"), name).unwrap();
        std::fs::write(z.join("energy_uj"), uj).unwrap();
        std::fs::write(z.join("max_energy_range_uj"), "262143328850").unwrap();
    }
    root
}

/// The single integer `sql` returns from the database at `db`.
pub fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}
