use super::*;
use crate::timeline::Reading;
use proptest::prelude::*;

fn series(points: impl IntoIterator<Item = (f64, Option<f64>, Option<f64>)>) -> DeviceSeries {
    DeviceSeries {
        device_id: "dev0".into(),
        points: points
            .into_iter()
            .map(|(t_s, energy_j, power_w)| Point {
                t_s,
                reading: Reading {
                    energy_j,
                    power_w,
                    ..Reading::default()
                },
            })
            .collect(),
    }
}

/// Constant power `p` sampled every `dt` for `n` steps, counter starting at `origin`.
fn constant(p: f64, dt: f64, n: usize, origin: f64, counter: bool, power: bool) -> DeviceSeries {
    series((0..=n).map(|i| {
        let t = i as f64 * dt;
        (t, counter.then_some(origin + p * t), power.then_some(p))
    }))
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-9)
}

#[test]
fn constant_power_gives_power_times_time_by_both_methods() {
    let s = constant(250.0, 0.1, 10, 1.0e6, true, true);
    let w = window_energy(&s, 0.0, 1.0, &WindowOptions::default());
    assert_eq!(w.method, Some(EnergyMethod::Counter));
    assert!(close(w.energy_j.unwrap(), 250.0, 1e-12));
    assert!(close(w.integrated_power_j.unwrap(), 250.0, 1e-12));
    assert!(close(w.avg_power_w.unwrap(), 250.0, 1e-12));
    assert_eq!(w.peak_power_w, Some(250.0));
    assert!(w.warnings.is_empty(), "{:?}", w.warnings);
}

#[test]
fn window_edges_between_samples_are_interpolated() {
    let s = constant(100.0, 0.1, 20, 0.0, true, true);
    let w = window_energy(&s, 0.25, 1.55, &WindowOptions::default());
    assert!(close(w.counter_j.unwrap(), 130.0, 1e-9));
    assert!(close(w.integrated_power_j.unwrap(), 130.0, 1e-9));
}

#[test]
fn missing_counter_falls_back_to_power_integration_and_says_so() {
    let s = constant(80.0, 0.1, 30, 0.0, false, true);
    let w = window_energy(&s, 0.0, 3.0, &WindowOptions::default());
    assert_eq!(w.method, Some(EnergyMethod::PowerIntegration));
    assert_eq!(w.counter_j, None);
    assert!(close(w.energy_j.unwrap(), 240.0, 1e-9));
    assert!(w.warnings.contains(&Warning::NoCounter {
        device: "dev0".into()
    }));
}

#[test]
fn nothing_measurable_is_null_not_zero() {
    let s = series((0..5).map(|i| (i as f64, None, None)));
    let w = window_energy(&s, 0.0, 4.0, &WindowOptions::default());
    assert_eq!(w.energy_j, None);
    assert_eq!(w.avg_power_w, None);
    assert_eq!(w.method, None);
    assert!(w.warnings.contains(&Warning::NoEnergy {
        device: "dev0".into()
    }));
}

#[test]
fn counter_wrap_is_unwrapped_with_the_declared_range() {
    // RAPL-like: wraps at 1000 J; 50 W for 2 s, starting near the top.
    let s = series((0..=20).map(|i| {
        let t = i as f64 * 0.1;
        (t, Some((980.0 + 50.0 * t) % 1000.0), None)
    }));
    let opts = WindowOptions {
        counter_wrap_j: Some(1000.0),
        ..WindowOptions::default()
    };
    let w = window_energy(&s, 0.0, 2.0, &opts);
    assert!(close(w.energy_j.unwrap(), 100.0, 1e-9), "{:?}", w);
    assert_eq!(w.counter_wraps, 1);
    assert!(w.warnings.is_empty(), "{:?}", w.warnings);
}

#[test]
fn counter_reset_is_estimated_from_power_and_warned() {
    // 200 W; the counter restarts from 0 between t=1.0 and t=1.1.
    let s = series((0..=20).map(|i| {
        let t = i as f64 * 0.1;
        let e = if i <= 10 {
            5000.0 + 200.0 * t
        } else {
            200.0 * (t - 1.05)
        };
        (t, Some(e), Some(200.0))
    }));
    let w = window_energy(&s, 0.0, 2.0, &WindowOptions::default());
    assert!(close(w.energy_j.unwrap(), 400.0, 1e-9), "{:?}", w);
    assert!(matches!(w.warnings[0], Warning::CounterReset { .. }));
}

