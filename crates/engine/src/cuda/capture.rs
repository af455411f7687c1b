//! Programmatic edges inside a captured decode step (experimental).
//!
//! Capture puts the allocation of every output between two kernels (kernel → frees → allocation →
//! kernel), so a kernel launched as a programmatic dependent still waits for the whole kernel
//! before it. For an operation of ours whose kernel waits for the kernel before it
//! (`griddepcontrol.wait`), [`relax`] attaches its output's allocation to what the previous
//! operation's allocation followed, and [`programmatic`] adds a programmatic edge from the
//! previous kernel, so that the kernel may start while the one before it runs.

use cudarc::driver::sys;
use std::cell::Cell;

thread_local! {
    /// The tail of the capture after our last operation, and the tail before it.
    static LAST: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// The capture state of an operation: the single node the stream's capture ends on.
pub(crate) struct Op {
    stream: sys::CUstream,
    tail: sys::CUgraphNode,
}

fn on() -> bool {
    std::env::var("WATTBENCH_GRAPH_EDGES").map_or(true, |v| v != "0")
}

unsafe fn tail(stream: sys::CUstream) -> Option<sys::CUgraphNode> {
    let mut status = sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
    let mut id = 0u64;
    let mut graph = std::ptr::null_mut();
    let mut deps: *const sys::CUgraphNode = std::ptr::null();
    let mut data: *const sys::CUgraphEdgeData = std::ptr::null();
    let mut n = 0usize;
    let r = sys::cuStreamGetCaptureInfo_v3(
        stream, &mut status, &mut id, &mut graph, &mut deps, &mut data, &mut n,
    );
    if r != sys::CUresult::CUDA_SUCCESS
        || status != sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE
        || n != 1
    {
        return None;
    }
    Some(*deps)
}

unsafe fn kind(n: sys::CUgraphNode) -> sys::CUgraphNodeType {
    let mut t = sys::CUgraphNodeType::CU_GRAPH_NODE_TYPE_EMPTY;
    sys::cuGraphNodeGetType(n, &mut t);
    t
}

unsafe fn before(n: sys::CUgraphNode) -> Option<sys::CUgraphNode> {
    let mut c = 0usize;
    sys::cuGraphNodeGetDependencies_v2(n, std::ptr::null_mut(), std::ptr::null_mut(), &mut c);
    if c != 1 {
        return None;
    }
    let mut p = std::ptr::null_mut();
    sys::cuGraphNodeGetDependencies_v2(n, &mut p, std::ptr::null_mut(), &mut c);
    Some(p)
}

/// The capture state at the start of an operation on `stream`, when it is being captured.
pub(crate) fn begin(stream: &cudarc::driver::CudaStream) -> Option<Op> {
    if !on() {
        return None;
    }
    let s = stream.cu_stream();
    // SAFETY: reading the capture state of a live stream.
    unsafe { tail(s) }.map(|tail| Op { stream: s, tail })
}

/// Before the operation allocates its output: where the kernel before it is our last
/// operation's, attaches what comes next to the tail before that operation and returns that
/// kernel (for [`programmatic`]).
pub(crate) fn relax(op: &Op) -> Option<sys::CUgraphNode> {
    use sys::CUgraphNodeType as T;
    let (last_tail, last_before) = LAST.with(|l| l.get())?;
    // SAFETY: the nodes belong to the graph being captured on this thread.
    unsafe {
        let mut x = op.tail;
        while kind(x) == T::CU_GRAPH_NODE_TYPE_MEM_FREE {
            x = before(x)?;
        }
        if kind(x) != T::CU_GRAPH_NODE_TYPE_KERNEL || x as usize != last_tail {
            return None;
        }
        let mut anchor = last_before as sys::CUgraphNode;
        let r = sys::cuStreamUpdateCaptureDependencies_v2(
            op.stream,
            &mut anchor,
            std::ptr::null(),
            1,
            sys::CUstreamUpdateCaptureDependencies_flags::CU_STREAM_SET_CAPTURE_DEPENDENCIES as u32,
        );
        (r == sys::CUresult::CUDA_SUCCESS).then_some(x)
    }
}

/// After the allocation, before the launch: the next captured node also depends on `kernel`,
/// programmatically.
pub(crate) fn programmatic(op: &Op, kernel: sys::CUgraphNode) {
    let data = sys::CUgraphEdgeData {
        from_port: sys::CU_GRAPH_KERNEL_NODE_PORT_PROGRAMMATIC as u8,
        to_port: 0,
        type_: sys::CUgraphDependencyType::CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC as u8,
        reserved: [0; 5],
    };
    let mut k = kernel;
    // SAFETY: the node belongs to the graph being captured on this stream.
    unsafe {
        sys::cuStreamUpdateCaptureDependencies_v2(
            op.stream,
            &mut k,
            &data,
            1,
            sys::CUstreamUpdateCaptureDependencies_flags::CU_STREAM_ADD_CAPTURE_DEPENDENCIES as u32,
        );
    }
}

/// At the end of an operation: records the capture's tail and the tail before the operation.
pub(crate) fn end(op: Op) {
    // SAFETY: reading the capture state of a live stream.
    let now = unsafe { tail(op.stream) };
    LAST.with(|l| l.set(now.map(|t| (t as usize, op.tail as usize))));
}

/// Forgets the last operation (at the start of a capture).
pub(crate) fn reset() {
    LAST.with(|l| l.set(None));
}
