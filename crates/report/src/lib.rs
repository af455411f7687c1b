//! Reports of stored results, rebuilt from the database alone: Markdown, and one self-contained
//! HTML page, with the paper's figures as SVG and PNG (throughput, energy per second, per token and
//! per response over batch sizes, per dataset; a power timeline) and its tables (largest batch
//! per configuration, power caps, GPU utilization). The same records always give the same files.

pub mod caps;
pub mod chart;
pub mod data;
pub mod png;
pub mod table;

use chart::{Chart, Series};
use data::{Data, Point};
use std::path::{Path, PathBuf};
use table::Table;
use wattbench_core::{RunMetrics, RunStatus};
use wattbench_store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Store(#[from] wattbench_store::StoreError),
    #[error("the results database {} holds no runs yet; make some with `wattbench run` or `wattbench sweep`, or pass --db PATH", db.display())]
    Empty { db: PathBuf },
    #[error(
        "no run {0} with a measured window in the database; pick a run id from `wattbench export`"
    )]
    NoRun(i64),
    #[error("drawing a figure: {0}")]
    Render(String),
    #[error("writing the report into {}: {source}", dir.display())]
    Write {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The run whose power timeline is drawn; by default the longest run of the last point.
    pub timeline_run: Option<i64>,
}

/// What was written.
pub struct Written {
    pub files: Vec<PathBuf>,
    pub points: usize,
}

enum Block {
    Heading(u8, String),
    Para(String),
    Table(Table),
    Figure { name: String, chart: Chart },
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

fn short_model(m: &str) -> &str {
    m.strip_prefix("synthetic:").unwrap_or(m)
}

/// The distinct values of `f` over `points`, in numeric order where they are numbers.
fn distinct<T: ToString>(points: &[&Point], f: impl Fn(&Point) -> T) -> String {
    let mut v: Vec<String> = points.iter().map(|p| f(p).to_string()).collect();
    v.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    });
    v.dedup();
    v.join(", ")
}

fn caption(data: &Data, points: &[&Point]) -> Vec<String> {
    let measured: Vec<&Point> = points
        .iter()
        .copied()
        .filter(|p| p.status == RunStatus::Complete)
        .collect();
    let mut lines = vec![format!(
        "Workload: {} · {} prompts · {} {} new tokens · temperature {} · top-p {}",
        distinct(points, |p| p.config.dataset.clone()),
        distinct(points, |p| p.config.num_prompts),
        if points.iter().all(|p| p.config.ignore_eos) {
            "exactly"
        } else {
            "up to"
        },
        distinct(points, |p| p.config.max_new_tokens),
        distinct(points, |p| p.config.temperature),
        distinct(points, |p| p.config.top_p),
    )];
    if points
        .iter()
        .any(|p| p.config.model.starts_with("synthetic:"))
    {
        lines.push("Models: synthetic ones have random weights of the named shapes (speed and energy are real)".into());
    }
    lines.push(format!(
        "Card: {} · GPUs per run: {} · wattbench {}",
        if data.cards.is_empty() {
            "unknown".into()
        } else {
            data.cards.join(", ")
        },
        if measured.is_empty() {
            "n/a".into()
        } else {
            distinct(&measured, |p| p.gpus())
        },
        data.tools.join(", ")
    ));
    lines
}

/// ` · 175W` for a point measured under a GPU power limit.
fn limit_suffix(p: &Point) -> String {
    p.config
        .power_limit
        .as_ref()
        .map(|l| format!(" · {}", l.requested))
        .unwrap_or_default()
}

/// Adds `xy` to the series `label`, opening it where it is new.
fn add_point(series: &mut Vec<Series>, label: String, xy: (f64, f64)) {
    match series.iter_mut().find(|s| s.label == label) {
        Some(s) => s.points.push(xy),
        None => series.push(Series {
            label,
            points: vec![xy],
        }),
    }
}