#[test]
fn counter_reset_without_power_uses_the_mean_rate() {
    let s = series((0..=20).map(|i| {
        let t = i as f64 * 0.1;
        let e = if i <= 10 {
            100.0 * t
        } else {
            100.0 * (t - 1.1)
        };
        (t, Some(e), None)
    }));
    let w = window_energy(&s, 0.0, 2.0, &WindowOptions::default());
    assert!(close(w.energy_j.unwrap(), 200.0, 1e-9), "{:?}", w);
}

#[test]
fn short_window_is_flagged() {
    let s = constant(100.0, 0.1, 1, 0.0, true, true);
    let w = window_energy(&s, 0.0, 0.1, &WindowOptions::default());
    assert!(matches!(
        w.warnings[0],
        Warning::WindowTooShort {
            counter_updates: 1,
            ..
        }
    ));
}

#[test]
fn disagreement_between_counter_and_power_is_flagged() {
    let s = series((0..=10).map(|i| (i as f64 * 0.1, Some(300.0 * i as f64 * 0.1), Some(200.0))));
    let w = window_energy(&s, 0.0, 1.0, &WindowOptions::default());
    assert_eq!(w.energy_j, Some(300.0));
    assert!(w
        .warnings
        .iter()
        .any(|w| matches!(w, Warning::CounterPowerDisagreement { .. })));
}

#[test]
fn stepwise_counter_like_nvml_counts_updates_not_samples() {
    // Counter updates every 100 ms, sampled every 10 ms.
    let s = series((0..=100).map(|i| {
        let t = i as f64 * 0.01;
        (t, Some(400.0 * (t * 10.0).floor() / 10.0), Some(400.0))
    }));
    let w = window_energy(&s, 0.0, 1.0, &WindowOptions::default());
    assert_eq!(w.counter_updates, 10);
    assert!(close(w.energy_j.unwrap(), 400.0, 1e-9));
}

proptest! {
    #[test]
    fn constant_power_over_any_time(p in 0.0f64..2000.0, dt in 0.005f64..2.0, n in 2usize..200, origin in 0.0f64..1e9) {
        let s = constant(p, dt, n, origin, true, true);
        let t = n as f64 * dt;
        let w = window_energy(&s, 0.0, t, &WindowOptions::default());
        prop_assert!(close(w.counter_j.unwrap(), p * t, 1e-6));
        prop_assert!(close(w.integrated_power_j.unwrap(), p * t, 1e-9));
    }

    #[test]
    fn wrapped_counter_equals_unwrapped(p in 1.0f64..500.0, dt in 0.01f64..0.5, n in 2usize..200, start in 0.0f64..1.0) {
        let range = 262_143.328850;
        let unwrapped = constant(p, dt, n, start * range, true, false);
        let mut wrapped = unwrapped.clone();
        for pt in &mut wrapped.points {
            pt.reading.energy_j = pt.reading.energy_j.map(|e| e % range);
        }
        let opts = WindowOptions { counter_wrap_j: Some(range), ..WindowOptions::default() };
        let t = n as f64 * dt;
        let a = window_energy(&unwrapped, 0.0, t, &opts).energy_j.unwrap();
        let b = window_energy(&wrapped, 0.0, t, &opts).energy_j.unwrap();
        prop_assert!(close(a, b, 1e-6), "{} vs {}", a, b);
    }

    #[test]
    fn energy_is_never_negative(
        values in proptest::collection::vec((proptest::option::of(-1e6f64..1e6), proptest::option::of(0.0f64..1e3)), 0..60),
        a in 0.0f64..10.0, b in 0.0f64..10.0, wrap in proptest::option::of(1.0f64..1e6),
    ) {
        let s = series(values.iter().enumerate().map(|(i, &(e, p))| (i as f64 * 0.17, e, p)));
        let opts = WindowOptions { counter_wrap_j: wrap, ..WindowOptions::default() };
        let w = window_energy(&s, a, b, &opts);
        for v in [w.energy_j, w.counter_j, w.integrated_power_j, w.avg_power_w].into_iter().flatten() {
            prop_assert!(v >= 0.0 && v.is_finite(), "{:?}", w);
        }
    }
}
