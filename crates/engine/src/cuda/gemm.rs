//! The decode step's matrix products: the engine's own weight-streaming kernel (`gemm.cu`) and
//! cuBLASLt, with each shape's choice made by timing.
//!
//! A decode step multiplies 64–512 rows by every weight matrix: skinny products that only have to
//! read the weights once, at memory speed, and that cuBLAS's default choice reads at 2.0–2.5 TB/s
//! on an H100 (at most ~3.1). Here, the first product of each shape `(rows, out, in)` on a GPU
//! times the candidates on the real operands (eight runs each, with the L2 cache emptied before
//! each, as in a decode step, where every product finds its weights in memory) and keeps the
//! fastest for the rest of the process. The candidates: the engine's kernel (Hopper and later; up
//! to 64 rows, `out` a multiple of 128 and `in` of 64) with K split over a cluster of 1–8 blocks,
//! and the algorithms cuBLASLt
//! proposes (split-K ones included, with a 32 MiB workspace). A decode step has five shapes per
//! batch size; timing them makes a model's first batch of each size longer (0.09–0.10 s for the
//! LLaMA-7B shape on an H100, cuBLASLt alone). Prompts (many rows, a new shape for each prompt
//! length) stay with candle's cuBLAS call ([`crate::model::Linear::dense`]).
//!
//! `WATTBENCH_GEMM=lt` leaves the engine's kernel out of the choice, `WATTBENCH_GEMM=cublas` (or
//! `WATTBENCH_KERNELS=candle`) sends every product to candle's cuBLAS call, for comparisons.

use super::{driver, function_for};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use cudarc::cublaslt::sys;
use cudarc::driver::{CudaFunction, CudaSlice, DevicePtr};
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

const SOURCE: &str = include_str!("gemm.cu");
const MODULE: &str = "wattbench_gemm";
/// The engine kernel's tiles (`gemm.cu`): weight rows per block, K columns per pipeline stage,
/// most rows of x; its threads and shared memory (four stages of weight and x tiles, their
/// barriers, and room to start the tiles on a 1024-byte boundary).
const OWN_ROWS: usize = 128;
const OWN_K: usize = 64;
const OWN_TOKENS: usize = 64;
const OWN_THREADS: u32 = 256;
const OWN_STAGES: usize = 4;
const OWN_SMEM: usize = 1024 + OWN_STAGES * ((OWN_ROWS + OWN_TOKENS) * OWN_K * 2 + 8);
/// The split-K factors (cluster sizes) the kernel is built for, all timed.
const OWN_SPLITS: [u32; 6] = [1, 2, 3, 4, 6, 8];

/// Where the decode step's products go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// The fastest of the engine's kernel and cuBLASLt's algorithms, by timing.
    Timed,
    /// The engine's kernel (its fastest split) where it applies, else cuBLASLt's fastest.
    Own,
    /// The fastest of cuBLASLt's algorithms only.
    Lt,
    /// Candle's cuBLAS call (cuBLAS's default choice).
    Cublas,
}

/// 0: as `WATTBENCH_GEMM` says; else 1 + the route's index.
static SETTING: AtomicU8 = AtomicU8::new(0);
const ROUTES: [Route; 4] = [Route::Timed, Route::Own, Route::Lt, Route::Cublas];

/// The route of this process: [`set_route`]'s, else `WATTBENCH_GEMM`'s (`lt`, `cublas`), else
/// [`Route::Timed`]; always [`Route::Cublas`] with the engine's kernels off.
pub fn route() -> Route {
    static ENV: OnceLock<Route> = OnceLock::new();
    if !super::enabled() {
        return Route::Cublas;
    }
    match SETTING.load(Ordering::Relaxed) {
        0 => *ENV.get_or_init(|| match std::env::var("WATTBENCH_GEMM").as_deref() {
            Ok("cublas") => Route::Cublas,
            Ok("lt") => Route::Lt,
            Ok("own") => Route::Own,
            _ => Route::Timed,
        }),
        i => ROUTES[(i - 1) as usize],
    }
}

/// Sets the route for the whole process, to compare routes in one run.
pub fn set_route(r: Route) {
    let i = ROUTES.iter().position(|x| *x == r).unwrap_or(0);
    SETTING.store(i as u8 + 1, Ordering::Relaxed);
}

