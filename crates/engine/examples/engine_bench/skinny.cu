// y [M, N] = x [M, K] · w [N, K]^T for M <= 64 rows: bf16 in, f32 sums, bf16 out.
//
// The weights stream straight from memory into registers with 16-byte loads (no shared memory on
// their way), SK_CH 32-column chunks in flight per warp, and feed mma.m16n8k16 as the A operand
// (16 output features by 16 columns). A thread's 16 bytes are 8 consecutive columns of one weight
// row; the product does not care in which order the columns are summed, so columns are assigned
// to the fragment's slots in the order the loads deliver them, and x is read in the same order.
// A block of SK_WARPS warps covers 32 features per warp and KR columns; x's KR columns (all 64
// rows) sit in shared memory in fragment order. Blocks over the same features but other columns
// add their f32 sums into `ws` (feature-major, [N][64]); the last block of a feature tile to
// finish writes y and zeroes its part of `ws` and its counter for the next product.
typedef unsigned short bf16_t;
__device__ __forceinline__ bf16_t f2bf(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

#ifndef SK_WARPS
#define SK_WARPS 4
#endif
#ifndef SK_CH
#define SK_CH 4
#endif
#ifndef SK_MINB
#define SK_MINB 3
#endif
#define SK_F (SK_WARPS * 32)

__device__ __forceinline__ void mma16816(float* c, unsigned int a0, unsigned int a1,
                                         unsigned int a2, unsigned int a3, unsigned int b0,
                                         unsigned int b1) {
    asm(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned int word(const uint4& u, int i) {
    return i == 0 ? u.x : i == 1 ? u.y : i == 2 ? u.z : u.w;
}

__device__ __forceinline__ uint4 ldg_stream(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

extern "C" __global__ void __launch_bounds__(SK_WARPS * 32, SK_MINB) skinny_gemm(
    const bf16_t* __restrict__ x, const bf16_t* __restrict__ w, bf16_t* __restrict__ y,
    float* __restrict__ ws, unsigned int* __restrict__ tiles, int M, int N, int K, int KR)
{
    extern __shared__ uint4 xs[];  // [chunk][ntile 0..7][lane] 16-byte words
    __shared__ int last;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, tq = lane & 3;
    const int f0 = blockIdx.x * SK_F + warp * 32;
    const int k0 = blockIdx.y * KR;
    const int chunks = min(KR, K - k0) >> 5;
    // Weight rows f0 + g, f0 + g + 8, f0 + g + 16, f0 + g + 24; this lane's 8 columns of a chunk.
#ifdef SK_TILED
    // Weights stored in the order this kernel reads them: for each 32 features, for each 32
    // columns, a 2 KB unit [r 0..3][lane] of 16-byte words (rows 8r + g, columns 8tq ..).
    const uint4* wr = reinterpret_cast<const uint4*>(w) +
                      ((long long)(f0 >> 5) * (K >> 5) + (k0 >> 5)) * 128 + lane;
    const long long row8 = 32;  // the next r, in 16-byte words
    #define SK_CHUNK 128        // the next chunk
#else
    const uint4* wr = reinterpret_cast<const uint4*>(w + (long long)(f0 + g) * K + k0) + tq;
    const long long row8 = (long long)K;  // 8 rows apart, in 16-byte words
    #define SK_CHUNK 4
#endif
    uint4 wa[SK_CH][4];
    #pragma unroll
    for (int c = 0; c < SK_CH; c++) {
        if (c < chunks) {
            #pragma unroll
            for (int r = 0; r < 4; r++) wa[c][r] = ldg_stream(wr + r * row8 + c * SK_CHUNK);
        }
    }
    // x's columns k0 .. k0 + 32 * chunks, rows 0..63 (zero past M), in fragment order.
    // Copied asynchronously (all of a thread's copies in flight at once); rows past M are zero.
    for (int e = threadIdx.x; e < chunks * 256; e += blockDim.x) {
        const int c = e >> 8, nt = (e >> 5) & 7, l = e & 31;
        const int row = nt * 8 + (l >> 2);
        const bf16_t* src = x + (long long)min(row, M - 1) * K + k0 + c * 32 + (l & 3) * 8;
        const unsigned int dst = (unsigned int)__cvta_generic_to_shared(xs + e);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
                     :: "r"(dst), "l"(src), "r"(row < M ? 16 : 0) : "memory");
    }
    asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();
    float acc[2][8][4];
    #pragma unroll
    for (int a = 0; a < 2; a++)
        #pragma unroll
        for (int n = 0; n < 8; n++) acc[a][n][0] = acc[a][n][1] = acc[a][n][2] = acc[a][n][3] = 0.f;
    const int nts = (M + 7) >> 3;
    for (int c0 = 0; c0 < chunks; c0 += SK_CH) {
        #pragma unroll
        for (int c = 0; c < SK_CH; c++) {
            if (c0 + c < chunks) {
                #pragma unroll
                for (int n = 0; n < 8; n++) {
                    if (n < nts) {
                        const uint4 xf = xs[((c0 + c) * 8 + n) * 32 + lane];
                        #pragma unroll
                        for (int s = 0; s < 2; s++) {
                            #pragma unroll
                            for (int a = 0; a < 2; a++) {
                                mma16816(acc[a][n], word(wa[c][2 * a], 2 * s), word(wa[c][2 * a + 1], 2 * s),
                                         word(wa[c][2 * a], 2 * s + 1), word(wa[c][2 * a + 1], 2 * s + 1),
                                         word(xf, 2 * s), word(xf, 2 * s + 1));
                            }
                        }
                    }
                }
                // This chunk's registers take the weights of the chunk SK_CH further on.
                if (c0 + SK_CH + c < chunks) {
                    #pragma unroll
                    for (int r = 0; r < 4; r++) wa[c][r] = ldg_stream(wr + r * row8 + (c0 + SK_CH + c) * SK_CHUNK);
                }
            }
        }
    }
#ifdef SK_NOREDUCE
    // Timing only: the sums are kept (the compiler cannot drop the work) but not written.
    float any = 0.f;
    #pragma unroll
    for (int a = 0; a < 2; a++)
        #pragma unroll
        for (int n = 0; n < 8; n++) any += acc[a][n][0] + acc[a][n][1] + acc[a][n][2] + acc[a][n][3];
    if (any == 1234.5f) y[0] = 1;
    return;
#endif
    // acc[a][n]: features f0 + 16a + g (c0, c1) and + 8 (c2, c3); rows 8n + 2tq (c0, c2), + 1.
    if (gridDim.y == 1) {
        #pragma unroll
        for (int a = 0; a < 2; a++)
            #pragma unroll
            for (int n = 0; n < 8; n++) {
                const int r = 8 * n + 2 * tq, f = f0 + 16 * a + g;
                if (r < M) { y[(long long)r * N + f] = f2bf(acc[a][n][0]); y[(long long)r * N + f + 8] = f2bf(acc[a][n][2]); }
                if (r + 1 < M) { y[(long long)(r + 1) * N + f] = f2bf(acc[a][n][1]); y[(long long)(r + 1) * N + f + 8] = f2bf(acc[a][n][3]); }
            }
        return;
    }
    #pragma unroll
    for (int a = 0; a < 2; a++)
        #pragma unroll
        for (int n = 0; n < 8; n++) {
            if (n < nts) {
                const int r = 8 * n + 2 * tq, f = f0 + 16 * a + g;
                float* p = ws + (long long)f * 64 + r;
                asm volatile("red.global.add.v2.f32 [%0], {%1, %2};" :: "l"(p), "f"(acc[a][n][0]), "f"(acc[a][n][1]) : "memory");
                asm volatile("red.global.add.v2.f32 [%0], {%1, %2};" :: "l"(p + 8 * 64), "f"(acc[a][n][2]), "f"(acc[a][n][3]) : "memory");
            }
        }
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(&tiles[blockIdx.x], 1u) == gridDim.y - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    // The tile's SK_F features by 64 rows (32 KB, contiguous in ws): read the sums with all loads
    // in flight, leave zeros, turn them around in shared memory, write y's rows.
    const int fb = blockIdx.x * SK_F;
    float4* tile = reinterpret_cast<float4*>(ws + (long long)fb * 64);
    float* t = reinterpret_cast<float*>(xs);  // [64][SK_F + 1]
    constexpr int PER_T = SK_F * 16 / (SK_WARPS * 32);
    float4 v[PER_T];
    #pragma unroll
    for (int i = 0; i < PER_T; i++) v[i] = __ldcg(tile + threadIdx.x + i * blockDim.x);
    #pragma unroll
    for (int i = 0; i < PER_T; i++) {
        const int e = threadIdx.x + i * blockDim.x;  // float4 e: feature e / 16, rows 4 (e % 16) ..
        __stcg(tile + e, make_float4(0.f, 0.f, 0.f, 0.f));
        const int fl = e >> 4, r = (e & 15) * 4;
        t[(r + 0) * (SK_F + 1) + fl] = v[i].x;
        t[(r + 1) * (SK_F + 1) + fl] = v[i].y;
        t[(r + 2) * (SK_F + 1) + fl] = v[i].z;
        t[(r + 3) * (SK_F + 1) + fl] = v[i].w;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < M * SK_F; e += blockDim.x) {
        const int r = e / SK_F, fl = e % SK_F;
        y[(long long)r * N + fb + fl] = f2bf(t[r * (SK_F + 1) + fl]);
    }
    if (threadIdx.x == 0) tiles[blockIdx.x] = 0;
}
