//! Line charts as SVG: log-scaled axes with 1-2-5 ticks, markers, a legend and a caption naming
//! the workload, the card and the tool. Text is set in DejaVu Sans, which the PNG renderer embeds.

use std::fmt::Write;

pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Chart {
    pub title: String,
    /// Lines under the title: workload, card, tool.
    pub caption: Vec<String>,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
}

const W: f64 = 760.0;
const H: f64 = 470.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 210.0;
const TOP: f64 = 96.0;
const BOTTOM: f64 = 58.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const DASHES: [&str; 3] = ["", "6 3", "2 3"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number for a tick label: no trailing zeros, thousands without separators.
fn label(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        let digits = (-a.log10().floor()) as usize + 2;
        format!("{v:.digits$}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Ticks covering `[lo, hi]`: 1-2-5 steps per decade on log axes, about six steps on linear ones.
fn ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if log {
        let mut out = Vec::new();
        let mut decade = 10f64.powf(lo.log10().floor());
        while decade <= hi * 1.0001 {
            for m in [1.0, 2.0, 5.0] {
                let t = decade * m;
                if t >= lo * 0.9999 && t <= hi * 1.0001 {
                    out.push(t);
                }
            }
            decade *= 10.0;
        }
        out
    } else {
        let span = (hi - lo).max(f64::MIN_POSITIVE);
        let raw = span / 6.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(mag * 10.0);
        let mut t = (lo / step).ceil() * step;
        let mut out = Vec::new();
        while t <= hi + step * 1e-9 {
            out.push(t);
            t += step;
        }
        out
    }
}

/// The axis range: padded, and widened on log axes to whole 1-2-5 steps.
fn range(values: &[f64], log: bool) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return (1.0, 10.0);
    }
    if log {
        let step_down = |v: f64| {
            let d = 10f64.powf(v.log10().floor());
            [5.0, 2.0, 1.0]
                .iter()
                .map(|m| m * d)
                .find(|t| *t <= v * 1.0001)
                .unwrap_or(d)
        };
        let step_up = |v: f64| {
            let d = 10f64.powf(v.log10().floor());
            [1.0, 2.0, 5.0, 10.0]
                .iter()
                .map(|m| m * d)
                .find(|t| *t >= v * 0.9999)
                .unwrap_or(d * 10.0)
        };
        let (a, b) = (step_down(lo), step_up(hi));
        if a == b {
            (a / 2.0, b * 2.0)
        } else {
            (a, b)
        }
    } else {
        let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.05).max(1e-9);
        (
            (lo - pad).max(if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY }),
            hi + pad,
        )
    }
}

impl Chart {
    pub fn svg(&self) -> String {
        let xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .filter(|v| !self.log_x || *v > 0.0)
            .collect();
        let ys: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| !self.log_y || *v > 0.0)
            .collect();
        let (x0, x1) = if self.log_x {
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if lo.is_finite() {
                (lo / 1.25, hi * 1.25)
            } else {
                (1.0, 10.0)
            }
        } else {
            range(&xs, false)
        };
        let (y0, y1) = range(&ys, self.log_y);
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let sx = |v: f64| {
            let f = if self.log_x {
                (v.ln() - x0.ln()) / (x1.ln() - x0.ln())
            } else {
                (v - x0) / (x1 - x0)
            };
            LEFT + f * pw
        };
        let sy = |v: f64| {
            let f = if self.log_y {
                (v.ln() - y0.ln()) / (y1.ln() - y0.ln())
            } else {
                (v - y0) / (y1 - y0)
            };
            TOP + ph - f * ph
        };
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="12">"#
        );
        let _ = write!(s, r##"<rect width="{W}" height="{H}" fill="#ffffff"/>"##);
        let _ = write!(
            s,
            r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">{}</text>"#,
            esc(&self.title)
        );
        for (i, c) in self.caption.iter().enumerate() {
            let _ = write!(
                s,
                r##"<text x="{LEFT}" y="{}" font-size="11" fill="#444444">{}</text>"##,
                42.0 + 14.0 * i as f64,
                esc(c)
            );
        }
        // Grid and ticks.
        let xt: Vec<f64> = if self.log_x {
            let mut v = xs.clone();
            v.sort_by(f64::total_cmp);
            v.dedup();
            if v.len() > 12 {
                ticks(x0, x1, true)
            } else {
                v
            }
        } else {
            ticks(x0, x1, false)
        };
        for t in &xt {
            let x = sx(*t);
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e5e5e5"/>"##,
                TOP + ph
            );
            let _ = write!(
                s,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP + ph + 16.0,
                label(*t)
            );
        }
        for t in ticks(y0, y1, self.log_y) {
            let y = sy(t);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e5e5"/>"##,
                LEFT + pw
            );
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                label(t)
            );
        }
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333333"/>"##
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 14.0,
            esc(&self.x_label)
        );
        let _ = write!(
            s,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            esc(&self.y_label)
        );
        // Series and legend.
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let dash = DASHES[(i / COLORS.len()) % DASHES.len()];
            let pts: Vec<(f64, f64)> = series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| (!self.log_x || *x > 0.0) && (!self.log_y || *y > 0.0))
                .collect();
            let path: Vec<String> = pts
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            if path.len() > 1 {
                let _ = write!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{}/>"#,
                    path.join(" "),
                    if dash.is_empty() {
                        String::new()
                    } else {
                        format!(r#" stroke-dasharray="{dash}""#)
                    }
                );
            }
            if pts.len() <= 40 {
                for (x, y) in &pts {
                    let _ = write!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
                        sx(*x),
                        sy(*y)
                    );
                }
            }
            let ly = TOP + 10.0 + 18.0 * i as f64;
            let lx = LEFT + pw + 14.0;
            let _ = write!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"/>"#,
                lx + 22.0
            );
            let _ = write!(
                s,
                r#"<text x="{}" y="{:.1}" font-size="11">{}</text>"#,
                lx + 28.0,
                ly + 4.0,
                esc(&series.label)
            );
        }
        if self.series.iter().all(|s| s.points.is_empty()) {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888888">no measured points</text>"##,
                LEFT + pw / 2.0,
                TOP + ph / 2.0
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_1_2_5_steps_and_labels_are_short() {
        assert_eq!(ticks(0.05, 0.2, true), [0.05, 0.1, 0.2]);
        assert_eq!(
            ticks(0.0, 600.0, false),
            [0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0]
        );
        assert_eq!(label(0.05), "0.05");
        assert_eq!(label(12000.0), "12000");
        assert_eq!(label(2.5), "2.5");
        assert_eq!(range(&[0.058, 0.13], true), (0.05, 0.2));
    }

    #[test]
    fn a_chart_has_its_series_legend_and_caption() {
        let c = Chart {
            title: "Energy per token".into(),
            caption: vec!["alpaca · 512 prompts".into(), "NVIDIA H100 <80GB>".into()],
            x_label: "batch size".into(),
            y_label: "J/token".into(),
            log_x: true,
            log_y: true,
            series: vec![Series {
                label: "llama-7b · 256".into(),
                points: vec![(64.0, 0.09), (128.0, 0.07)],
            }],
        };
        let svg = c.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("llama-7b · 256") && svg.contains("NVIDIA H100 &lt;80GB&gt;"));
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains(">64<") && svg.contains(">128<"));
    }
}
