//! Synthetic weights: the real architecture with random weights from a seed, so that any size can
//! be measured without downloading a checkpoint.
//!
//! Every weight is a function of `(seed, tensor number, element index)` alone: tensor `t` is cut
//! into chunks of 2^20 elements, chunk `c` is a SplitMix64 stream seeded with
//! `seed ^ t * 0x9E3779B97F4A7C15 ^ c << 20`, and element `k` of a chunk is that stream's
//! `k`-th output — which SplitMix64 reaches in one step (its state after `k + 1` outputs is
//! `start + (k + 1) * 0x9E3779B97F4A7C15`). The value is uniform with the standard deviation of
//! the Hugging Face LLaMA initializer, rounded to the model's dtype, and the query rows are
//! multiplied by the attention scale in that dtype, as a tensor multiplication would.
//!
//! Because any element can be computed alone, a CUDA device computes its weights itself (one
//! kernel per part, [`crate::cuda::synth`]) and a tensor-parallel shard computes only its share;
//! the CPU computes the same values with every core. CPU and CUDA runs of the same synthetic
//! model therefore hold the same weights, bit for bit, and nothing is generated on the host and
//! copied over.

use crate::config::LlamaConfig;
use crate::error::EngineError;
use crate::model::{GateUp, Layer, Linear, Llama, Qkv};
use crate::parallel::Shard;
use candle_core::{DType, Device, Tensor};
use std::ops::Range;

/// Standard deviation of synthetic weights (the Hugging Face LLaMA initializer's).
const INIT_STD: f64 = 0.02;
/// Elements per independently seeded stream.
pub(crate) const CHUNK_BITS: u32 = 20;
/// SplitMix64's increment, also the multiplier that spreads tensor numbers over seeds.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Half-width of the uniform distribution with standard deviation `INIT_STD`.
pub(crate) fn half_width() -> f32 {
    (INIT_STD * 3f64.sqrt()) as f32
}

/// The seed of tensor `tensor`'s streams, before the chunk number is mixed in.
pub(crate) fn tensor_seed(seed: u64, tensor: u64) -> u64 {
    seed ^ tensor.wrapping_mul(GAMMA)
}

/// SplitMix64's output mixing.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Element `index` of a tensor whose streams start from `tseed` ([`tensor_seed`]), as f32 before
/// rounding to the model's dtype: `(u * 2 - 1) * half_width` with `u` uniform in `[0, 1)` from the
/// top 53 bits.
pub(crate) fn value(tseed: u64, index: u64, a: f32) -> f32 {
    let start = tseed ^ ((index >> CHUNK_BITS) << CHUNK_BITS);
    let k = index & ((1 << CHUNK_BITS) - 1);
    let z = mix(start.wrapping_add((k + 1).wrapping_mul(GAMMA)));
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    (u as f32 * 2.0 - 1.0) * a
}

/// One stacked part of a synthetic matrix: rows `rows` and columns `cols` of tensor number
/// `tensor`, a matrix `width` columns wide, multiplied by `scale` where given.
#[derive(Debug, Clone)]
pub struct Part {
    pub tensor: u64,
    pub rows: Range<usize>,
    pub cols: Range<usize>,
    pub width: usize,
    pub scale: Option<f64>,
}

impl Part {
    /// All of tensor `tensor`, `[rows, width]`.
    fn whole(tensor: u64, rows: usize, width: usize) -> Part {
        Part {
            tensor,
            rows: 0..rows,
            cols: 0..width,
            width,
            scale: None,
        }
    }

    fn rows(tensor: u64, rows: Range<usize>, width: usize) -> Part {
        Part {
            tensor,
            rows,
            cols: 0..width,
            width,
            scale: None,
        }
    }

    fn cols(tensor: u64, rows: usize, cols: Range<usize>, width: usize) -> Part {
        Part {
            tensor,
            rows: 0..rows,
            cols,
            width,
            scale: None,
        }
    }

    fn scaled(mut self, scale: f64) -> Part {
        self.scale = Some(scale);
        self
    }
}

/// The matrix made of `parts` stacked by rows (they must be equally wide), on `device`.
pub fn matrix(
    parts: &[Part],
    seed: u64,
    dtype: DType,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let cols = parts.first().map_or(0, |p| p.cols.len());
    if parts
        .iter()
        .any(|p| p.cols.len() != cols || p.cols.end > p.width)
    {
        candle_core::bail!("synthetic parts {parts:?} are not equally wide; this is a bug");
    }
    if !matches!(dtype, DType::BF16 | DType::F16 | DType::F32) {
        candle_core::bail!("synthetic weights come in bf16, f16 or f32, not {dtype:?}");
    }
    #[cfg(feature = "cuda")]
    if device.is_cuda() {
        return crate::cuda::synth::matrix(parts, seed, dtype, device);
    }
    let rows: usize = parts.iter().map(|p| p.rows.len()).sum();
    let t = match dtype {
        DType::BF16 => Tensor::from_vec(host(parts, seed, bf16_round), (rows, cols), &Device::Cpu)?,
        DType::F16 => Tensor::from_vec(host(parts, seed, f16_round), (rows, cols), &Device::Cpu)?,
        _ => Tensor::from_vec(host(parts, seed, f32_round), (rows, cols), &Device::Cpu)?,
    };
    t.to_device(device)
}

