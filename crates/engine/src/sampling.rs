//! Choosing the next token: greedy, or temperature with top-p (nucleus) sampling, on the device.
//!
//! Top-p keeps the most probable tokens whose probabilities add up to at least `top_p`. Instead of
//! sorting the vocabulary, the probability threshold of that set is found per row by bisection
//! (each step is a masked sum), which runs as a handful of tensor operations on the GPU. A token is
//! then drawn from the kept set with the Gumbel-max trick: the argmax of `logit / T + G`, with `G`
//! standard Gumbel noise, is distributed as the renormalized softmax over the set. On CUDA the
//! same algorithm runs as one kernel per batch (`cuda::sample`), with the noise hashed from the
//! seed, the step and the position instead of drawn from a generator.

use candle_core::{DType, Device, Result, Tensor, D};
use wattbench_workload::sample::SplitMix64;

/// Bisection steps of the top-p threshold: precision of 2^-20 of the largest probability.
const BISECTION_STEPS: usize = 20;

pub struct Sampler {
    temperature: f64,
    top_p: f64,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    seed: u64,
    /// Calls so far: the step of the device kernel's noise.
    steps: u64,
    rng: SplitMix64,
}

impl Sampler {
    /// `temperature <= 0` is greedy decoding.
    pub fn new(temperature: f64, top_p: f64, seed: u64, device: &Device) -> Result<Sampler> {
        if !device.is_cpu() {
            device.set_seed(seed)?;
        }
        Ok(Sampler {
            temperature,
            top_p,
            seed,
            steps: 0,
            rng: SplitMix64::new(seed),
        })
    }

    /// Uniform noise in (0, 1), `[b, v]`: from the device's generator on GPUs, from SplitMix64 on
    /// the CPU (candle's CPU generator cannot be seeded).
    fn uniform(&mut self, b: usize, v: usize, device: &Device) -> Result<Tensor> {
        let u = if device.is_cpu() {
            let data: Vec<f32> = (0..b * v).map(|_| self.rng.unit() as f32).collect();
            Tensor::from_vec(data, (b, v), device)?
        } else {
            Tensor::rand(0f32, 1f32, (b, v), device)?
        };
        u.clamp(1e-12f32, 1.0f32 - 1e-7)
    }

    /// One token per row of `logits [B, V]` (f32).
    /// The step number of the next draw (a draw's noise depends on the seed and its step).
    pub fn next_step(&self) -> u64 {
        self.steps + 1
    }

    /// Counts `n` draws made elsewhere (by [`Sampler::sample_at`] in replayed steps).
    pub fn skip(&mut self, n: u64) {
        if self.temperature > 0.0 {
            self.steps += n;
        }
    }

    /// One token per row of `logits` (CUDA, f32 or bf16) with the noise of the step held in `step` (u64
    /// `[1]` on the device) when the kernel runs, for decode steps captured in a CUDA graph: the
    /// same tokens as [`Sampler::sample_on_device`] at that step. Greedy decoding ignores `step`.
    #[cfg(feature = "cuda")]
    pub fn sample_at(&self, logits: &Tensor, step: &Tensor) -> Result<Tensor> {
        if self.temperature <= 0.0 {
            return logits.argmax(D::Minus1);
        }
        crate::cuda::sample::sample(
            logits,
            self.temperature,
            self.top_p,
            self.seed,
            0,
            Some(step),
        )
    }

    pub fn sample(&mut self, logits: &Tensor) -> Result<Vec<u32>> {
        self.sample_on_device(logits)?.to_vec1::<u32>()
    }

    /// One token per row of `logits [B, V]` (f32), as u32 `[B]` on the logits' device.
    pub fn sample_on_device(&mut self, logits: &Tensor) -> Result<Tensor> {
        if self.temperature <= 0.0 {
            return logits.argmax(D::Minus1);
        }
        self.steps += 1;
        #[cfg(feature = "cuda")]
        if logits.device().is_cuda() && crate::cuda::enabled() {
            return crate::cuda::sample::sample(
                logits,
                self.temperature,
                self.top_p,
                self.seed,
                self.steps,
                None,
            );
        }
        let (b, v) = logits.dims2()?;
        let scaled = (logits / self.temperature)?;
        let u = self.uniform(b, v, logits.device())?;
        let gumbel = u.log()?.neg()?.log()?.neg()?;
        let mut score = (&scaled + gumbel)?;
        if self.top_p < 1.0 {
            let probs = candle_nn::ops::softmax_last_dim(&scaled)?;
            let keep = top_p_mask(&probs, self.top_p)?;
            let floor = Tensor::full(f32::NEG_INFINITY, (b, v), logits.device())?;
            score = keep.where_cond(&score, &floor)?;
        }
        score.argmax(D::Minus1)
    }
}

/// `[B, V]` mask (u8) of the top-p set of each row of `probs`.
pub fn top_p_mask(probs: &Tensor, top_p: f64) -> Result<Tensor> {
    let (b, _) = probs.dims2()?;
    let mut lo = Tensor::zeros((b, 1), DType::F32, probs.device())?;
    let mut hi = probs.max_keepdim(D::Minus1)?;
    for _ in 0..BISECTION_STEPS {
        let mid = ((&lo + &hi)? * 0.5)?;
        let kept = probs.broadcast_ge(&mid)?.to_dtype(DType::F32)?;
        let mass = (kept * probs)?.sum_keepdim(D::Minus1)?;
        let ok = mass.ge(top_p)?;
        lo = ok.where_cond(&mid, &lo)?;
        hi = ok.where_cond(&hi, &mid)?;
    }
    probs.broadcast_ge(&lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_the_mass() {
        let p = Tensor::new(
            &[[0.5f32, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]],
            &Device::Cpu,
        )
        .unwrap();
        let m = top_p_mask(&p, 0.75).unwrap().to_vec2::<u8>().unwrap();
        assert_eq!(m[0], [1, 1, 0, 0]);
        assert_eq!(m[1], [1, 1, 1, 1], "ties are all kept");
        let m = top_p_mask(&p, 0.95).unwrap().to_vec2::<u8>().unwrap();
        assert_eq!(m[0], [1, 1, 1, 0]);
    }

    #[test]
    fn sampling_follows_the_truncated_distribution_and_is_seeded() {
        let logits = Tensor::new(&[[2.0f32, 1.0, 0.0, -1.0]], &Device::Cpu).unwrap();
        let mut s = Sampler::new(1.0, 0.9, 7, &Device::Cpu).unwrap();
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[s.sample(&logits).unwrap()[0] as usize] += 1;
        }
        // softmax = .644 .237 .087 .032: top-p 0.9 keeps the first three (mass .968).
        assert_eq!(counts[3], 0, "{counts:?}");
        let z = 0.644 + 0.237 + 0.087;
        for (i, want) in [0.644 / z, 0.237 / z, 0.087 / z].iter().enumerate() {
            let got = counts[i] as f64 / 4000.0;
            assert!((got - want).abs() < 0.03, "{i}: {got} vs {want}");
        }
        let mut a = Sampler::new(0.8, 0.95, 1, &Device::Cpu).unwrap();
        let mut b = Sampler::new(0.8, 0.95, 1, &Device::Cpu).unwrap();
        let big = Tensor::randn(0f32, 1.0, (3, 100), &Device::Cpu).unwrap();
        assert_eq!(a.sample(&big).unwrap(), b.sample(&big).unwrap());
    }
}
