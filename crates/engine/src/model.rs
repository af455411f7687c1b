//! The LLaMA forward pass, batched, over a preallocated KV cache.
//!
//! Prompts of different lengths are left-padded to the longest, so every sequence writes its
//! next key and value at the same cache column; each sequence carries its own positions (rotary
//! embeddings use per-sequence position ids) and an additive mask hides its padding.

use crate::config::LlamaConfig;
use crate::error::EngineError;
use crate::parallel::Shard;
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Result, Tensor, D};

/// A weight matrix `[out, in]`, dense or quantized (GGUF).
pub enum Linear {
    Dense(Tensor),
    Quant(QMatMul),
}

impl Linear {
    /// `x [.., in] -> [.., out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Dense(w) => Linear::dense(x, w),
            Linear::Quant(q) => q.forward(x),
        }
    }

    /// `x [.., in] @ w[out, in]^T`, as one 2-D matrix product over all leading dimensions. The
    /// products of a decode step (`x [B, 1, in]`, one position per sequence) go through
    /// [`crate::cuda::gemm`] on CUDA; prompts keep candle's cuBLAS call, whose choice serves
    /// their many rows well and costs no timing for each new prompt length.
    pub fn dense(x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let k = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let one_position = dims.len() >= 3 && dims[dims.len() - 2] == 1;
        let x = x.reshape((rows, k))?;
        #[cfg(feature = "cuda")]
        if one_position && crate::cuda::gemm::applies(&x, w) {
            let mut out = dims;
            *out.last_mut()
                .expect("x has a last dimension; this is a bug") = w.dim(0)?;
            return crate::cuda::gemm::linear(&x, w)?.reshape(out);
        }
        let _ = one_position;
        let y = x.matmul(&w.t()?)?;
        let mut out = dims;
        *out.last_mut()
            .expect("x has a last dimension; this is a bug") = w.dim(0)?;
        y.reshape(out)
    }
}

/// The query, key and value projections. Dense weights are fused into one `[q; k; v]` matrix
/// (one matrix product instead of three) with the attention scale `1/sqrt(head_dim)` folded into
/// the query rows; quantized ones stay apart.
pub enum Qkv {
    Fused(Tensor),
    Split(Linear, Linear, Linear),
}

/// The gate and up projections of the MLP, fused into `[gate; up]` when dense.
pub enum GateUp {
    Fused(Tensor),
    Split(Linear, Linear),
}

pub struct Layer {
    pub attn_norm: Tensor,
    pub qkv: Qkv,
    pub wo: Linear,
    pub ffn_norm: Tensor,
    pub gate_up: GateUp,
    pub w_down: Linear,
}

impl Layer {
    /// A layer of dense weights, fused as described on [`Qkv`] and [`GateUp`].
    #[allow(clippy::too_many_arguments)]
    pub fn dense(
        attn_norm: Tensor,
        wq: Tensor,
        wk: Tensor,
        wv: Tensor,
        wo: Tensor,
        ffn_norm: Tensor,
        gate: Tensor,
        up: Tensor,
        down: Tensor,
        head_dim: usize,
    ) -> Result<Layer> {
        let wq = (wq * (1.0 / (head_dim as f64).sqrt()))?;
        Ok(Layer {
            attn_norm,
            qkv: Qkv::Fused(Tensor::cat(&[wq, wk, wv], 0)?),
            wo: Linear::Dense(wo),
            ffn_norm,
            gate_up: GateUp::Fused(Tensor::cat(&[gate, up], 0)?),
            w_down: Linear::Dense(down),
        })
    }
}

pub struct Llama {
    pub cfg: LlamaConfig,
    pub embed: Tensor,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    pub lm_head: Linear,
    /// Rotary tables `[context, head_dim / 2]` in the activation dtype.
    cos: Tensor,
    sin: Tensor,
    /// GGUF files store Q and K for interleaved (pair-wise) rotation; Hugging Face checkpoints for
    /// the half-split (`rotate_half`) form.
    interleaved_rope: bool,
    /// bf16 on CUDA: the engine's own kernels ([`crate::cuda`]) replace candle's operations
    /// around the matrix products. Elsewhere (or with `WATTBENCH_KERNELS=candle`) candle's
    /// operations do all the work.
    kernels: bool,
    /// Set when this model is one shard of a tensor-parallel group.
    shard: Option<Shard>,
    pub dtype: DType,
    pub device: Device,
}

