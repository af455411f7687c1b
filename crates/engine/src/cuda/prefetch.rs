//! Weights asked of the L2 cache ahead of the product that reads them: a kernel that requests
//! the first bytes of each row of a matrix and ends without waiting for them, so that the bytes
//! arrive while the kernels before the product still run.

use super::{address, driver, function};
use candle_core::{Result, Tensor};
use cudarc::driver::{LaunchConfig, PushKernelArg};
use half::bf16;

const SOURCE: &str = include_str!("prefetch.cu");
const MODULE: &str = "wattbench_prefetch";

/// Which bytes of a matrix `[rows, cols]` to ask for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prefetch {
    /// The first `head` bytes of every row (whole rows when larger than a row).
    pub head: usize,
    /// Only the rows within the matrix's first `bytes` bytes (all when `None`).
    pub bytes: Option<usize>,
    /// One request per `step` bytes (32: an L2 sector; 128: a line).
    pub step: usize,
    /// Ask for the lines to be evicted last.
    pub keep: bool,
}

impl Prefetch {
    /// From `h<bytes>` (the head of every row), `f<MiB>` (the first MiB of the matrix, whole
    /// rows), or `n` (a launch that asks for nothing); `s<step>` and `l` (evict last) may follow,
    /// as in `h512s128l`.
    pub fn parse(spec: &str) -> Option<Prefetch> {
        let mut p = Prefetch {
            head: 0,
            bytes: Some(0),
            step: 32,
            keep: false,
        };
        let mut rest = spec;
        if let Some(r) = rest.strip_suffix('l') {
            p.keep = true;
            rest = r;
        }
        if let Some((a, s)) = rest.split_once('s') {
            p.step = s.parse().ok().filter(|s: &usize| *s >= 16)?;
            rest = a;
        }
        let (kind, n) = rest.split_at(1.min(rest.len()));
        match kind {
            "h" => {
                p.head = n.parse().ok()?;
                p.bytes = None;
            }
            "f" => {
                p.head = usize::MAX;
                p.bytes = Some(n.parse::<usize>().ok()? << 20);
            }
            "n" if n.is_empty() => {}
            _ => return None,
        }
        Some(p)
    }
}

/// Queues the requests of `p` for the bf16 matrix `w` (contiguous, on CUDA).
pub fn prefetch(w: &Tensor, p: Prefetch) -> Result<()> {
    let (rows, cols) = w.dims2()?;
    let pitch = cols * 2;
    let head = p.head.min(pitch);
    let rows = p.bytes.map_or(rows, |n| (n / pitch).min(rows));
    let base = address::<bf16>(w)?;
    let candle_core::Device::Cuda(dev) = w.device() else {
        candle_core::bail!("prefetch: the matrix is not on a CUDA device")
    };
    let func = function(dev, MODULE, SOURCE, &[], "l2_prefetch")?;
    let total = rows * head.div_ceil(p.step);
    let cfg = LaunchConfig {
        grid_dim: (total.div_ceil(256).clamp(1, 132 * 4) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let (rows, pitch, head, step, keep) = (
        rows as i64,
        pitch as i64,
        head as i64,
        p.step as i32,
        p.keep as i32,
    );
    let stream = dev.cuda_stream();
    let mut b = stream.launch_builder(&func);
    b.arg(&base)
        .arg(&rows)
        .arg(&pitch)
        .arg(&head)
        .arg(&step)
        .arg(&keep);
    // SAFETY: the arguments match the kernel, which only asks for bytes inside `w`'s rows and
    // writes nothing.
    driver(unsafe { b.launch(cfg) })?;
    Ok(())
}
