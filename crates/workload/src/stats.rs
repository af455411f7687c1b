//! Length statistics and histograms of prompts and references.

use serde::Serialize;

/// Summary of a list of lengths.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthStats {
    pub count: usize,
    pub min: usize,
    pub mean: f64,
    pub p50: usize,
    pub p90: usize,
    pub p99: usize,
    pub max: usize,
}

impl LengthStats {
    /// `None` for an empty list.
    pub fn of(values: &[usize]) -> Option<LengthStats> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_unstable();
        // Nearest-rank percentile.
        let pct = |p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(LengthStats {
            count: v.len(),
            min: v[0],
            mean: v.iter().sum::<usize>() as f64 / v.len() as f64,
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            max: v[v.len() - 1],
        })
    }
}

/// A histogram of `bins` equal-width bins from the minimum to the maximum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Lower edges of the bins; the last bin includes the maximum.
    pub lower: Vec<f64>,
    pub width: f64,
    pub counts: Vec<usize>,
}

impl Histogram {
    pub fn of(values: &[usize], bins: usize) -> Option<Histogram> {
        let (min, max) = (*values.iter().min()?, *values.iter().max()?);
        let bins = bins.max(1);
        let width = ((max - min) as f64 / bins as f64).max(1.0);
        let mut counts = vec![0; bins];
        for &x in values {
            let b = (((x - min) as f64 / width) as usize).min(bins - 1);
            counts[b] += 1;
        }
        Some(Histogram {
            lower: (0..bins).map(|i| min as f64 + i as f64 * width).collect(),
            width,
            counts,
        })
    }

    /// Text rendering with bars of at most `bar` characters.
    pub fn render(&self, bar: usize) -> String {
        let top = self.counts.iter().copied().max().unwrap_or(0).max(1);
        self.lower
            .iter()
            .zip(&self.counts)
            .map(|(lo, &c)| {
                let hi = lo + self.width;
                format!(
                    "{:>8.0} – {:<8.0} {:>7} {}",
                    lo,
                    hi,
                    c,
                    "█".repeat((c * bar).div_ceil(top).min(bar))
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_histogram_of_a_known_list() {
        let v: Vec<usize> = (1..=100).collect();
        let s = LengthStats::of(&v).unwrap();
        assert_eq!((s.min, s.p50, s.p90, s.p99, s.max), (1, 50, 90, 99, 100));
        assert!((s.mean - 50.5).abs() < 1e-12);
        let h = Histogram::of(&v, 10).unwrap();
        assert_eq!(h.counts.iter().sum::<usize>(), 100);
        assert_eq!(h.counts[0], 10);
        assert!(LengthStats::of(&[]).is_none());
    }
}
