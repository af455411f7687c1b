//! Parsing of `--sensor` values.

use crate::error::SensorError;
use crate::prometheus::ScrapeOptions;
use std::path::PathBuf;

/// Default root of the Linux powercap tree.
pub const POWERCAP_ROOT: &str = "/sys/class/powercap";
/// Environment variable overriding the powercap root (for tests on fake trees).
pub const POWERCAP_ROOT_ENV: &str = "WATTBENCH_POWERCAP_ROOT";

#[derive(Debug, Clone, PartialEq)]
pub enum SensorSpec {
    /// Every real sensor that works here (NVML, RAPL); none is an error only when asked for by name.
    Auto,
    Nvml,
    Rapl {
        root: PathBuf,
    },
    Fake {
        watts: f64,
        count: u32,
    },
    Replay {
        path: PathBuf,
    },
    /// Prometheus text endpoints of other machines (dcgm-exporter, `wattbench meter --listen`).
    Prometheus {
        urls: Vec<String>,
        options: ScrapeOptions,
    },
}

impl SensorSpec {
    /// Parses one `--sensor` value.
    pub fn parse(s: &str) -> Result<SensorSpec, SensorError> {
        let s = s.trim();
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let invalid = |reason: &str| SensorError::InvalidSpec {
            spec: s.to_string(),
            reason: reason.to_string(),
        };
        match (kind, arg) {
            ("auto", None) => Ok(SensorSpec::Auto),
            ("nvml", None) => Ok(SensorSpec::Nvml),
            ("rapl", None) => Ok(SensorSpec::Rapl {
                root: std::env::var_os(POWERCAP_ROOT_ENV)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(POWERCAP_ROOT)),
            }),
            ("rapl", Some(root)) if !root.is_empty() => Ok(SensorSpec::Rapl { root: root.into() }),
            ("replay", Some(path)) if !path.is_empty() => {
                Ok(SensorSpec::Replay { path: path.into() })
            }
            ("replay", _) => Err(invalid("name the trace file, as in replay:trace.csv")),
            ("prometheus", Some(urls)) if !urls.trim().is_empty() => Ok(SensorSpec::Prometheus {
                urls: urls.split(',').map(|u| u.trim().to_string()).collect(),
                options: ScrapeOptions::default(),
            }),
            ("prometheus", _) => Err(invalid(
                "name the metrics URLs, as in prometheus:http://node1:9400/metrics,http://node2:9400/metrics",
            )),
            ("fake", arg) => {
                let arg = arg.unwrap_or("");
                let (w, n) = match arg.split_once('x') {
                    Some((w, n)) => (w, Some(n)),
                    None => (arg, None),
                };
                let watts: f64 = w
                    .parse()
                    .ok()
                    .filter(|w: &f64| w.is_finite() && *w >= 0.0)
                    .ok_or_else(|| {
                        invalid("give a power in watts, as in fake:250 or fake:250x2")
                    })?;
                let count = match n {
                    None => 1,
                    Some(n) => n
                        .parse()
                        .ok()
                        .filter(|&n: &u32| (1..=1024).contains(&n))
                        .ok_or_else(|| {
                            invalid(
                                "give a device count from 1 to 1024 after the x, as in fake:250x2",
                            )
                        })?,
                };
                Ok(SensorSpec::Fake { watts, count })
            }
            ("auto" | "nvml", Some(_)) => Err(invalid(
                "takes no argument; select devices with --devices (indices or UUIDs)",
            )),
            _ => Err(SensorError::UnknownSensor {
                spec: s.to_string(),
            }),
        }
    }

    /// Parses a list of `--sensor` values, each of which may hold several comma-separated specs
    /// (a `replay:` spec takes the rest of its value, since a path may contain commas).
    pub fn parse_list<S: AsRef<str>>(values: &[S]) -> Result<Vec<SensorSpec>, SensorError> {
        let mut specs = Vec::new();
        for v in values {
            let mut rest = v.as_ref();
            while !rest.is_empty() {
                if rest.trim_start().starts_with("replay:") {
                    specs.push(SensorSpec::parse(rest)?);
                    break;
                }
                let (mut head, mut tail) = rest.split_once(',').unwrap_or((rest, ""));
                if head.trim_start().starts_with("prometheus:") {
                    // The URLs after a prometheus: spec belong to it.
                    let mut end = head.len();
                    let mut more = tail;
                    while more.trim_start().starts_with("http://")
                        || more.trim_start().starts_with("https://")
                    {
                        let (url, next) = more.split_once(',').unwrap_or((more, ""));
                        end += 1 + url.len();
                        more = next;
                    }
                    head = &rest[..end];
                    tail = more;
                }
                specs.push(SensorSpec::parse(head)?);
                rest = tail;
            }
        }
        if specs.is_empty() {
            specs.push(SensorSpec::Auto);
        }
        Ok(specs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            SensorSpec::parse("fake:250x2").unwrap(),
            SensorSpec::Fake {
                watts: 250.0,
                count: 2
            }
        );
        assert_eq!(
            SensorSpec::parse("fake:12.5").unwrap(),
            SensorSpec::Fake {
                watts: 12.5,
                count: 1
            }
        );
        assert_eq!(SensorSpec::parse("nvml").unwrap(), SensorSpec::Nvml);
        assert_eq!(
            SensorSpec::parse("rapl:/tmp/pc").unwrap(),
            SensorSpec::Rapl {
                root: "/tmp/pc".into()
            }
        );
        assert_eq!(
            SensorSpec::parse_list(&["fake:1,replay:a,b.csv"]).unwrap(),
            vec![
                SensorSpec::Fake {
                    watts: 1.0,
                    count: 1
                },
                SensorSpec::Replay {
                    path: "a,b.csv".into()
                }
            ]
        );
        assert_eq!(
            SensorSpec::parse_list::<&str>(&[]).unwrap(),
            vec![SensorSpec::Auto]
        );
        assert_eq!(
            SensorSpec::parse_list(&["prometheus:http://a:9400/metrics,http://b/m,fake:5"])
                .unwrap(),
            vec![
                SensorSpec::Prometheus {
                    urls: vec!["http://a:9400/metrics".into(), "http://b/m".into()],
                    options: ScrapeOptions::default(),
                },
                SensorSpec::Fake {
                    watts: 5.0,
                    count: 1
                }
            ]
        );
        assert!(SensorSpec::parse("prometheus:")
            .unwrap_err()
            .to_string()
            .contains("prometheus:http://"));
    }

    #[test]
    fn rejects_bad_specs_with_the_fix() {
        let e = SensorSpec::parse("thermometer").unwrap_err().to_string();
        assert!(
            e.contains("unknown sensor \"thermometer\"") && e.contains("fake:WATTS"),
            "{e}"
        );
        let e = SensorSpec::parse("fake:lots").unwrap_err().to_string();
        assert!(e.contains("fake:250"), "{e}");
        let e = SensorSpec::parse("fake:10x0").unwrap_err().to_string();
        assert!(e.contains("device count"), "{e}");
        assert!(SensorSpec::parse("replay:").is_err());
        assert!(SensorSpec::parse("nvml:0")
            .unwrap_err()
            .to_string()
            .contains("--devices"));
    }
}
