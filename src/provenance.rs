//! Where a record was made: tool version and commit, host, OS, kernel, CPU and command line.

use wattbench_core::Provenance;

pub const GIT_SHA: &str = env!("WATTBENCH_GIT_SHA");

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        read("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into())
    }
}

fn os_name() -> String {
    read("/etc/os-release")
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string())
}

fn cpu_model() -> Option<String> {
    read("/proc/cpuinfo")?.lines().find_map(|l| {
        l.strip_prefix("model name")
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
    })
}

pub fn collect() -> Provenance {
    Provenance {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        git_sha: GIT_SHA.to_string(),
        host: hostname(),
        os: os_name(),
        kernel: read("/proc/sys/kernel/osrelease"),
        cpu_model: cpu_model(),
        argv: std::env::args().collect(),
    }
}

/// A Unix time as RFC 3339 in UTC with milliseconds, as records store their times.
pub fn rfc3339(unix_s: f64) -> String {
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(unix_s.max(0.0));
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