/// One figure over batch sizes for each dataset: a line per model, length and shard count.
fn by_batch(
    data: &Data,
    name: &str,
    title: &str,
    y_label: &str,
    f: fn(&RunMetrics) -> Option<f64>,
) -> Vec<Block> {
    let mut datasets: Vec<&str> = data
        .points
        .iter()
        .map(|p| p.config.dataset.as_str())
        .collect();
    datasets.dedup();
    datasets.sort();
    datasets.dedup();
    let mut out = Vec::new();
    for d in datasets {
        let points: Vec<&Point> = data
            .points
            .iter()
            .filter(|p| p.config.dataset == d)
            .collect();
        let mut series: Vec<Series> = Vec::new();
        for p in points.iter().filter(|p| p.status == RunStatus::Complete) {
            let label = format!(
                "{} · {} new{}{}",
                short_model(&p.config.model),
                p.config.max_new_tokens,
                if p.gpus() > 1 {
                    format!(" · {} GPUs", p.gpus())
                } else {
                    String::new()
                },
                limit_suffix(p)
            );
            let Some(y) = p.mean(f) else { continue };
            add_point(&mut series, label, (p.config.batch_size as f64, y));
        }
        out.push(Block::Figure {
            name: format!("{name}-{}", d.replace([':', '/', '='], "_")),
            chart: Chart {
                title: format!("{title} · {d}"),
                caption: caption(data, &points),
                x_label: "batch size (prompts per batch)".into(),
                y_label: y_label.into(),
                log_x: true,
                log_y: true,
                series,
            },
        });
    }
    out
}

