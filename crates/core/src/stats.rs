//! Means with 95% confidence intervals over repeated runs (Student's t).

use serde::{Deserialize, Serialize};

/// A mean over `n` values with the half-width of its 95% confidence interval (null for fewer
/// than two values: one run says nothing about spread).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub ci95: Option<f64>,
    pub n: usize,
}

/// Two-sided 95% critical values of Student's t for 1..=30 degrees of freedom.
const T95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The 95% critical value of t with `df` degrees of freedom (1.96 beyond 120).
pub fn t95(df: usize) -> f64 {
    match df {
        0 => f64::NAN,
        1..=30 => T95[df - 1],
        31..=40 => 2.021,
        41..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

/// Mean and 95% interval of the known values; `None` when none is known.
pub fn mean_ci(values: &[Option<f64>]) -> Option<Stat> {
    let xs: Vec<f64> = values.iter().flatten().copied().collect();
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let ci95 = (n >= 2).then(|| {
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        t95(n - 1) * (var / n as f64).sqrt()
    });
    Some(Stat { mean, ci95, n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_of_known_values() {
        // mean 2, sample sd 1, n 3: 4.303 * 1 / sqrt(3) = 2.4843
        let s = mean_ci(&[Some(1.0), Some(2.0), None, Some(3.0)]).unwrap();
        assert_eq!(s.n, 3);
        assert!((s.mean - 2.0).abs() < 1e-12);
        assert!((s.ci95.unwrap() - 2.484_31).abs() < 1e-4, "{s:?}");
        assert_eq!(mean_ci(&[Some(5.0)]).unwrap().ci95, None);
        assert_eq!(mean_ci(&[None]), None);
        assert_eq!(t95(200), 1.96);
    }
}
