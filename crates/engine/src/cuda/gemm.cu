// Skinny products y [M, N] = x [M, K] · w [N, K]^T for M <= 64 rows (a decode step's tokens),
// bf16 in, f32 sums, bf16 out: a weight-streaming kernel for Hopper (sm_90a: TMA, wgmma,
// thread-block clusters) that reads each weight once.
//
// A block of two warpgroups takes ROWS = 128 weight rows (output features) and the K range of its
// rank in a cluster of S blocks (split-K). The tensor memory accelerator copies tiles of 64 columns
// of K (128 weight rows, and the 64 token rows, zeros past M) into a STAGES-deep ring of shared
// memory in the 128-byte swizzle; each warpgroup multiplies its 64 weight rows by the 64 tokens
// with wgmma (m64n64k16, both operands read from shared memory, f32 sums in registers).
//
// At the end each block holds its partial sums in shared memory; with S > 1 the blocks of a
// cluster then each add up a slice of the tokens over all S blocks' sums (read through the
// cluster's distributed shared memory, in rank order) and write it.
//
// Launched as a programmatic dependent of the kernel before it, the block starts copying its
// first weight tiles (which no earlier kernel writes) while that kernel finishes, and waits for
// it (griddepcontrol.wait) before it copies the tokens or writes y.
#define GK 64
#define GTOK 64
#define GROWS 128
#define GSTAGES 4
#define GTHREADS 256
#define GW_BYTES (GROWS * GK * 2)
#define GX_BYTES (GTOK * GK * 2)
#define GSTAGE_BYTES (GW_BYTES + GX_BYTES)
#define GOUT_STRIDE (GROWS + 4)

// A TMA tensor map (CUtensorMap), passed by value.
struct __align__(64) Tmap {
    unsigned long long v[16];
};

__device__ __forceinline__ unsigned int g_smem(const void* p) {
    return (unsigned int)__cvta_generic_to_shared(p);
}

// Shared-memory matrix descriptor of a K-major bf16 tile with 128-byte rows in the 128-byte
// swizzle (as the tensor maps store it): 8-row groups 1024 bytes apart. Adding 2 moves it 32
// bytes, 16 columns, along K.
__device__ __forceinline__ unsigned long long g_desc(const void* p) {
    const unsigned long long a = g_smem(p);
    return ((a & 0x3FFFF) >> 4) | (1ull << 16) | ((1024ull >> 4) << 32) | (1ull << 62);
}

// d [64 rows x 64 tokens] += A [64 x 16] · B [64 x 16]^T, both K-major in shared memory.
__device__ __forceinline__ void g_wgmma(float* d, unsigned long long a, unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "%32, %33, 1, 1, 1, 0, 0;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
          "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
          "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),
          "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]),
          "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(a), "l"(b));
}

__device__ __forceinline__ void g_bar_init(unsigned long long* bar, unsigned int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(g_smem(bar)), "r"(count));
}
// Arrives on `bar`, which then also waits for `bytes` bytes of copies.
__device__ __forceinline__ void g_bar_expect(unsigned long long* bar, unsigned int bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(g_smem(bar)),
                 "r"(bytes)
                 : "memory");
}
// Waits until phase `parity` of `bar` completes.
__device__ __forceinline__ void g_bar_wait(unsigned long long* bar, unsigned int parity) {
    asm volatile(
        "{\n\t.reg .pred done;\n"
        "WAIT_%=:\n\t"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n\t"
        "@!done bra WAIT_%=;\n}" ::"r"(g_smem(bar)),
        "r"(parity)
        : "memory");
}
// The box of `map` at (column col, row row) into shared memory at dst, counted on `bar`.
__device__ __forceinline__ void g_tma(void* dst, const Tmap* map, int col, int row,
                                      unsigned long long* bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, "
        "{%2, %3}], [%4];" ::"r"(g_smem(dst)),
        "l"(map), "r"(col), "r"(row), "r"(g_smem(bar))
        : "memory");
}

// All blocks of the cluster reach this point; shared-memory writes before it are seen after it.
__device__ __forceinline__ void g_cluster_sync() {
    asm volatile("barrier.cluster.arrive.aligned;\n\tbarrier.cluster.wait.aligned;" ::: "memory");
}
// Four floats at `p` in the shared memory of the cluster's block `rank`.
__device__ __forceinline__ float4 g_peer4(const float* p, unsigned int rank) {
    unsigned int r;
    float4 v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(g_smem(p)), "r"(rank));
    asm volatile("ld.shared::cluster.v4.f32 {%0,%1,%2,%3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "r"(r)
                 : "memory");
    return v;
}

