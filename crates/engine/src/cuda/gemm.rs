//! The decode step's matrix products through cuBLASLt, with each shape's algorithm chosen by
//! timing.
//!
//! A decode step multiplies 64–512 rows by every weight matrix: skinny products that only have to
//! read the weights once, at memory speed, and that cuBLAS's default choice reads at 2.0–2.5 TB/s
//! on an H100 (at most ~3.1). Here, the first product of each shape `(rows, out, in)` on a GPU asks
//! cuBLASLt for its candidate algorithms (split-K ones included, with a 32 MiB workspace), times
//! each on the real operands (eight runs, with the L2 cache emptied before each, as in a decode
//! step, where every product finds its weights in memory), and keeps the fastest for the rest of
//! the process. A decode step has five shapes per batch size; timing them made the LLaMA-7B
//! shape's warm-up batch 0.09–0.10 s longer on an H100. Prompts (many rows, a new shape for each
//! prompt length) stay with candle's cuBLAS call ([`crate::model::Linear::dense`]).
//!
//! `WATTBENCH_GEMM=cublas` (or `WATTBENCH_KERNELS=candle`) turns this off, for comparisons.

use super::driver;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use cudarc::cublaslt::sys;
use cudarc::driver::{CudaSlice, DevicePtr};
use half::bf16;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Products with more rows than this go to candle's cuBLAS call.
pub const MAX_ROWS: usize = 1024;
const WORKSPACE: usize = 32 << 20;
const CANDIDATES: usize = 32;
const TIMED_RUNS: usize = 8;
/// Bytes written between timed runs: twice the H100's 50 MB L2 cache.
const FLUSH: usize = 128 << 20;

/// 0: as `WATTBENCH_GEMM` says; 1: on; 2: off.
static SETTING: AtomicU8 = AtomicU8::new(0);

/// Whether products are routed here: the kernels are on and, unless [`set_enabled`] said
/// otherwise, `WATTBENCH_GEMM` is not `cublas`.
pub fn enabled() -> bool {
    static ENV: OnceLock<bool> = OnceLock::new();
    let env =
        || *ENV.get_or_init(|| std::env::var("WATTBENCH_GEMM").map_or(true, |v| v != "cublas"));
    super::enabled()
        && match SETTING.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => env(),
        }
}

/// Routes products here or to candle's cuBLAS call for the whole process, to compare the two in
/// one run.
pub fn set_enabled(on: bool) {
    SETTING.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Whether `x [rows, in]` times a `w [out, in]` goes through cuBLASLt.
pub fn applies(x: &Tensor, w: &Tensor) -> bool {
    enabled()
        && x.device().is_cuda()
        && x.dtype() == DType::BF16
        && w.dtype() == DType::BF16
        && x.rank() == 2
        && x.dim(0).is_ok_and(|r| (1..=MAX_ROWS).contains(&r))
        && x.is_contiguous()
        && w.is_contiguous()
}

/// `x [rows, in] @ w[out, in]^T` -> `[rows, out]`, bf16 with f32 accumulation.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.apply_op2_no_bwd(w, &Linear)
}

/// The cuBLASLt objects of one product shape, and its chosen algorithm.
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    c: sys::cublasLtMatrixLayout_t,
    algo: Option<sys::cublasLtMatmulAlgo_t>,
}

/// The cuBLASLt handle and workspace of one GPU, its plans by `(rows, out, in)`, and the choices
/// made so far.
struct Gpu {
    handle: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    plans: HashMap<(usize, usize, usize), Plan>,
    choices: Vec<Choice>,
}

/// The algorithm chosen for one product shape.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Choice {
    /// `(rows, out, in)`.
    pub shape: (usize, usize, usize),
    /// Its place among cuBLASLt's candidates, and how many there were.
    pub index: usize,
    pub of: usize,
    /// cuBLASLt's id of the algorithm and its split-K factor (null where not readable).
    pub id: (Option<i32>, Option<i32>),
    /// Its mean time in the timing runs (ms); null where the GPU had no room to time the
    /// candidates and cuBLASLt's first proposal was taken.
    pub ms: Option<f32>,
}

/// The choices made so far on `dev`'s GPU, in the order they were made.
pub fn choices(dev: &candle_core::cuda::CudaDevice) -> Result<Vec<Choice>> {
    let g = gpu(dev)?;
    let g = g.lock().unwrap_or_else(|e| e.into_inner());
    Ok(g.choices.clone())
}