/// The cache column a forward pass writes its first token at: known on the host, or held on the
/// device (u32 `[1]`) so that a decode step captured in a CUDA graph writes at the next column
/// each time it is replayed.
#[derive(Debug, Clone, Copy)]
pub enum Column<'a> {
    Host(usize),
    Device(&'a Tensor),
}

/// Per-layer key and value caches `[batch, kv_heads, capacity, head_dim]`.
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    pub capacity: usize,
}

impl KvCache {
    /// Caches for `batch` sequences of up to `columns` positions each, of
    /// [`KvCache::columns_for`] columns.
    pub fn new(m: &Llama, batch: usize, columns: usize) -> Result<KvCache> {
        let capacity = KvCache::columns_for(m, columns);
        let shape = (batch, m.kv_heads(), capacity, m.cfg.head_dim());
        let mut k = Vec::with_capacity(m.layers.len());
        let mut v = Vec::with_capacity(m.layers.len());
        for _ in 0..m.layers.len() {
            k.push(Tensor::zeros(shape, m.dtype, &m.device)?);
            v.push(Tensor::zeros(shape, m.dtype, &m.device)?);
        }
        Ok(KvCache { k, v, capacity })
    }

    /// The columns a cache for `columns` positions has: with the engine's CUDA kernels, which
    /// read a sequence's keys only up to its last column, `columns` rounded up to an odd multiple
    /// of 16. Every (sequence, key head) of a layer's cache is a block of `capacity` rows that a
    /// decode step reads from its start; blocks a multiple of a large power of two apart (384
    /// columns of 256-byte rows: 96 KiB, 2^15 · 3) crowd their reads onto the same memory
    /// channels, and an H100's decode attention over them took 1.5–2% longer than over blocks
    /// 400 columns apart (bench/RESULTS.md). Elsewhere `columns` as it is.
    pub fn columns_for(m: &Llama, columns: usize) -> usize {
        if m.kernels() {
            odd_sixteens(columns)
        } else {
            columns
        }
    }

    /// The key and value caches of layer `i`, `[B, kv_heads, capacity, head_dim]` each.
    pub fn layer(&self, i: usize) -> Option<(&Tensor, &Tensor)> {
        Some((self.k.get(i)?, self.v.get(i)?))
    }
}

/// `columns` rounded up to an odd multiple of 16 ([`KvCache::columns_for`]).
fn odd_sixteens(columns: usize) -> usize {
    16 * (columns.div_ceil(16) | 1)
}

/// Attention heads, key/value heads and MLP columns of shard `rank` of `world`, or why `cfg`
/// cannot be split so.
pub(crate) fn shard_sizes(
    cfg: &LlamaConfig,
    world: usize,
    rank: usize,
) -> std::result::Result<(usize, usize, usize), EngineError> {
    let (nh, nkv, f) = (
        cfg.num_attention_heads,
        cfg.kv_heads(),
        cfg.intermediate_size,
    );
    if world == 0 || rank >= world || nh % world != 0 || nkv % world != 0 || f % world != 0 {
        return Err(EngineError::Shard {
            world,
            message: format!(
                "{nh} attention heads, {nkv} key/value heads and an MLP of {f} must each divide by the number of shards"
            ),
        });
    }
    Ok((nh / world, nkv / world, f / world))
}

