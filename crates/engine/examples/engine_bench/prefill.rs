//! Where the time of a prefill goes (part of `--mode profile`): `--batch` prompts of
//! `--prompt-len` tokens, the whole prefill (forward pass and sampling of the first tokens), and
//! its parts for all layers alone on random inputs of the same shapes: the matrix products, the
//! attention over the prompt (the engine's kernel, and matrix products with a mask and softmax),
//! the split of the fused QKV projection into rotated heads and cache columns, RMSNorm with the
//! residual addition, and SiLU.

use crate::arg;
use crate::profile::{timed, Res};
use candle_core::Tensor;
use wattbench_engine::cuda::layer::{add_rms_norm, qkv_split, silu_mul, QkvSplit};
use wattbench_engine::model::{mask, positions, GateUp, KvCache, Linear, Llama, Qkv};
use wattbench_engine::sampling::Sampler;

pub fn run(
    args: &[String],
    m: &Llama,
    cache: &mut KvCache,
    sampler: &mut Sampler,
    reps: usize,
) -> Res<serde_json::Value> {
    let dev = m.device.clone();
    let b: usize = arg(args, "--batch", "64").parse()?;
    let t: usize = arg(args, "--prompt-len", "128").parse()?;
    let rows = b * t;
    let pads = vec![0usize; b];
    let prompt = Tensor::from_vec(
        (0..rows as u32).map(|i| 3 + i % 1000).collect(),
        (b, t),
        &dev,
    )?;
    let pos = positions(&pads, t, 0, &dev)?;
    let (whole, _) = timed(reps, &dev, || {
        let l = m.forward(&prompt, &pos, &pads, cache, 0)?;
        sampler.sample(&l)?;
        Ok(())
    })?;
    let (mask_ms, _) = timed(reps, &dev, || {
        mask(&pads, t, 0, &dev)?.to_dtype(m.dtype)?;
        Ok(())
    })?;
    let rand = |shape: &[usize]| -> candle_core::Result<Tensor> {
        Tensor::randn(0f32, 1.0, shape, &dev)?.to_dtype(m.dtype)
    };
    let (hidden, f) = (m.cfg.hidden_size, m.cfg.intermediate_size);
    let (h, a) = (rand(&[rows, hidden])?, rand(&[rows, f])?);
    let (products, _) = timed(reps, &dev, || {
        for l in &m.layers {
            if let (Qkv::Fused(qkv), Linear::Dense(o), GateUp::Fused(gu), Linear::Dense(d)) =
                (&l.qkv, &l.wo, &l.gate_up, &l.w_down)
            {
                Linear::dense(&h, qkv)?;
                Linear::dense(&h, o)?;
                Linear::dense(&h, gu)?;
                Linear::dense(&a, d)?;
            }
        }
        Ok(())
    })?;
    let (nh, nkv, hd) = (m.heads(), m.kv_heads(), m.cfg.head_dim());
    let groups = nh / nkv;
    let q = rand(&[b, nh, t, hd])?;
    let kc = rand(&[b, nkv, t + 1, hd])?.narrow(2, 0, t)?;
    let vc = rand(&[b, nkv, t + 1, hd])?.narrow(2, 0, t)?;
    let mb = mask(&pads, t, 0, &dev)?.to_dtype(m.dtype)?;
    // Attention over a prompt through matrix products, an additive mask and a softmax (the path
    // without the engine's kernels), and through the engine's kernel.
    let (attention, _) = timed(reps, &dev, || {
        for _ in &m.layers {
            let att = q.reshape((b, nkv, groups * t, hd))?.matmul(&kc.t()?)?;
            let att = att.reshape((b, nh, t, t))?.broadcast_add(&mb)?;
            candle_nn::ops::softmax_last_dim(&att)?
                .reshape((b, nkv, groups * t, t))?
                .matmul(&vc)?
                .reshape((b, nh, t, hd))?
                .transpose(1, 2)?
                .reshape((b, t, nh * hd))?;
        }
        Ok(())
    })?;
    let starts = Tensor::zeros(b, candle_core::DType::U32, &dev)?;
    let (kfull, vfull) = (rand(&[b, nkv, t, hd])?, rand(&[b, nkv, t, hd])?);
    let (fused_attention, _) = timed(reps, &dev, || {
        for _ in &m.layers {
            wattbench_engine::cuda::attention::prefill_attention(
                &q, &kfull, &vfull, &starts, 0, 1.0,
            )?;
        }
        Ok(())
    })?;
    let y = rand(&[b, t, (nh + 2 * nkv) * hd])?;
    let table = rand(&[m.cfg.max_position_embeddings, hd / 2])?;
    let kcache = Tensor::zeros((b, nkv, t, hd), m.dtype, &dev)?;
    let vcache = Tensor::zeros((b, nkv, t, hd), m.dtype, &dev)?;
    let (split, _) = timed(reps, &dev, || {
        for _ in &m.layers {
            let s = QkvSplit {
                cos: &table,
                sin: &table,
                positions: &pos,
                k_cache: &kcache,
                v_cache: &vcache,
                column: wattbench_engine::model::Column::Host(0),
                heads: nh,
                kv_heads: nkv,
                head_dim: hd,
                interleaved: false,
            };
            qkv_split(&y, &s)?;
        }
        Ok(())
    })?;
    let (x, r) = (rand(&[b, t, hidden])?, rand(&[b, t, hidden])?);
    let w = rand(&[hidden])?;
    let (norms, _) = timed(reps, &dev, || {
        for _ in 0..2 * m.layers.len() {
            add_rms_norm(&x, &r, &w, 1e-5)?;
        }
        Ok(())
    })?;
    let gu = rand(&[b, t, 2 * f])?;
    let (silu, _) = timed(reps, &dev, || {
        for _ in &m.layers {
            silu_mul(&gu)?;
        }
        Ok(())
    })?;
    let flops = 2.0 * rows as f64 * m.cfg.parameters() as f64;
    let attention_used = if wattbench_engine::cuda::attention::prefill_fused() {
        fused_attention
    } else {
        attention + mask_ms
    };
    let parts = products + attention_used + split + norms + silu;
    Ok(serde_json::json!({
        "prompt_len": t,
        "ms": whole,
        "tflops_whole_model": flops / whole / 1e9,
        "products_ms": products,
        "attention_matmul_ms": attention,
        "attention_kernel_ms": fused_attention,
        "qkv_split_ms": split,
        "add_rms_norm_ms": norms,
        "silu_mul_ms": silu,
        "mask_ms": mask_ms,
        "attention_used": if wattbench_engine::cuda::attention::prefill_fused() { "kernel" } else { "matmul" },
        "rest_ms": whole - parts,
    }))
}