/// How a value is rounded to the dtype, and then scaled (`x * s + 0` in the dtype's arithmetic,
/// which is what multiplying a tensor by a scalar does).
type Round<T> = fn(f32, Option<f64>) -> T;

fn bf16_round(v: f32, scale: Option<f64>) -> half::bf16 {
    let x = half::bf16::from_f32(v);
    match scale {
        None => x,
        Some(s) => x * half::bf16::from_f64(s) + half::bf16::from_f64(0.0),
    }
}

fn f16_round(v: f32, scale: Option<f64>) -> half::f16 {
    let x = half::f16::from_f32(v);
    match scale {
        None => x,
        Some(s) => x * half::f16::from_f64(s) + half::f16::from_f64(0.0),
    }
}

fn f32_round(v: f32, scale: Option<f64>) -> f32 {
    match scale {
        None => v,
        Some(s) => v * s as f32 + 0.0,
    }
}

/// The values of `parts` stacked, computed on every core (up to 32), rows spread over them.
fn host<T: Copy + Default + Send>(parts: &[Part], seed: u64, round: Round<T>) -> Vec<T> {
    let cols = parts.first().map_or(0, |p| p.cols.len());
    let rows: usize = parts.iter().map(|p| p.rows.len()).sum();
    let mut data = vec![T::default(); rows * cols];
    if cols == 0 {
        return data;
    }
    // (part, row within the output) of every output row, so a thread can start anywhere.
    let owner: Vec<(usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.rows.clone().map(move |r| (i, r)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(32);
    let per = rows.div_ceil(threads).max(1);
    let a = half_width();
    std::thread::scope(|s| {
        for (block, out) in data.chunks_mut(per * cols).enumerate() {
            let owner = &owner[block * per..];
            s.spawn(move || {
                for (row, &(pi, r)) in out.chunks_mut(cols).zip(owner) {
                    let p = &parts[pi];
                    let tseed = tensor_seed(seed, p.tensor);
                    let first = (r * p.width + p.cols.start) as u64;
                    for (c, v) in row.iter_mut().enumerate() {
                        *v = round(value(tseed, first + c as u64, a), p.scale);
                    }
                }
            });
        }
    });
    data
}

/// The tensor numbers of a model's weights: the embedding is 1, layer `l`'s q, k, v, o, gate, up
/// and down are `2 + 7 l` onwards, and an untied output head comes last.
struct Numbers {
    layers: usize,
}

impl Numbers {
    const EMBED: u64 = 1;

    fn layer(&self, l: usize) -> [u64; 7] {
        let b = 2 + 7 * l as u64;
        [b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6]
    }

    fn head(&self) -> u64 {
        2 + 7 * self.layers as u64
    }
}

/// A model of `cfg`'s shape with random weights from `seed`, whole on `device`.
pub fn synthetic(
    cfg: &LlamaConfig,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<Llama, EngineError> {
    build(cfg, seed, dtype, device, None)
}

/// Shard `shard.rank` of `shard.world` of the synthetic model of `cfg` and `seed`, computed on
/// `device` alone: the same weights as cutting the whole model's (see [`Llama::shard`]).
pub fn synthetic_shard(
    cfg: &LlamaConfig,
    seed: u64,
    dtype: DType,
    device: &Device,
    shard: Shard,
) -> Result<Llama, EngineError> {
    build(cfg, seed, dtype, device, Some(shard))
}

fn build(
    cfg: &LlamaConfig,
    seed: u64,
    dtype: DType,
    device: &Device,
    shard: Option<Shard>,
) -> Result<Llama, EngineError> {
    let (h, f, v, hd) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.vocab_size,
        cfg.head_dim(),
    );
    let nh = cfg.num_attention_heads;
    let (world, rank) = shard.as_ref().map_or((1, 0), |s| (s.world, s.rank));
    let (lh, lkv, lf) = crate::model::shard_sizes(cfg, world, rank)?;
    let scale = 1.0 / (hd as f64).sqrt();
    let n = Numbers {
        layers: cfg.num_hidden_layers,
    };
    let m = |parts: &[Part]| matrix(parts, seed, dtype, device);
    let ones = |n: usize| Tensor::ones(n, dtype, device);
    let embed = m(&[Part::whole(Numbers::EMBED, v, h)])?;
    let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
    for l in 0..cfg.num_hidden_layers {
        let [tq, tk, tv, to, tg, tu, td] = n.layer(l);
        let (q, kv) = (rank * lh * hd, rank * lkv * hd);
        let qkv = m(&[
            Part::rows(tq, q..q + lh * hd, h).scaled(scale),
            Part::rows(tk, kv..kv + lkv * hd, h),
            Part::rows(tv, kv..kv + lkv * hd, h),
        ])?;
        let wo = m(&[Part::cols(to, h, q..q + lh * hd, nh * hd)])?;
        let gate_up = m(&[
            Part::rows(tg, rank * lf..(rank + 1) * lf, h),
            Part::rows(tu, rank * lf..(rank + 1) * lf, h),
        ])?;
        let down = m(&[Part::cols(td, h, rank * lf..(rank + 1) * lf, f)])?;
        layers.push(Layer {
            attn_norm: ones(h)?,
            qkv: Qkv::Fused(qkv),
            wo: Linear::Dense(wo),
            ffn_norm: ones(h)?,
            gate_up: GateUp::Fused(gate_up),
            w_down: Linear::Dense(down),
        });
    }
    let lm_head = if cfg.tie_word_embeddings {
        Linear::Dense(embed.clone())
    } else {
        Linear::Dense(m(&[Part::whole(n.head(), v, h)])?)
    };
    let model = Llama::new(cfg.clone(), embed, layers, ones(h)?, lm_head, false)?;
    Ok(match shard {
        Some(s) => model.into_shard(s),
        None => model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattbench_workload::sample::SplitMix64;

    /// Element `k` of chunk `c` is the `k`-th output of chunk `c`'s SplitMix64 stream: the
    /// one-step formula agrees with running the generator.
    #[test]
    fn one_element_equals_the_stream_it_belongs_to() {
        let a = half_width();
        for (seed, tensor) in [(0u64, 1u64), (42, 9), (u64::MAX, 123_456)] {
            let tseed = tensor_seed(seed, tensor);
            for chunk in [0u64, 1, 7] {
                let mut rng = SplitMix64::new(tseed ^ (chunk << CHUNK_BITS));
                for k in 0..3000u64 {
                    let expected = (rng.unit() as f32 * 2.0 - 1.0) * a;
                    let got = value(tseed, (chunk << CHUNK_BITS) + k, a);
                    assert_eq!(
                        got.to_bits(),
                        expected.to_bits(),
                        "chunk {chunk} element {k}"
                    );
                }
            }
        }
    }

    /// The values are uniform in `[-a, a)` with the initializer's standard deviation.
    #[test]
    fn values_have_the_initializers_spread() {
        let a = half_width();
        let tseed = tensor_seed(5, 3);
        let xs: Vec<f64> = (0..200_000u64).map(|i| value(tseed, i, a) as f64).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
        assert!(mean.abs() < 2e-4, "{mean}");
        assert!((sd - INIT_STD).abs() < 2e-4, "{sd}");
        assert!(xs.iter().all(|&x| x >= -(a as f64) && x < a as f64));
    }

    /// A fused matrix equals its parts made alone, the first scaled by a tensor multiplication
    /// and all joined by `cat`: the same values, bit for bit, in every dtype.
    #[test]
    fn fused_weights_equal_their_parts_scaled_and_joined() {
        let cpu = Device::Cpu;
        let scale = 1.0 / 8f64.sqrt();
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let fused = matrix(
                &[
                    Part::whole(3, 48, 40).scaled(scale),
                    Part::whole(4, 16, 40),
                    Part::whole(5, 16, 40),
                ],
                7,
                dtype,
                &cpu,
            )
            .unwrap();
            let part = |rows: usize, id: u64| {
                matrix(&[Part::whole(id, rows, 40)], 7, dtype, &cpu).unwrap()
            };
            let q = (part(48, 3) * scale).unwrap();
            let joined = Tensor::cat(&[q, part(16, 4), part(16, 5)], 0).unwrap();
            let (a, b) = (bits(&fused), bits(&joined));
            assert_eq!(a, b, "{dtype:?}");
            assert!(a.iter().any(|&v| v != 0));
        }
    }

    /// A part cut from a tensor holds the same values as the same rows and columns of the whole.
    #[test]
    fn a_cut_part_equals_the_same_cut_of_the_whole() {
        let cpu = Device::Cpu;
        // Wider than a chunk, so the cut crosses chunk boundaries.
        let (rows, width) = (5, (1 << CHUNK_BITS) / 2 + 3);
        let whole = matrix(&[Part::whole(2, rows, width)], 11, DType::BF16, &cpu).unwrap();
        let cut = matrix(
            &[Part::cols(2, rows, 100..width - 7, width)],
            11,
            DType::BF16,
            &cpu,
        );
        let expected = whole.narrow(1, 100, width - 107).unwrap();
        assert_eq!(bits(&cut.unwrap()), bits(&expected.contiguous().unwrap()));
        let cut = matrix(&[Part::rows(2, 2..4, width)], 11, DType::BF16, &cpu).unwrap();
        assert_eq!(bits(&cut), bits(&whole.narrow(0, 2, 2).unwrap()));
    }

    pub(crate) fn bits(t: &Tensor) -> Vec<u32> {
        let t = t.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
        t.to_vec1::<f32>()
            .unwrap()
            .into_iter()
            .map(f32::to_bits)
            .collect()
    }
}