impl Llama {
    /// The model from its weights; activations take the embedding's dtype and device.
    pub fn new(
        cfg: LlamaConfig,
        embed: Tensor,
        layers: Vec<Layer>,
        norm: Tensor,
        lm_head: Linear,
        interleaved_rope: bool,
    ) -> Result<Llama> {
        let (dtype, device) = (embed.dtype(), embed.device().clone());
        let half = cfg.head_dim() / 2;
        let ctx = cfg.max_position_embeddings;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim() as f64) as f32)
            .collect();
        let inv = Tensor::from_vec(inv, (1, half), &device)?;
        let pos = Tensor::arange(0u32, ctx as u32, &device)?
            .to_dtype(DType::F32)?
            .reshape((ctx, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        Ok(Llama {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            interleaved_rope,
            kernels: kernels_apply(&device, dtype),
            shard: None,
            dtype,
            device,
        })
    }

    /// `(x + r, rms_norm(x + r) * w)`.
    fn add_norm(&self, x: &Tensor, r: &Tensor, w: &Tensor) -> Result<(Tensor, Tensor)> {
        let eps = self.cfg.rms_norm_eps as f32;
        #[cfg(feature = "cuda")]
        if self.kernels {
            return crate::cuda::layer::add_rms_norm(x, r, w, eps);
        }
        let x = (x + r)?;
        let h = candle_nn::ops::rms_norm(&x, w, eps)?;
        Ok((x, h))
    }

    /// The MLP without its residual: `down(silu(gate(h)) * up(h))`.
    fn mlp(&self, l: &Layer, h: &Tensor) -> Result<Tensor> {
        let act = match &l.gate_up {
            GateUp::Fused(w) => {
                let y = Linear::dense(h, w)?;
                #[cfg(feature = "cuda")]
                if self.kernels {
                    return l.w_down.forward(&crate::cuda::layer::silu_mul(&y)?);
                }
                let f = self.ffn();
                let (gate, up) = (y.narrow(2, 0, f)?, y.narrow(2, f, f)?);
                (candle_nn::ops::silu(&gate)? * up)?
            }
            GateUp::Split(g, u) => (candle_nn::ops::silu(&g.forward(h)?)? * u.forward(h)?)?,
        };
        l.w_down.forward(&act)
    }

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        if self.interleaved_rope {
            candle_nn::rotary_emb::rope_i(x, cos, sin)
        } else {
            candle_nn::rotary_emb::rope(x, cos, sin)
        }
    }

    /// The queries `[B, nh, T, hd]` of layer `i` for `h [B, T, hidden]` at `positions`, with
    /// the layer's keys and values written into the cache at columns `offset..offset + T`, and
    /// whether the queries already carry the attention scale.
    fn queries(
        &self,
        i: usize,
        h: &Tensor,
        positions: &Tensor,
        cache: &mut KvCache,
        column: Column<'_>,
    ) -> Result<(Tensor, bool)> {
        let (b, t, _) = h.dims3()?;
        let (nh, nkv, hd) = (self.heads(), self.kv_heads(), self.cfg.head_dim());
        let (q, k, v, prescaled) = match &self.layers[i].qkv {
            Qkv::Fused(w) => {
                let y = Linear::dense(h, w)?;
                #[cfg(feature = "cuda")]
                if self.kernels {
                    let split = self.split_args(i, positions, cache, column);
                    return Ok((crate::cuda::layer::qkv_split(&y, &split)?, true));
                }
                let q = y.narrow(2, 0, nh * hd)?;
                let k = y.narrow(2, nh * hd, nkv * hd)?;
                let v = y.narrow(2, (nh + nkv) * hd, nkv * hd)?;
                (q, k, v, true)
            }
            Qkv::Split(wq, wk, wv) => (wq.forward(h)?, wk.forward(h)?, wv.forward(h)?, false),
        };
        let flat_pos = positions.flatten_all()?;
        let cos = self
            .cos
            .index_select(&flat_pos, 0)?
            .reshape((b, t, hd / 2))?;
        let sin = self
            .sin
            .index_select(&flat_pos, 0)?
            .reshape((b, t, hd / 2))?;
        let q = q.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
        let k = k.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let v = v.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let q = self.rope(&q, &cos, &sin)?;
        let k = self.rope(&k, &cos, &sin)?;
        let Column::Host(offset) = column else {
            candle_core::bail!("a cache column on the device needs the engine's CUDA kernels");
        };
        cache.k[i].slice_set(&k, 2, offset)?;
        cache.v[i].slice_set(&v, 2, offset)?;
        Ok((q, prescaled))
    }

    /// Where layer `i`'s keys and values go and how its queries and keys are rotated, for the
    /// kernels that split the fused QKV projection.
    #[cfg(feature = "cuda")]
    fn split_args<'a>(
        &'a self,
        i: usize,
        positions: &'a Tensor,
        cache: &'a KvCache,
        column: Column<'a>,
    ) -> crate::cuda::layer::QkvSplit<'a> {
        crate::cuda::layer::QkvSplit {
            cos: &self.cos,
            sin: &self.sin,
            positions,
            k_cache: &cache.k[i],
            v_cache: &cache.v[i],
            column,
            heads: self.heads(),
            kv_heads: self.kv_heads(),
            head_dim: self.cfg.head_dim(),
            interleaved: self.interleaved_rope,
        }
    }

    /// A decode step's attention output `[B, 1, nh * hd]` of layer `i` straight from the fused
    /// QKV projection, in one kernel that also writes the step's keys and values into the cache
    /// ([`crate::cuda::attention::decode_attention_qkv`]); `None` where that kernel does not
    /// apply (prompts, split projections, other dtypes or head sizes, or turned off).
    #[cfg(feature = "cuda")]
    fn decode_from_qkv(
        &self,
        i: usize,
        h: &Tensor,
        positions: &Tensor,
        starts: Option<&Tensor>,
        cache: &KvCache,
        column: Column<'_>,
    ) -> Result<Option<Tensor>> {
        let (b, t, _) = h.dims3()?;
        let (nh, hd) = (self.heads(), self.cfg.head_dim());
        let (Some(starts), Qkv::Fused(w), 1) = (starts, &self.layers[i].qkv, t) else {
            return Ok(None);
        };
        if !self.kernels
            || !crate::cuda::attention::decode_from_qkv()
            || !crate::cuda::attention::supported(h, hd)
        {
            return Ok(None);
        }
        let y = Linear::dense(h, w)?;
        let split = self.split_args(i, positions, cache, column);
        // The fused projection's queries carry the attention scale (see `queries`).
        let out = crate::cuda::attention::decode_attention_qkv(&y, &split, starts, 1.0)?;
        Ok(Some(out.reshape((b, t, nh * hd))?))
    }

    /// Query heads of this model (of this shard, when sharded).
    pub fn heads(&self) -> usize {
        self.cfg.num_attention_heads / self.world()
    }

    /// Key/value heads of this model (of this shard, when sharded).
    pub fn kv_heads(&self) -> usize {
        self.cfg.kv_heads() / self.world()
    }

    /// MLP width of this model (of this shard, when sharded).
    pub fn ffn(&self) -> usize {
        self.cfg.intermediate_size / self.world()
    }

    fn world(&self) -> usize {
        self.shard.as_ref().map_or(1, |s| s.world)
    }

    /// The partial sums of the shards added up; the tensor itself when not sharded.
    fn reduce(&self, t: Tensor) -> Result<Tensor> {
        match &self.shard {
            Some(s) => s.group.sum(s.rank, &t),
            None => Ok(t),
        }
    }

    /// Shard `shard.rank` of `shard.world` of this model, on `device`: its share of the attention
    /// heads (query, key and value) and of the MLP's columns, the output projections' matching
    /// columns, and everything else whole. Head counts and the MLP width must divide by the
    /// number of shards, and the weights must be dense.
    pub fn shard(&self, shard: Shard, device: &Device) -> std::result::Result<Llama, EngineError> {
        let (world, r) = (shard.world, shard.rank);
        let (nh, nkv, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.kv_heads(),
            self.cfg.head_dim(),
        );
        let f = self.cfg.intermediate_size;
        let (lh, lkv, lf) = shard_sizes(&self.cfg, world, r)?;
        if self.shard.is_some() {
            return Err(EngineError::Shard {
                world,
                message: "the model is already a shard".into(),
            });
        }
        let to = |t: &Tensor| t.to_device(device);
        fn dense(w: &Linear, world: usize) -> std::result::Result<&Tensor, EngineError> {
            match w {
                Linear::Dense(w) => Ok(w),
                Linear::Quant(_) => Err(EngineError::Shard {
                    world,
                    message: "tensor parallelism needs dense weights; quantized (GGUF) weights cannot be split".into(),
                }),
            }
        }
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let (Qkv::Fused(qkv), GateUp::Fused(gate_up)) = (&l.qkv, &l.gate_up) else {
                return Err(EngineError::Shard {
                    world,
                    message: "tensor parallelism needs dense weights; quantized (GGUF) weights cannot be split".into(),
                });
            };
            let qkv = Tensor::cat(
                &[
                    qkv.narrow(0, r * lh * hd, lh * hd)?,
                    qkv.narrow(0, (nh + r * lkv) * hd, lkv * hd)?,
                    qkv.narrow(0, (nh + nkv + r * lkv) * hd, lkv * hd)?,
                ],
                0,
            )?;
            let gate_up = Tensor::cat(
                &[
                    gate_up.narrow(0, r * lf, lf)?,
                    gate_up.narrow(0, f + r * lf, lf)?,
                ],
                0,
            )?;
            let wo = dense(&l.wo, world)?
                .narrow(1, r * lh * hd, lh * hd)?
                .contiguous()?;
            let down = dense(&l.w_down, world)?
                .narrow(1, r * lf, lf)?
                .contiguous()?;
            layers.push(Layer {
                attn_norm: to(&l.attn_norm)?,
                qkv: Qkv::Fused(to(&qkv)?),
                wo: Linear::Dense(to(&wo)?),
                ffn_norm: to(&l.ffn_norm)?,
                gate_up: GateUp::Fused(to(&gate_up)?),
                w_down: Linear::Dense(to(&down)?),
            });
        }
        let lm_head = Linear::Dense(to(dense(&self.lm_head, world)?)?);
        Ok(Llama {
            cfg: self.cfg.clone(),
            embed: to(&self.embed)?,
            layers,
            norm: to(&self.norm)?,
            lm_head,
            cos: to(&self.cos)?,
            sin: to(&self.sin)?,
            interleaved_rope: self.interleaved_rope,
            kernels: kernels_apply(device, self.dtype),
            shard: Some(shard),
            dtype: self.dtype,
            device: device.clone(),
        })
    }

    /// Turns the engine's CUDA kernels on or off (they stay off where they do not apply), to
    /// compare the two paths in one process.
    pub fn use_kernels(&mut self, on: bool) {
        self.kernels = on && kernels_apply(&self.device, self.dtype);
    }

    /// This model (made of one shard's weights) as shard `shard.rank` of its group.
    pub(crate) fn into_shard(mut self, shard: Shard) -> Llama {
        self.shard = Some(shard);
        self
    }

    /// The tensor-parallel group this model is a shard of, if any.
    pub fn group(&self) -> Option<&Shard> {
        self.shard.as_ref()
    }

    /// Whether the engine's CUDA kernels are in use.
    pub fn kernels(&self) -> bool {
        self.kernels
    }

    /// Runs `tokens [B, T]` at `positions [B, T]` (rotary positions), writing keys and values at
    /// cache columns `offset..offset + T`; `pads[b]` is the number of padding columns before
    /// sequence `b`, which no real token attends to ([`mask`]). Returns the logits of the last
    /// column, `[B, vocab]`, in f32.
    pub fn forward(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        pads: &[usize],
        cache: &mut KvCache,
        offset: usize,
    ) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        // The fused attention kernels skip each sequence's padding instead of masking it; the
        // mask (B * T * (offset + T) values) is built only for attention through matrix products.
        let starts = if self.kernels {
            let s: Vec<u32> = pads.iter().map(|&p| p as u32).collect();
            Some(Tensor::from_vec(s, b, &self.device)?)
        } else {
            None
        };
        let masked = if self.fused_attention(t) {
            None
        } else {
            Some(mask(pads, t, offset, &self.device)?)
        };
        self.forward_at(
            tokens,
            positions,
            masked.as_ref(),
            starts.as_ref(),
            cache,
            Column::Host(offset),
        )?
        .to_dtype(DType::F32)
    }

    /// Whether the engine's attention kernels serve a forward pass of `t` tokens per sequence
    /// (as [`Llama::forward_at`] decides: CUDA kernels on, head dimension 64 or 128, and for
    /// prompts unless `WATTBENCH_PREFILL_ATTENTION=matmul`).
    fn fused_attention(&self, t: usize) -> bool {
        #[cfg(feature = "cuda")]
        {
            self.kernels
                && matches!(self.cfg.head_dim(), 64 | 128)
                && (t == 1 || crate::cuda::attention::prefill_fused())
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = t;
            false
        }
    }

    /// One decode step, `tokens [B, 1]` at `positions [B, 1]`, at the cache column `col` held
    /// on the device (u32 `[1]`); `starts [B]` (u32, on the device) is each sequence's first
    /// column after its padding. Nothing here depends on host values that change from step to
    /// step, so the step can be captured in a CUDA graph and replayed. Needs the engine's CUDA
    /// kernels ([`Llama::kernels`]). The logits, `[B, vocab]`, stay in the model's dtype: the
    /// sampler reads bf16 as it is, which spares a step the kernel that widens them to f32.
    pub fn decode_at(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        starts: &Tensor,
        cache: &mut KvCache,
        col: &Tensor,
    ) -> Result<Tensor> {
        if !self.kernels || tokens.dim(1)? != 1 {
            candle_core::bail!("a decode step at a column on the device needs the engine's CUDA kernels and one token per sequence");
        }
        self.forward_at(
            tokens,
            positions,
            None,
            Some(starts),
            cache,
            Column::Device(col),
        )
    }

    /// [`Llama::forward`] at a column on the host or the device; the last column's logits in the
    /// model's dtype.
    fn forward_at(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: Option<&Tensor>,
        starts: Option<&Tensor>,
        cache: &mut KvCache,
        column: Column<'_>,
    ) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let (nh, nkv, hd) = (self.heads(), self.kv_heads(), self.cfg.head_dim());
        let groups = nh / nkv;
        // Keys the attention may read: up to the last written column, or (for a column on the
        // device) the whole cache, which the kernel cuts at the column.
        let (len, col) = match column {
            Column::Host(offset) => (offset + t, None),
            Column::Device(c) => (cache.capacity, Some(c)),
        };
        let scale = 1.0 / (hd as f64).sqrt();
        let mask = mask.map(|m| m.to_dtype(self.dtype)).transpose()?;
        let mut x = self
            .embed
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, t, self.cfg.hidden_size))?;
        let Some(first) = self.layers.first() else {
            candle_core::bail!("the model has no layers");
        };
        let eps = self.cfg.rms_norm_eps as f32;
        // `h` is always the normalized input of the next block.
        let mut h = candle_nn::ops::rms_norm(&x, &first.attn_norm, eps)?;
        for (i, l) in self.layers.iter().enumerate() {
            #[cfg(feature = "cuda")]
            let fused = self.decode_from_qkv(i, &h, positions, starts, cache, column)?;
            #[cfg(not(feature = "cuda"))]
            let fused: Option<Tensor> = None;
            let y = if let Some(y) = fused {
                y
            } else {
                let (q, prescaled) = self.queries(i, &h, positions, cache, column)?;
                // The last layer of a prompt: every position's keys and values are in the cache
                // now, and only the last position goes on (to the logits), so only its query
                // attends and only its row passes the rest of the layer.
                let (q, tq, mask) = if i + 1 == self.layers.len() && t > 1 {
                    x = x.narrow(1, t - 1, 1)?.contiguous()?;
                    let mask = mask.as_ref().map(|m| m.narrow(2, t - 1, 1)).transpose()?;
                    (q.narrow(2, t - 1, 1)?.contiguous()?, 1, mask)
                } else {
                    (q, t, mask.clone())
                };
                // Views of the filled part of the cache: matrix products read them in place.
                let kc = cache.k[i].narrow(2, 0, len)?;
                let vc = cache.v[i].narrow(2, 0, len)?;
                match (starts, column) {
                    #[cfg(feature = "cuda")]
                    (Some(starts), _) if tq == 1 && crate::cuda::attention::supported(&q, hd) => {
                        let s = if prescaled { 1.0 } else { scale as f32 };
                        crate::cuda::attention::decode_attention(&q, &kc, &vc, starts, col, s)?
                            .reshape((b, tq, nh * hd))?
                    }
                    #[cfg(feature = "cuda")]
                    (Some(starts), Column::Host(offset))
                        if crate::cuda::attention::supported(&q, hd)
                            && crate::cuda::attention::prefill_fused() =>
                    {
                        let s = if prescaled { 1.0 } else { scale as f32 };
                        crate::cuda::attention::prefill_attention(
                            &q,
                            &cache.k[i],
                            &cache.v[i],
                            starts,
                            offset,
                            s,
                        )?
                    }
                    _ => {
                        let (Some(mask), None) = (&mask, col) else {
                            candle_core::bail!("attention without the fused kernel needs a mask and a cache column on the host");
                        };
                        // Grouped-query attention without copying keys: the query heads that share
                        // a key head become rows of one matrix product.
                        let q = q.reshape((b, nkv, groups * tq, hd))?;
                        let att = q.matmul(&kc.t()?)?;
                        let att = if prescaled { att } else { (att * scale)? };
                        let att = att.reshape((b, nh, tq, len))?.broadcast_add(mask)?;
                        candle_nn::ops::softmax_last_dim(&att)?
                            .reshape((b, nkv, groups * tq, len))?
                            .matmul(&vc)?
                            .reshape((b, nh, tq, hd))?
                            .transpose(1, 2)?
                            .reshape((b, tq, nh * hd))?
                    }
                }
            };
            (x, h) = self.add_norm(&x, &self.reduce(l.wo.forward(&y)?)?, &l.ffn_norm)?;
            let next_norm = self.layers.get(i + 1).map_or(&self.norm, |n| &n.attn_norm);
            (x, h) = self.add_norm(&x, &self.reduce(self.mlp(l, &h)?)?, next_norm)?;
        }
        let last = h.narrow(1, h.dim(1)? - 1, 1)?.contiguous()?;
        self.lm_head.forward(&last)?.squeeze(1)
    }
}