/// Whether products are routed here rather than to candle's cuBLAS call.
pub fn enabled() -> bool {
    route() != Route::Cublas
}

/// Whether `x [rows, in]` times a `w [out, in]` goes through here.
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
    x.apply_op2_no_bwd(w, &Linear { force: None })
}

/// The same product through the engine's kernel with K split over `splits` blocks, whatever the
/// timing would choose: for checks. Fails where the kernel does not apply.
pub fn own_linear(x: &Tensor, w: &Tensor, splits: u32) -> Result<Tensor> {
    x.apply_op2_no_bwd(w, &Linear { force: Some(splits) })
}

/// What runs a product of one shape: the engine's kernel with K split over this many blocks, or
/// a cuBLASLt algorithm.
#[derive(Clone, Copy)]
enum Choice {
    Own(u32),
    Lt(sys::cublasLtMatmulAlgo_t),
}

/// The cuBLASLt objects of one product shape, and its chosen way to run.
struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    a: sys::cublasLtMatrixLayout_t,
    b: sys::cublasLtMatrixLayout_t,
    c: sys::cublasLtMatrixLayout_t,
    choice: Option<Choice>,
}

/// The cuBLASLt handle and workspace of one GPU; whether it runs the engine's kernel (compute
/// capability 9.0 or more) and its functions by split-K factor, loaded on first use; and the
/// plans by `(rows, out, in, route)`.
struct Gpu {
    handle: sys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    hopper: bool,
    own: HashMap<u32, CudaFunction>,
    plans: HashMap<(usize, usize, usize, Route), Plan>,
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
    let (major, _) = driver(dev.cuda_stream().context().compute_capability())?;
    let g = Arc::new(Mutex::new(Gpu {
        handle,
        workspace,
        hopper: major == 9,
        own: HashMap::new(),
        plans: HashMap::new(),
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
        choice: None,
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

/// The split-K factors the engine's kernel can run `(rows, out, in)` with (none where it does
/// not apply).
fn own_splits(rows: usize, out: usize, inner: usize) -> Vec<u32> {
    if rows > OWN_TOKENS || !out.is_multiple_of(OWN_ROWS) || !inner.is_multiple_of(OWN_K) {
        return Vec::new();
    }
    OWN_SPLITS
        .into_iter()
        .filter(|&s| s as usize <= inner / OWN_K)
        .collect()
}

/// The engine's kernel for split-K factor `splits` on this GPU, compiled and allowed its shared
/// memory on first use.
fn own_function(
    g: &mut Gpu,
    dev: &candle_core::cuda::CudaDevice,
    splits: u32,
) -> Result<CudaFunction> {
    if let Some(f) = g.own.get(&splits) {
        return Ok(f.clone());
    }
    let name = format!("skinny_gemm_{splits}");
    let mode = std::env::var("WATTBENCH_GMODE").unwrap_or("0".into());
    let f = function_for(dev, &format!("{MODULE}{mode}"), SOURCE, &[format!("-DGMODE={mode}")], &name, Some("compute_90a"))?;
    driver(f.set_attribute(
        cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        OWN_SMEM as i32,
    ))?;
    g.own.insert(splits, f.clone());
    Ok(f)
}

/// A TMA tensor map, passed to the kernel by value.
#[repr(transparent)]
struct Tmap(cudarc::driver::sys::CUtensorMap);

// SAFETY: a tensor map is plain bytes that the kernel takes by value (`Tmap` in `gemm.cu`).
unsafe impl cudarc::driver::DeviceRepr for Tmap {}

/// The tensor map of a row-major bf16 matrix `[rows, cols]` at `ptr` in boxes of `box_rows` rows
/// of 64 columns (128 bytes), stored in shared memory with the 128-byte swizzle; rows past the
/// end read as zeros.
fn tmap(ptr: u64, rows: usize, cols: usize, box_rows: usize) -> Result<Tmap> {
    use cudarc::driver::sys;
    let mut map = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    let dims = [cols as u64, rows as u64];
    let strides = [(cols * 2) as u64];
    let boxes = [OWN_K as u32, box_rows as u32];
    let steps = [1u32, 1];
    // SAFETY: the arrays have the rank's lengths (2, and 1 stride); the map is written by the
    // call and read only after it succeeded.
    unsafe {
        let r = sys::cuTensorMapEncodeTiled(
            map.as_mut_ptr(),
            sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
            2,
            ptr as *mut c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxes.as_ptr(),
            steps.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        );
        driver(r.result())?;
        Ok(Tmap(map.assume_init()))
    }
}

/// Queues the engine's kernel with split-K factor `splits`: one cluster of `splits` blocks per
/// 128 weight rows (the kernel's cluster shape).
///
/// # Safety
/// The tensor maps and `y` must describe live device memory of the product's shape, as
/// [`own_splits`] admits it.
#[allow(clippy::too_many_arguments)]
unsafe fn launch_own(
    f: &CudaFunction,
    splits: u32,
    stream: &cudarc::driver::CudaStream,
    dependent: bool,
    wmap: &Tmap,
    xmap: &Tmap,
    y: u64,
    rows: usize,
    out: usize,
    inner: usize,
) -> Result<()> {
    use cudarc::driver::sys;
    driver(stream.context().bind_to_thread())?;
    let (m, n, k) = (rows as i32, out as i32, inner as i32);
    let mut args: [*mut c_void; 6] = [
        wmap as *const Tmap as *mut c_void,
        xmap as *const Tmap as *mut c_void,
        &y as *const u64 as *mut c_void,
        &m as *const i32 as *mut c_void,
        &n as *const i32 as *mut c_void,
        &k as *const i32 as *mut c_void,
    ];
    // SAFETY: a zeroed attribute value is a valid union; the one field set is the one the id
    // names.
    let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    if dependent {
        super::mark_dependent(f);
    }
    let cfg = sys::CUlaunchConfig {
        gridDimX: (out / OWN_ROWS) as u32,
        gridDimY: splits,
        gridDimZ: 1,
        blockDimX: OWN_THREADS,
        blockDimY: 1,
        blockDimZ: 1,
        sharedMemBytes: OWN_SMEM as u32,
        hStream: stream.cu_stream(),
        attrs: &mut attr,
        numAttrs: dependent as u32,
    };
    // SAFETY: the arguments match the kernel's (two tensor maps by value, y, m, n, k) and live
    // through the call, which copies them; the caller vouches for the memory they describe.
    driver(unsafe { sys::cuLaunchKernelEx(&cfg, f.cu_function(), args.as_mut_ptr(), std::ptr::null_mut()) }.result())
}

struct Linear {
    /// Run the engine's kernel with this split-K factor instead of the timed choice.
    force: Option<u32>,
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "wattbench-linear"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("the decode-step products run on CUDA only; this is a bug")
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
            candle_core::bail!("decode-step product: x {xl:?} and w {wl:?} do not fit");
        }
        let dev = xs.device.clone();
        let stream = dev.cuda_stream();
        let x = xs.as_cuda_slice::<bf16>()?.slice(xl.start_offset()..);
        let w = ws.as_cuda_slice::<bf16>()?.slice(wl.start_offset()..);
        let g = gpu(&dev)?;
        let mut g = g.lock().unwrap_or_else(|e| e.into_inner());
        let route = route();
        let key = (rows, out, inner, route);
        if let std::collections::hash_map::Entry::Vacant(e) = g.plans.entry(key) {
            e.insert(plan(rows, out, inner)?);
        }
        // In a capture, the engine's kernel may start while the kernel before it runs.
        let cap = super::capture::begin(&stream);
        let own_planned = matches!(g.plans[&key].choice, Some(Choice::Own(_))) && self.force.is_none();
        let prev = cap
            .as_ref()
            .filter(|_| own_planned && super::dependent_launches(&dev))
            .and_then(super::capture::relax);
        // SAFETY: the product writes all rows * out elements.
        let y = driver(unsafe { stream.alloc::<bf16>(rows * out) })?;
        if let (Some(c), Some(p)) = (&cap, prev) {
            super::capture::programmatic(c, p);
        }
        // The engine's kernel reads 16 bytes at a time: its operands start on 16-byte boundaries.
        let aligned = xl.start_offset().is_multiple_of(8) && wl.start_offset().is_multiple_of(8);
        let splits = match (route, self.force) {
            (_, Some(_)) | (Route::Timed | Route::Own, _) if aligned && g.hopper => {
                own_splits(rows, out, inner)
            }
            _ => Vec::new(),
        };
        if let Some(s) = self.force.filter(|s| !splits.contains(s)) {
            candle_core::bail!(
                "the engine's product kernel does not run {rows}x{inner} by {inner}x{out} \
                 split {s}"
            );
        }
        let mut own = HashMap::new();
        for &s in &splits {
            own.insert(s, own_function(&mut g, &dev, s)?);
        }
        let dependent = super::dependent_launches(&dev);
        let (xp, _x) = x.device_ptr(&stream);
        let (wp, _w) = w.device_ptr(&stream);
        let (yp, _y) = y.device_ptr(&stream);
        let (wsp, _ws) = g.workspace.device_ptr(&stream);
        let (alpha, beta) = (1f32, 0f32);
        let gref = &*g;
        let p = &gref.plans[&key];
        let run = |choice: &Choice| match choice {
            Choice::Lt(algo) => {
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
            }
            Choice::Own(splits) => {
                let Some(f) = own.get(splits) else {
                    candle_core::bail!("the engine's product kernel was not loaded; this is a bug")
                };
                let wmap = if std::env::var("WATTBENCH_GMODE").is_ok_and(|m| m == "4") { tmap(wp, out * inner / OWN_K, OWN_K, OWN_ROWS)? } else { tmap(wp, out, inner, OWN_ROWS)? };
                let xmap = tmap(xp, rows, inner, OWN_TOKENS)?;
                // SAFETY: x holds rows <= 64 rows of `inner`, w `out` rows of `inner` (a multiple
                // of 64, at least `splits` tiles of 64), y rows * out elements; out is a multiple
                // of 128 (own_splits); all start on 16-byte boundaries (checked above).
                unsafe { launch_own(f, *splits, &stream, dependent, &wmap, &xmap, yp, rows, out, inner) }
            }
        };
        let choice = match (self.force, p.choice) {
            (Some(s), _) => Choice::Own(s),
            (None, Some(c)) => c,
            (None, None) => {
                let mut all: Vec<Choice> = splits.iter().map(|&s| Choice::Own(s)).collect();
                if route != Route::Own || all.is_empty() {
                    all.extend(candidates(gref, p)?.into_iter().map(Choice::Lt));
                }
                let Some(best) = fastest(&all, &stream, &run)? else {
                    candle_core::bail!(
                        "no algorithm runs a {rows}x{inner} by {inner}x{out} bf16 product"
                    )
                };
                best
            }
        };
        run(&choice)?;
        if let Some(c) = cap {
            super::capture::end(c);
        }
        drop((_x, _w, _y, _ws));
        // The plan exists (inserted above); it keeps the choice for the rest of the process.
        if self.force.is_none() {
            if let Some(p) = g.plans.get_mut(&key) {
                p.choice = Some(choice);
            }
        }
        Ok((
            CudaStorage::wrap_cuda_slice(y, dev),
            Shape::from((rows, out)),
        ))
    }
}

/// The candidate that runs fastest (over [`TIMED_RUNS`] runs after one warm-up run, each run
/// timed alone after the L2 cache was emptied); candidates that fail to run are skipped.
fn fastest(
    choices: &[Choice],
    stream: &Arc<cudarc::driver::CudaStream>,
    run: &dyn Fn(&Choice) -> Result<()>,
) -> Result<Option<Choice>> {
    let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
    // Written between timed runs, so that no run finds the weights of the last one in the L2
    // cache (a decode step's products each find theirs in memory, behind other layers' weights).
    // Where the GPU has no room for it (a batch that fills the memory), the first candidate is
    // taken untimed rather than failing the product.
    let Ok(mut flush) = stream.alloc_zeros::<u8>(FLUSH) else {
        return Ok(choices.first().copied());
    };
    let mut best: Option<(f32, Choice)> = None;
    for choice in choices {
        if run(choice).is_err() {
            continue;
        }
        let (mut ms, mut ok) = (0f32, true);
        for _ in 0..TIMED_RUNS {
            driver(stream.memset_zeros(&mut flush))?;
            let start = driver(stream.record_event(timing))?;
            ok &= run(choice).is_ok();
            let end = driver(stream.record_event(timing))?;
            ms += driver(start.elapsed_ms(&end))?;
        }
        if ok && best.is_none_or(|(b, _)| ms < b) {
            best = Some((ms, *choice));
        }
    }
    Ok(best.map(|(_, a)| a))
}