/// cuBLASLt's id of `algo` and its split-K factor.
fn algo_id(algo: &sys::cublasLtMatmulAlgo_t) -> (Option<i32>, Option<i32>) {
    let get = |attr: sys::cublasLtMatmulAlgoConfigAttributes_t| {
        let (mut v, mut written) = (0i32, 0usize);
        // SAFETY: the attribute is an i32 (both ids asked for are); the buffer holds one.
        let status = unsafe {
            sys::cublasLtMatmulAlgoConfigGetAttribute(
                algo,
                attr,
                &mut v as *mut i32 as *mut c_void,
                std::mem::size_of::<i32>(),
                &mut written,
            )
        };
        (status == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS).then_some(v)
    };
    (
        get(sys::cublasLtMatmulAlgoConfigAttributes_t::CUBLASLT_ALGO_CONFIG_ID),
        get(sys::cublasLtMatmulAlgoConfigAttributes_t::CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
    )
}

// SAFETY: the raw cuBLASLt handles are only used under the GPU's mutex, on the GPU's one stream.
unsafe impl Send for Gpu {}

fn lt(status: sys::cublasStatus_t, what: &str) -> Result<()> {
    if status == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        candle_core::bail!("cuBLASLt {what}: {status:?}")
    }
}

fn gpu(dev: &candle_core::cuda::CudaDevice) -> Result<Arc<Mutex<Gpu>>> {
    static GPUS: OnceLock<Mutex<HashMap<usize, Arc<Mutex<Gpu>>>>> = OnceLock::new();
    let ordinal = dev.cuda_stream().context().ordinal();
    let mut gpus = GPUS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(g) = gpus.get(&ordinal) {
        return Ok(g.clone());
    }
    let mut handle = std::ptr::null_mut();
    // SAFETY: cublasLtCreate writes a new handle.
    lt(unsafe { sys::cublasLtCreate(&mut handle) }, "create")?;
    // SAFETY: the workspace is scratch memory for cuBLASLt; its contents are never read here.
    let workspace = driver(unsafe { dev.cuda_stream().alloc::<u8>(WORKSPACE) })?;
    let g = Arc::new(Mutex::new(Gpu {
        handle,
        workspace,
        plans: HashMap::new(),
        choices: Vec::new(),
    }));
    gpus.insert(ordinal, g.clone());
    Ok(g)
}

fn layout(rows: usize, cols: usize, ld: usize) -> Result<sys::cublasLtMatrixLayout_t> {
    let mut l = std::ptr::null_mut();
    // SAFETY: cublasLtMatrixLayoutCreate writes a new layout.
    lt(
        unsafe {
            sys::cublasLtMatrixLayoutCreate(
                &mut l,
                sys::cudaDataType_t::CUDA_R_16BF,
                rows as u64,
                cols as u64,
                ld as i64,
            )
        },
        "layout",
    )?;
    Ok(l)
}

/// The plan of `(rows, out, in)`: in cuBLAS's column-major terms the product is
/// `y^T [out, rows] = w [in, out]^T · x^T [in, rows]`.
fn plan(rows: usize, out: usize, inner: usize) -> Result<Plan> {
    let mut desc = std::ptr::null_mut();
    // SAFETY: cublasLtMatmulDescCreate writes a new descriptor; the attribute is an i32 enum.
    unsafe {
        lt(
            sys::cublasLtMatmulDescCreate(
                &mut desc,
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cudaDataType_t::CUDA_R_32F,
            ),
            "descriptor",
        )?;
        let t: i32 = 1; // CUBLAS_OP_T
        lt(
            sys::cublasLtMatmulDescSetAttribute(
                desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                &t as *const _ as *const c_void,
                std::mem::size_of_val(&t),
            ),
            "transpose",
        )?;
    }
    Ok(Plan {
        desc,
        a: layout(inner, out, inner)?,
        b: layout(inner, rows, inner)?,
        c: layout(out, rows, out)?,
        algo: None,
    })
}

/// The algorithms cuBLASLt proposes for `p`.
fn candidates(g: &Gpu, p: &Plan) -> Result<Vec<sys::cublasLtMatmulAlgo_t>> {
    let mut pref = std::ptr::null_mut();
    let ws = WORKSPACE;
    let mut found =
        vec![std::mem::MaybeUninit::<sys::cublasLtMatmulHeuristicResult_t>::zeroed(); CANDIDATES];
    let mut count = 0;
    // SAFETY: the preference and the result array live through the calls; count <= CANDIDATES.
    unsafe {
        lt(sys::cublasLtMatmulPreferenceCreate(&mut pref), "preference")?;
        let set = sys::cublasLtMatmulPreferenceSetAttribute(
            pref,
            sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            &ws as *const _ as *const c_void,
            std::mem::size_of_val(&ws),
        );
        let got = sys::cublasLtMatmulAlgoGetHeuristic(
            g.handle,
            p.desc,
            p.a,
            p.b,
            p.c,
            p.c,
            pref,
            CANDIDATES as i32,
            found.as_mut_ptr() as *mut _,
            &mut count,
        );
        sys::cublasLtMatmulPreferenceDestroy(pref);
        lt(set, "workspace preference")?;
        lt(got, "heuristic")?;
        Ok(found[..count.max(0) as usize]
            .iter()
            .map(|r| r.assume_init())
            .filter(|r| {
                r.state == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS && r.workspaceSize <= ws
            })
            .map(|r| r.algo)
            .collect())
    }
}

