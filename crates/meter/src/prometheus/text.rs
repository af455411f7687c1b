//! The Prometheus text exposition format (version 0.0.4): reading samples out of a scrape, and
//! writing them for `wattbench meter --listen`.

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a scrape. Comments and blank lines are skipped; a page with no sample line, or one
/// that is HTML, is an error that says what came back instead.
pub fn parse(body: &str) -> Result<Vec<Sample>, String> {
    let head = body.trim_start();
    if head.starts_with('<') {
        return Err(format!(
            "it returned HTML, not Prometheus metrics (starts with {:?})",
            first_line(head)
        ));
    }
    let mut samples = Vec::new();
    for (n, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(sample(line).map_err(|e| {
            format!(
                "line {} is not a Prometheus sample ({e}): {:?}",
                n + 1,
                first_line(line)
            )
        })?);
    }
    if samples.is_empty() {
        return Err(format!(
            "it returned no Prometheus samples (starts with {:?})",
            first_line(head)
        ));
    }
    Ok(samples)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(60).collect()
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("{name:?} is not a metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(r)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("{v:?} is not a number"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

type Labels = Vec<(String, String)>;

/// `name="value",...}` → the labels and what follows the closing brace.
fn label_set(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').ok_or("a label without a value")?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an unterminated label value".into()),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        labels.push((key, value));
        s = s[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        }
    }
}

/// Escapes a label value for the text format.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes a metric family: its HELP and TYPE lines, then one line per `(labels, value)`.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str, rows: &[(String, f64)]) {
    use std::fmt::Write;
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dcgm_exporter_lines() {
        let body = "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n\
                    # TYPE DCGM_FI_DEV_POWER_USAGE gauge\n\
                    DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"GPU-1a\",Hostname=\"n1\",modelName=\"NVIDIA H100 80GB HBM3\"} 512.25\n\
                    DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=\"0\",Hostname=\"n1\",note=\"a \\\"q\\\", b\"} 123456789 1700000000000\n\
                    up 1\n";
        let s = parse(body).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "DCGM_FI_DEV_POWER_USAGE");
        assert_eq!(s[0].label("modelName"), Some("NVIDIA H100 80GB HBM3"));
        assert_eq!(s[0].value, 512.25);
        assert_eq!(s[1].label("note"), Some("a \"q\", b"));
        assert_eq!(s[1].value, 123456789.0);
        assert!(s[2].labels.is_empty());
    }

    #[test]
    fn refuses_pages_that_are_not_metrics() {
        let e = parse("<!doctype html><html><body>login</body></html>").unwrap_err();
        assert!(e.contains("HTML"), "{e}");
        let e = parse("# only comments\n\n").unwrap_err();
        assert!(e.contains("no Prometheus samples"), "{e}");
        let e = parse("hello world, this is a page\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn escaped_values_read_back() {
        let v = "a\"b\\c\nd";
        let line = format!("m{{k=\"{}\"}} 1", escape(v));
        assert_eq!(parse(&line).unwrap()[0].label("k"), Some(v));
    }
}
