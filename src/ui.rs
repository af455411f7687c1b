//! Text formatting for the terminal: optional numbers, tables, warnings.

use wattbench_core::Warning;

/// A number with `digits` decimals, or "n/a" when it was not measured.
pub fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

/// Bytes as GiB with one decimal, or "n/a".
pub fn gib(v: Option<u64>) -> String {
    v.map_or_else(
        || "n/a".to_string(),
        |b| format!("{:.1}", b as f64 / (1u64 << 30) as f64),
    )
}

/// The first `left` columns left-aligned, the others right-aligned, widths fitted to the content.
pub fn table(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i < left {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Warnings as an indented list, each naming what to do.
pub fn warnings(ws: &[Warning]) -> String {
    ws.iter()
        .map(|w| format!("  warning: {w}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A warning as JSON: its typed fields plus the human message.
pub fn warning_json(w: &Warning) -> serde_json::Value {
    let mut v = serde_json::to_value(w).expect("warnings always serialize; this is a bug");
    if let Some(obj) = v.as_object_mut() {
        obj.insert("message".into(), serde_json::Value::String(w.to_string()));
    }
    v
}