struct Linear;

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "wattbench-lt-linear"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the cuBLASLt products run on CUDA only; this is a bug")
    }

    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let (rows, inner) = xl.shape().dims2()?;
        let (out, w_inner) = wl.shape().dims2()?;
        let bf = |s: &CudaStorage| BackendStorage::dtype(s) == DType::BF16;
        if inner != w_inner || !xl.is_contiguous() || !wl.is_contiguous() || !bf(xs) || !bf(ws) {
            candle_core::bail!("cuBLASLt product: x {xl:?} and w {wl:?} do not fit");
        }
        let dev = xs.device.clone();
        let stream = dev.cuda_stream();
        let x = xs.as_cuda_slice::<bf16>()?.slice(xl.start_offset()..);
        let w = ws.as_cuda_slice::<bf16>()?.slice(wl.start_offset()..);
        // SAFETY: the product writes all rows * out elements.
        let y = driver(unsafe { stream.alloc::<bf16>(rows * out) })?;
        let g = gpu(&dev)?;
        let mut g = g.lock().unwrap_or_else(|e| e.into_inner());
        let key = (rows, out, inner);
        if let std::collections::hash_map::Entry::Vacant(e) = g.plans.entry(key) {
            e.insert(plan(rows, out, inner)?);
        }
        let (xp, _x) = x.device_ptr(&stream);
        let (wp, _w) = w.device_ptr(&stream);
        let (yp, _y) = y.device_ptr(&stream);
        let (wsp, _ws) = g.workspace.device_ptr(&stream);
        let (alpha, beta) = (1f32, 0f32);
        let gref = &*g;
        let p = &gref.plans[&key];
        let run = |algo: &sys::cublasLtMatmulAlgo_t| {
            // SAFETY: the layouts describe the operands' real sizes; the workspace holds
            // WORKSPACE bytes and every candidate needs no more.
            lt(
                unsafe {
                    sys::cublasLtMatmul(
                        gref.handle,
                        p.desc,
                        &alpha as *const f32 as *const c_void,
                        wp as *const c_void,
                        p.a,
                        xp as *const c_void,
                        p.b,
                        &beta as *const f32 as *const c_void,
                        yp as *const c_void,
                        p.c,
                        yp as *mut c_void,
                        p.c,
                        algo,
                        wsp as *mut c_void,
                        WORKSPACE,
                        stream.cu_stream() as sys::cudaStream_t,
                    )
                },
                "matmul",
            )
        };
        let (algo, chosen) = match p.algo {
            Some(a) => (a, None),
            None => {
                let algos = candidates(gref, p)?;
                let Some((i, ms)) = fastest(&algos, &stream, &run)? else {
                    candle_core::bail!(
                        "cuBLASLt has no algorithm for a {rows}x{inner} by {inner}x{out} bf16 product"
                    )
                };
                let id = algo_id(&algos[i]);
                (
                    algos[i],
                    Some(Choice {
                        shape: key,
                        index: i,
                        of: algos.len(),
                        id,
                        ms,
                    }),
                )
            }
        };
        run(&algo)?;
        drop((_x, _w, _y, _ws));
        // The plan exists (inserted above); it keeps the choice for the rest of the process.
        if let Some(p) = g.plans.get_mut(&key) {
            p.algo = Some(algo);
        }
        g.choices.extend(chosen);
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev),
            Shape::from((rows, out)),
        ))
    }
}

/// The candidate that runs fastest (over [`TIMED_RUNS`] runs after one warm-up run, each run
/// timed alone after the L2 cache was emptied), as its index and mean time; candidates that fail
/// to run are skipped.
fn fastest(
    algos: &[sys::cublasLtMatmulAlgo_t],
    stream: &Arc<cudarc::driver::CudaStream>,
    run: &dyn Fn(&sys::cublasLtMatmulAlgo_t) -> Result<()>,
) -> Result<Option<(usize, Option<f32>)>> {
    let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
    // Written between timed runs, so that no run finds the weights of the last one in the L2
    // cache (a decode step's products each find theirs in memory, behind other layers' weights).
    // Where the GPU has no room for it (a batch that fills the memory), cuBLASLt's first
    // proposal is taken untimed rather than failing the product.
    let Ok(mut flush) = stream.alloc_zeros::<u8>(FLUSH) else {
        return Ok((!algos.is_empty()).then_some((0, None)));
    };
    let mut best: Option<(f32, usize)> = None;
    for (i, algo) in algos.iter().enumerate() {
        if run(algo).is_err() {
            continue;
        }
        let (mut ms, mut ok) = (0f32, true);
        for _ in 0..TIMED_RUNS {
            driver(stream.memset_zeros(&mut flush))?;
            let start = driver(stream.record_event(timing))?;
            ok &= run(algo).is_ok();
            let end = driver(stream.record_event(timing))?;
            ms += driver(start.elapsed_ms(&end))?;
        }
        if ok && best.is_none_or(|(b, _)| ms < b) {
            best = Some((ms, i));
        }
    }
    Ok(best.map(|(ms, i)| (i, Some(ms / TIMED_RUNS as f32))))
}