/// Whether the engine's CUDA kernels serve a model on `device` in `dtype`.
fn kernels_apply(device: &Device, dtype: DType) -> bool {
    #[cfg(feature = "cuda")]
    {
        device.is_cuda() && dtype == DType::BF16 && crate::cuda::enabled()
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (device, dtype);
        false
    }
}

/// Additive attention mask `[B, 1, T, offset + T]` for left-padded sequences: sequence `b` has
/// `pads[b]` padding columns at the start. A query may see keys at or before it and not in the
/// padding; padding queries see only themselves (their outputs are never used).
pub fn mask(pads: &[usize], t: usize, offset: usize, device: &Device) -> Result<Tensor> {
    let len = offset + t;
    let mut m = vec![0f32; pads.len() * t * len];
    for (b, &p) in pads.iter().enumerate() {
        for i in 0..t {
            let qi = offset + i;
            for j in 0..len {
                let visible = if qi < p { j == qi } else { j >= p && j <= qi };
                if !visible {
                    m[(b * t + i) * len + j] = f32::NEG_INFINITY;
                }
            }
        }
    }
    Tensor::from_vec(m, (pads.len(), 1, t, len), device)
}

/// Rotary positions `[B, T]` of cache columns `offset..offset + T`: column minus padding.
pub fn positions(pads: &[usize], t: usize, offset: usize, device: &Device) -> Result<Tensor> {
    let p: Vec<u32> = pads
        .iter()
        .flat_map(|&p| (offset..offset + t).map(move |c| c.saturating_sub(p) as u32))
        .collect();
    Tensor::from_vec(p, (pads.len(), t), device)
}

/// The index of the largest logit of each row, `[B]`.
pub fn argmax(logits: &Tensor) -> Result<Vec<u32>> {
    logits.argmax(D::Minus1)?.to_vec1::<u32>()
}

#[cfg(test)]
mod tests {
    use super::odd_sixteens;

    #[test]
    fn cache_columns_round_up_to_an_odd_multiple_of_sixteen() {
        let got: Vec<usize> = [1, 16, 17, 32, 257, 384, 385, 400, 401, 2048]
            .iter()
            .map(|&c| odd_sixteens(c))
            .collect();
        assert_eq!(got, [16, 16, 48, 48, 272, 400, 400, 400, 432, 2064]);
    }
}