/// The paper's Figs. 4–9: a figure over shard counts (GPUs per run) for each dataset and length
/// measured on two shard counts or more, a line per model and batch size.
fn by_shards(
    data: &Data,
    name: &str,
    title: &str,
    y_label: &str,
    f: fn(&RunMetrics) -> Option<f64>,
) -> Vec<Block> {
    let complete: Vec<&Point> = data
        .points
        .iter()
        .filter(|p| p.status == RunStatus::Complete)
        .collect();
    let mut groups: Vec<(&str, u32)> = complete
        .iter()
        .map(|p| (p.config.dataset.as_str(), p.config.max_new_tokens))
        .collect();
    groups.sort();
    groups.dedup();
    let mut out = Vec::new();
    for (d, n) in groups {
        let points: Vec<&Point> = complete
            .iter()
            .copied()
            .filter(|p| p.config.dataset == d && p.config.max_new_tokens == n)
            .collect();
        let mut shards: Vec<usize> = points.iter().map(|p| p.gpus()).collect();
        shards.sort_unstable();
        shards.dedup();
        if shards.len() < 2 {
            continue;
        }
        let mut series: Vec<Series> = Vec::new();
        for p in &points {
            let label = format!(
                "{} · batch {}{}",
                short_model(&p.config.model),
                p.config.batch_size,
                limit_suffix(p)
            );
            let Some(y) = p.mean(f) else { continue };
            add_point(&mut series, label, (p.gpus() as f64, y));
        }
        for s in &mut series {
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        out.push(Block::Figure {
            name: format!("{name}-{}-{n}", d.replace([':', '/', '='], "_")),
            chart: Chart {
                title: format!("{title} · {d} · {n} new tokens"),
                caption: caption(data, &points),
                x_label: "shards (GPUs per run)".into(),
                y_label: y_label.into(),
                log_x: true,
                log_y: true,
                series,
            },
        });
    }
    out
}

/// The batch of an embedded-engine point; for a server, its load: `64 in flight` (a closed loop)
/// or `8/s` (an open loop, with its cap).
fn batch(p: &Point) -> String {
    match &p.config.server {
        None => p.config.batch_size.to_string(),
        Some(s) => match (s.request_rate, s.max_concurrency) {
            (Some(r), Some(c)) => format!("{r}/s, ≤ {c} in flight"),
            (Some(r), None) => format!("{r}/s"),
            (None, c) => format!("{} in flight", c.unwrap_or(p.config.batch_size)),
        },
    }
}

fn results_table(data: &Data) -> Table {
    let mut t = Table::new(&[
        "model",
        "dataset",
        "max new",
        "batch",
        "GPUs",
        "power limit",
        "status",
        "repeats",
        "tokens/s",
        "words/s",
        "responses/s",
        "W",
        "J/token",
        "J/response",
        "J/word",
        "harness %",
    ]);
    for p in &data.points {
        let ci = |f: fn(&RunMetrics) -> Option<f64>, digits: usize| {
            let values: Vec<Option<f64>> = p.metrics.iter().map(f).collect();
            match wattbench_core::mean_ci(&values) {
                Some(s) if s.n == p.metrics.len() => match s.ci95 {
                    Some(c) => format!("{:.digits$} ± {c:.digits$}", s.mean),
                    None => format!("{:.digits$}", s.mean),
                },
                _ => "n/a".into(),
            }
        };
        t.rows.push(vec![
            p.config.model.clone(),
            p.config.dataset.clone(),
            p.config.max_new_tokens.to_string(),
            batch(p),
            if p.devices.is_empty() {
                "n/a".into()
            } else {
                p.gpus().to_string()
            },
            p.config
                .power_limit
                .as_ref()
                .map_or("as set".into(), |l| l.requested.clone()),
            p.status.as_str().into(),
            p.metrics.len().to_string(),
            ci(|m| m.tokens_per_s, 1),
            ci(|m| m.words_per_s, 1),
            ci(|m| m.responses_per_s, 3),
            ci(|m| m.avg_power_w, 1),
            ci(|m| m.j_per_token, 4),
            ci(|m| m.j_per_response, 2),
            ci(|m| m.j_per_word, 4),
            ci(|m| m.harness_pct, 2),
        ]);
    }
    t
}

/// Table II: per model, dataset and length, the largest batch that ran and the smallest that
/// did not, with the GPUs used.
fn max_batch_table(data: &Data) -> Table {
    let mut t = Table::new(&[
        "model",
        "dataset",
        "max new",
        "GPUs",
        "largest batch that ran",
        "smallest batch that did not",
        "why",
    ]);
    let mut groups: Vec<(String, String, u32)> = data
        .points
        .iter()
        .map(|p| {
            (
                p.config.model.clone(),
                p.config.dataset.clone(),
                p.config.max_new_tokens,
            )
        })
        .collect();
    groups.dedup();
    for (m, d, n) in groups {
        let pts: Vec<&Point> = data
            .points
            .iter()
            .filter(|p| {
                p.config.model == m && p.config.dataset == d && p.config.max_new_tokens == n
            })
            .collect();
        let ran = pts
            .iter()
            .filter(|p| p.status == RunStatus::Complete)
            .map(|p| p.config.batch_size)
            .max();
        let failed = pts
            .iter()
            .filter(|p| p.status == RunStatus::Infeasible)
            .min_by_key(|p| p.config.batch_size);
        let gpus = pts
            .iter()
            .filter(|p| p.status == RunStatus::Complete)
            .map(|p| p.gpus())
            .max();
        let why = failed
            .and_then(|p| p.reason.as_deref())
            .map(|r| {
                let first = r.split(" (DriverError").next().unwrap_or(r);
                first.chars().take(110).collect::<String>()
            })
            .unwrap_or_default();
        t.rows.push(vec![
            m,
            d,
            n.to_string(),
            gpus.map_or("n/a".into(), |g| g.to_string()),
            ran.map_or("none".into(), |b| b.to_string()),
            failed.map_or("none tried".into(), |p| p.config.batch_size.to_string()),
            why,
        ]);
    }
    t
}

/// Tables IV–V: utilization and memory of each GPU of each complete point.
fn utilization_table(data: &Data) -> Table {
    let mut t = Table::new(&[
        "model",
        "dataset",
        "max new",
        "batch",
        "GPUs",
        "device",
        "SM util %",
        "memory util %",
        "peak memory GiB",
        "avg W",
    ]);
    for p in data
        .points
        .iter()
        .filter(|p| p.status == RunStatus::Complete)
    {
        for d in &p.devices {
            t.rows.push(vec![
                p.config.model.clone(),
                p.config.dataset.clone(),
                p.config.max_new_tokens.to_string(),
                p.config.batch_size.to_string(),
                p.gpus().to_string(),
                format!("{} ({})", d.device, d.name),
                num(d.mean_sm_util_pct, 1),
                num(d.mean_mem_util_pct, 1),
                num(
                    d.max_mem_used_bytes.map(|b| b as f64 / (1u64 << 30) as f64),
                    1,
                ),
                num(d.avg_power_w, 1),
            ]);
        }
    }
    t
}

fn timeline(store: &Store, data: &Data, opts: &Options) -> Result<Option<Block>, ReportError> {
    let chosen = match opts.timeline_run {
        Some(run) => {
            let r = store
                .runs(false)?
                .into_iter()
                .find(|r| r.id == Some(run))
                .ok_or(ReportError::NoRun(run))?;
            let mid = r.measurement_id.ok_or(ReportError::NoRun(run))?;
            let point = data.points.iter().find(|p| p.config.key() == r.key);
            point.map(|p| (p, mid))
        }
        None => data
            .points
            .iter()
            .rev()
            .find_map(|p| p.longest.map(|(_, mid)| (p, mid))),
    };
    let Some((point, mid)) = chosen else {
        return Ok(None);
    };
    let (start, wall) = data.windows.get(&mid).copied().unwrap_or((0.0, 0.0));
    let tl = store.measurement_timeline(mid)?;
    let mut series = Vec::new();
    for s in &tl.series {
        let mut pts = Vec::new();
        for (a, b) in s.points.iter().zip(s.points.iter().skip(1)) {
            let w = b
                .reading
                .power_w
                .or_else(|| match (a.reading.energy_j, b.reading.energy_j) {
                    (Some(ea), Some(eb)) if b.t_s > a.t_s => Some((eb - ea) / (b.t_s - a.t_s)),
                    _ => None,
                });
            if let Some(w) = w {
                pts.push((b.t_s - start, w));
            }
        }
        series.push(Series {
            label: s.device_id.clone(),
            points: pts,
        });
    }
    let c = &point.config;
    let mut cap = caption(data, &[point]);
    cap.retain(|l| !l.starts_with("Models:"));
    cap[0] = format!(
        "Run: {} · {} · batch {} · up to {} new tokens · {:.1} s window",
        c.model, c.dataset, c.batch_size, c.max_new_tokens, wall
    );
    Ok(Some(Block::Figure {
        name: "timeline".into(),
        chart: Chart {
            title: "Power over the run (instantaneous power)".into(),
            caption: cap,
            x_label: "seconds from the start of the run's window".into(),
            y_label: "W".into(),
            log_x: false,
            log_y: false,
            series,
        },
    }))
}

/// An energy figure of the paper: over batch sizes (Figs. 3, 6, 8) and over shard counts (Figs.
/// 4–9).
struct EnergyFigure {
    heading: &'static str,
    name: &'static str,
    title: &'static str,
    y_label: &'static str,
    shards_heading: &'static str,
    shards_name: &'static str,
    shards_y_label: &'static str,
    f: fn(&RunMetrics) -> Option<f64>,
}

fn blocks(store: &Store, data: &Data, opts: &Options) -> Result<Vec<Block>, ReportError> {
    let complete = data
        .points
        .iter()
        .filter(|p| p.status == RunStatus::Complete)
        .count();
    let infeasible = data
        .points
        .iter()
        .filter(|p| p.status == RunStatus::Infeasible)
        .count();
    let failed = data.points.len() - complete - infeasible;
    let mut b = vec![
        Block::Heading(1, "wattbench report".into()),
        Block::Para(format!(
            "{} configurations: {complete} measured, {infeasible} infeasible (they did not fit), {failed} stopped. \
             Cards: {}. Tool: wattbench {}. Figures are means over each configuration's complete repeats; \
             tables give mean ± 95% confidence interval where there are several. Tokens are generated tokens, \
             responses are completed requests, words are words of the responses split on spaces (null for random weights).",
            data.points.len(),
            if data.cards.is_empty() { "unknown".into() } else { data.cards.join(", ") },
            data.tools.join(", ")
        )),
        Block::Heading(2, "Results".into()),
        Block::Table(results_table(data)),
        Block::Heading(2, "Throughput (the paper's Fig. 2)".into()),
    ];
    b.extend(by_batch(
        data,
        "fig2-throughput",
        "Throughput",
        "generated tokens per second",
        |m| m.tokens_per_s,
    ));
    // Each energy figure over batch sizes, then over shard counts where runs used several.
    let energies = [
        EnergyFigure {
            heading: "Energy per second (Figs. 3–5)",
            name: "fig3-energy-per-second",
            title: "Energy per second",
            y_label: "W (J/s)",
            shards_heading: "Energy per second over shard counts (Figs. 4–5)",
            shards_name: "fig4-energy-per-second-by-shards",
            shards_y_label: "W (J/s), all GPUs of the run",
            f: |m| m.avg_power_w,
        },
        EnergyFigure {
            heading: "Energy per token (Figs. 6–7)",
            name: "fig6-energy-per-token",
            title: "Energy per token",
            y_label: "J per generated token",
            shards_heading: "Energy per token over shard counts (Figs. 6–7)",
            shards_name: "fig6-energy-per-token-by-shards",
            shards_y_label: "J per generated token",
            f: |m| m.j_per_token,
        },
        EnergyFigure {
            heading: "Energy per response (Figs. 8–9)",
            name: "fig8-energy-per-response",
            title: "Energy per response",
            y_label: "J per response",
            shards_heading: "Energy per response over shard counts (Figs. 8–9)",
            shards_name: "fig8-energy-per-response-by-shards",
            shards_y_label: "J per response",
            f: |m| m.j_per_response,
        },
    ];
    for e in energies {
        b.push(Block::Heading(2, e.heading.into()));
        b.extend(by_batch(data, e.name, e.title, e.y_label, e.f));
        let title = format!("{} over shard counts", e.title);
        let shards = by_shards(data, e.shards_name, &title, e.shards_y_label, e.f);
        if !shards.is_empty() {
            b.push(Block::Heading(2, e.shards_heading.into()));
            b.extend(shards);
        }
    }
    b.push(Block::Heading(
        2,
        "Largest batch per configuration (Table II)".into(),
    ));
    b.push(Block::Table(max_batch_table(data)));
    b.push(Block::Heading(2, "Power caps (Table III)".into()));
    match caps::table(data) {
        Some(t) => {
            b.push(Block::Para(
                "Each configuration measured under several GPU power limits, against its highest limit: \
                 the change in wall time and energy of a run, in generated tokens per second and in joules per token \
                 (negative: less). Limits are per capped GPU."
                    .into(),
            ));
            b.push(Block::Table(t));
            let capped: Vec<&Point> = data
                .points
                .iter()
                .filter(|p| p.config.power_limit.is_some())
                .collect();
            if let Some(chart) = caps::chart(data, caption(data, &capped)) {
                b.push(Block::Figure {
                    name: "table3-energy-vs-time".into(),
                    chart,
                });
            }
        }
        None => b.push(Block::Para(
            "No configuration in this database was measured under two GPU power limits or more, so there are no \
             relative changes to show: run or sweep with --power-limit (for example 100%,70%)."
                .into(),
        )),
    }
    b.push(Block::Heading(2, "GPU utilization (Tables IV–V)".into()));
    b.push(Block::Table(utilization_table(data)));
    if let Some(t) = timeline(store, data, opts)? {
        b.push(Block::Heading(2, "Power timeline".into()));
        b.push(t);
    }
    Ok(b)
}

const CSS: &str = "body{font-family:'DejaVu Sans',Verdana,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;font-size:12px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}\
td:first-child,th:first-child,td:nth-child(2){text-align:left}figure{margin:1.5em 0}svg{max-width:100%;height:auto}";

/// Writes `report.md`, `report.html` and `figures/*.svg|png` into `out`.
pub fn build(store: &Store, out: &Path, opts: &Options) -> Result<Written, ReportError> {
    let data = data::load(store)?;
    let blocks = blocks(store, &data, opts)?;
    let werr = |source| ReportError::Write {
        dir: out.to_path_buf(),
        source,
    };
    let figures = out.join("figures");
    std::fs::create_dir_all(&figures).map_err(werr)?;
    let mut files = Vec::new();
    let mut md = String::new();
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>wattbench report</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
    );
    for block in &blocks {
        match block {
            Block::Heading(level, text) => {
                md.push_str(&format!("{} {text}\n\n", "#".repeat(*level as usize)));
                html.push_str(&format!(
                    "<h{level}>{}</h{level}>\n",
                    text.replace('&', "&amp;").replace('<', "&lt;")
                ));
            }
            Block::Para(text) => {
                md.push_str(&format!("{text}\n\n"));
                html.push_str(&format!(
                    "<p>{}</p>\n",
                    text.replace('&', "&amp;").replace('<', "&lt;")
                ));
            }
            Block::Table(t) => {
                md.push_str(&t.markdown());
                md.push('\n');
                html.push_str(&t.html());
            }
            Block::Figure { name, chart } => {
                let svg = chart.svg();
                let svg_path = figures.join(format!("{name}.svg"));
                let png_path = figures.join(format!("{name}.png"));
                std::fs::write(&svg_path, &svg).map_err(werr)?;
                std::fs::write(&png_path, png::render(&svg, 2.0)?).map_err(werr)?;
                files.push(svg_path);
                files.push(png_path);
                md.push_str(&format!(
                    "![{}](figures/{name}.png)\n\n{} ([SVG](figures/{name}.svg))\n\n",
                    chart.title,
                    chart.caption.join(" — ")
                ));
                html.push_str(&format!("<figure>\n{svg}</figure>\n"));
            }
        }
    }
    html.push_str("</body>\n</html>\n");
    let md_path = out.join("report.md");
    let html_path = out.join("report.html");
    std::fs::write(&md_path, md).map_err(werr)?;
    std::fs::write(&html_path, html).map_err(werr)?;
    files.insert(0, html_path);
    files.insert(0, md_path);
    Ok(Written {
        files,
        points: data.points.len(),
    })
}