template <int S>
__device__ __forceinline__ void skinny_gemm_body(const Tmap* wmap, const Tmap* xmap,
                                                 bf16_t* __restrict__ y, int m, int n, int k) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    // The swizzle works on address bits: tiles start on 1024-byte boundaries.
    unsigned char* smem = smem_raw + ((1024 - (g_smem(smem_raw) & 1023)) & 1023);
    unsigned long long* full = reinterpret_cast<unsigned long long*>(smem + GSTAGES * GSTAGE_BYTES);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane >> 2, c = lane & 3;
    const int row0 = blockIdx.x * GROWS;
    const int rank = S > 1 ? blockIdx.y : 0;
    const int tiles = k / GK;
    const int t0 = tiles * rank / S, count = tiles * (rank + 1) / S - t0;

    if (threadIdx.x == 0) {
        for (int s = 0; s < GSTAGES; s++) g_bar_init(full + s, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        // The first weight tiles, before the kernel this one depends on has finished.
        for (int s = 0; s < GSTAGES - 1 && s < count; s++) {
            g_bar_expect(full + s, GSTAGE_BYTES);
            g_tma(smem + s * GSTAGE_BYTES, wmap, (t0 + s) * GK, row0, full + s);
        }
    }
    asm volatile("griddepcontrol.wait;" ::: "memory");
    if (threadIdx.x == 0)
        for (int s = 0; s < GSTAGES - 1 && s < count; s++)
            g_tma(smem + s * GSTAGE_BYTES + GW_BYTES, xmap, (t0 + s) * GK, 0, full + s);
    __syncthreads();

    float d[32];
    #pragma unroll
    for (int e = 0; e < 32; e++) d[e] = 0.f;
    for (int t = 0; t < count; t++) {
        g_bar_wait(full + t % GSTAGES, (t / GSTAGES) & 1);
        // Every warp is done with the stage of tile t - 1, which tile t + GSTAGES - 1 refills.
        __syncthreads();
        const int next = t + GSTAGES - 1;
        if (threadIdx.x == 0 && next < count) {
            unsigned char* st = smem + (next % GSTAGES) * GSTAGE_BYTES;
            unsigned long long* bar = full + next % GSTAGES;
            g_bar_expect(bar, GSTAGE_BYTES);
            g_tma(st, wmap, (t0 + next) * GK, row0, bar);
            g_tma(st + GW_BYTES, xmap, (t0 + next) * GK, 0, bar);
        }
        // Warpgroup wg takes weight rows wg * 64 .. + 63 and all 64 tokens.
        const unsigned char* st = smem + (t % GSTAGES) * GSTAGE_BYTES;
        const unsigned long long a = g_desc(st + (warp >> 2) * 64 * GK * 2);
        const unsigned long long b = g_desc(st + GW_BYTES);
        asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
        #pragma unroll
        for (int kk = 0; kk < GK / 16; kk++) g_wgmma(d, a + 2 * kk, b + 2 * kk);
        asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
    }
    __syncthreads();

    // The block's sums as out[token][row] in shared memory: thread (warp w, g, c) holds rows
    // (w / 4) * 64 + (w % 4) * 16 + g (+ 8) and tokens 8j + 2c (+ 1).
    float* out = reinterpret_cast<float*>(smem);
    #pragma unroll
    for (int j = 0; j < 8; j++) {
        const int r = (warp >> 2) * 64 + (warp & 3) * 16 + g, tok = j * 8 + 2 * c;
        out[tok * GOUT_STRIDE + r] = d[4 * j];
        out[(tok + 1) * GOUT_STRIDE + r] = d[4 * j + 1];
        out[tok * GOUT_STRIDE + r + 8] = d[4 * j + 2];
        out[(tok + 1) * GOUT_STRIDE + r + 8] = d[4 * j + 3];
    }
    if (S == 1) {
        __syncthreads();
    } else {
        g_cluster_sync();
    }
    // The kernels after this one may start (they wait for its end before reading y).
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    // This block's slice of the tokens, four rows at a time, summed over the cluster in rank
    // order.
    const int tok0 = GTOK * rank / S, tok1 = min(m, GTOK * (rank + 1) / S);
    for (int i = tok0 * (GROWS / 4) + threadIdx.x; i < tok1 * (GROWS / 4); i += GTHREADS) {
        const int tok = i / (GROWS / 4), r = (i % (GROWS / 4)) * 4;
        const float* o = out + tok * GOUT_STRIDE + r;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        #pragma unroll
        for (int q = 0; q < S; q++) {
            const float4 p = S == 1 ? *reinterpret_cast<const float4*>(o) : g_peer4(o, q);
            v.x += p.x;
            v.y += p.y;
            v.z += p.z;
            v.w += p.w;
        }
        *reinterpret_cast<uint2*>(y + (size_t)tok * n + row0 + r) =
            make_uint2((unsigned int)f2bf(v.x) | ((unsigned int)f2bf(v.y) << 16),
                       (unsigned int)f2bf(v.z) | ((unsigned int)f2bf(v.w) << 16));
    }
    // No block leaves while others may still read its shared memory.
    if (S > 1) g_cluster_sync();
}

#define SKINNY_GEMM(S)                                                                            \
    extern "C" __global__ void __cluster_dims__(1, S, 1) __launch_bounds__(GTHREADS, 2)           \
        skinny_gemm_##S(const __grid_constant__ Tmap wmap, const __grid_constant__ Tmap xmap,    \
                        bf16_t* __restrict__ y, int m, int n, int k) {                           \
        skinny_gemm_body<S>(&wmap, &xmap, y, m, n, k);                                            \
    }
SKINNY_GEMM(1)
SKINNY_GEMM(2)
SKINNY_GEMM(3)
SKINNY_GEMM(4)
SKINNY_GEMM(6)
SKINNY_GEMM(8)
