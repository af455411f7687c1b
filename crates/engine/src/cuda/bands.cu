// Decode-step products y [M, N] = x [M, K] · w [N, K]^T for M <= 64 token rows: bf16 in, f32
// sums, bf16 out, on Hopper (sm_90a: TMA, wgmma). Each block takes one band of BW consecutive
// weight rows and all of K, and the grid has at most one block per SM: BW is N / SMs rounded up to
// 8 rows, so every SM streams about the same bytes and no block waits for another (no split-K, no
// second wave). The tensor memory accelerator copies, per stage, the band's 64 columns of K (BW
// rows of 128 bytes) and the tokens' same columns (64 rows, zeros past M) into a ring of `stages`
// stages in the 128-byte swizzle, `stages - 1` ahead of the one multiplied: the ring takes the
// shared memory a block may have, so that ~120 KB of weights per SM are on their way (what the
// card needs to read at full speed). One warpgroup multiplies them: wgmma m64nNk16, the tokens as
// A and the band's rows as B, both K-major, in chunks of 64 rows and one of R.
// BW = 64 * NC + R is set when the module is compiled (-DNC=.. -DR=..), and WAITN, the wgmma
// groups left in flight while the next stage is awaited.
#ifndef NC
#define NC 1
#endif
#ifndef R
#define R 32
#endif
#ifndef WAITN
#define WAITN 1
#endif
#ifndef DUAL
#define DUAL 0
#endif
#define BW (64 * NC + R)
#ifndef BOXES
#define BOXES 1
#endif
// K columns per box (128 bytes: the swizzle's span) and per stage.
#define BOX 64
#define BK (BOX * BOXES)
#define BTOK 64
#define BW_BYTES (BW * BK * 2)
#define BSTAGE (BW_BYTES + BTOK * BK * 2)
// A stage: the band's BOXES boxes (BW rows of 128 bytes each), then the tokens' (64 rows each).

// A TMA tensor map (CUtensorMap), passed by value.
struct __align__(64) Tmap {
    unsigned long long v[16];
};

__device__ __forceinline__ unsigned int bg_smem(const void* p) {
    return (unsigned int)__cvta_generic_to_shared(p);
}

// Shared-memory matrix descriptor of a K-major bf16 tile with 128-byte rows in the 128-byte
// swizzle (as the tensor maps store it): 8-row groups 1024 bytes apart. Adding 2 moves it 32
// bytes, 16 columns, along K; adding 64 moves it 8 rows.
__device__ __forceinline__ unsigned long long bg_desc(const void* p) {
    const unsigned long long a = bg_smem(p);
    return ((a & 0x3FFFF) >> 4) | (1ull << 16) | ((1024ull >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void bg_bar_init(unsigned long long* bar, unsigned int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bg_smem(bar)), "r"(count));
}
// Arrives on `bar`, which then also waits for `bytes` bytes of copies.
__device__ __forceinline__ void bg_bar_expect(unsigned long long* bar, unsigned int bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bg_smem(bar)),
                 "r"(bytes)
                 : "memory");
}
// Waits until phase `parity` of `bar` completes.
__device__ __forceinline__ void bg_bar_wait(unsigned long long* bar, unsigned int parity) {
    asm volatile(
        "{\n\t.reg .pred done;\n"
        "WAIT_%=:\n\t"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n\t"
        "@!done bra WAIT_%=;\n}" ::"r"(bg_smem(bar)),
        "r"(parity)
        : "memory");
}
// The box of `map` at (column col, row row) into shared memory at dst, counted on `bar`.
__device__ __forceinline__ void bg_tma(void* dst, const Tmap* map, int col, int row,
                                       unsigned long long* bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, "
        "{%2, %3}], [%4];" ::"r"(bg_smem(dst)),
        "l"(map), "r"(col), "r"(row), "r"(bg_smem(bar))
        : "memory");
}

// d [64 tokens x N rows] += A [64 x 16] · B [N x 16]^T, both K-major in shared memory.
__device__ __forceinline__ void bg_mma8(float* d, unsigned long long a, unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3}, %4, %5, 1, 1, 1, 0, 0;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "l"(a), "l"(b));
}
__device__ __forceinline__ void bg_mma16(float* d, unsigned long long a, unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, 1, 1, 1, 0, 0;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
        : "l"(a), "l"(b));
}
__device__ __forceinline__ void bg_mma24(float* d, unsigned long long a, unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n24k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11}, %12, %13, 1, 1, 1, 0, 0;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11])
        : "l"(a), "l"(b));
}
__device__ __forceinline__ void bg_mma32(float* d, unsigned long long a, unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, 1, 1, 1, 0, 0;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
        : "l"(a), "l"(b));
}
__device__ __forceinline__ void bg_mma40(float* d, unsigned long long a, unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n40k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19}, %20, %21, 1, 1, 1, 0, 0;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19])
        : "l"(a), "l"(b));
}
__device__ __forceinline__ void bg_mma48(float* d, unsigned long long a, unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n48k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23}, %24, %25, 1, 1, 1, 0, 0;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23])
        : "l"(a), "l"(b));
}
__device__ __forceinline__ void bg_mma56(float* d, unsigned long long a, unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n56k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27}, %28, %29, 1, 1, 1, 0, 0;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27])
        : "l"(a), "l"(b));
}
__device__ __forceinline__ void bg_mma64(float* d, unsigned long long a, unsigned long long b) {
    asm volatile(
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, 1, 1, 1, 0, 0;"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "l"(a), "l"(b));
}
#define BG_CAT2(a, b) a##b
#define BG_CAT(a, b) BG_CAT2(a, b)
#define BG_MMA_R BG_CAT(bg_mma, R)

// Stores the sums of tokens tok, rows col and col + 1 of the band (where they exist).
__device__ __forceinline__ void bg_store(bf16_t* __restrict__ y, int m, int n, int tok, int row,
                                         float a, float b) {
    if (tok < m && row < n)
        *reinterpret_cast<unsigned int*>(y + (size_t)tok * n + row) =
            (unsigned int)f2bf(a) | ((unsigned int)f2bf(b) << 16);
}

// One stage's weights: a box of the tensor map, or (wflat given) BW_BYTES contiguous bytes of
// weights stored tile after tile, each already in the swizzled order.
__device__ __forceinline__ void bg_weights(void* dst, const Tmap* map, const bf16_t* wflat,
                                           int tiles, int t, int row0, unsigned long long* bar) {
    if (wflat) {
        // Stage t of every block side by side: at any time the blocks read one stretch of memory.
        const bf16_t* src = wflat + ((size_t)t * gridDim.x + blockIdx.x) * (BW * BK);
        asm volatile(
            "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, "
            "[%3];" ::"r"(bg_smem(dst)),
            "l"(src), "r"(BW_BYTES), "r"(bg_smem(bar))
            : "memory");
    } else {
        #pragma unroll
        for (int x = 0; x < BOXES; x++)
            bg_tma(static_cast<unsigned char*>(dst) + x * BW * BOX * 2, map, t * BK + x * BOX,
                   row0, bar);
    }
}

// flags: 1, skip the arithmetic; 2, skip the tokens' copies (both for timing only).
extern "C" __global__ void __launch_bounds__(160, 1)
    band_gemm(const __grid_constant__ Tmap wmap, const __grid_constant__ Tmap xmap,
              bf16_t* __restrict__ y, int m, int n, int k, int stages,
              const bf16_t* __restrict__ wflat, int flags) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    // The swizzle works on address bits: tiles start on 1024-byte boundaries.
    unsigned char* smem = smem_raw + ((1024 - (bg_smem(smem_raw) & 1023)) & 1023);
    // full[s]: stage s has arrived; empty[s]: the four consumer warps are done with it.
    unsigned long long* full = reinterpret_cast<unsigned long long*>(smem + stages * BSTAGE);
    unsigned long long* empty = full + stages;
    const int row0 = blockIdx.x * BW;
    const int tiles = (k + BK - 1) / BK;
    const bool nomath = flags & 1, nox = flags & 2;
    if (threadIdx.x == 0) {
        for (int s = 0; s < stages; s++) {
            bg_bar_init(full + s, 1);
            bg_bar_init(empty + s, 4);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();

    if (threadIdx.x >= 128) {
        // The producer: one thread refills each stage as soon as the consumers let it go.
        if (threadIdx.x == 128)
            for (int t = 0; t < tiles; t++) {
                const int slot = t % stages;
                if (t >= stages) bg_bar_wait(empty + slot, (t / stages - 1) & 1);
                unsigned char* st = smem + slot * BSTAGE;
                bg_bar_expect(full + slot, nox ? BW_BYTES : BSTAGE);
                bg_weights(st, &wmap, wflat, tiles, t, row0, full + slot);
                if (!nox)
                    #pragma unroll
                    for (int x = 0; x < BOXES; x++)
                        bg_tma(st + BW_BYTES + x * BTOK * BOX * 2, &xmap, t * BK + x * BOX, 0,
                               full + slot);
            }
        return;
    }

    // The consumers: one warpgroup, one wgmma group in flight while the next stage is awaited.
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    // With DUAL, odd 16-column steps add into a second set of sums (e64, er), so that each
    // set's chain of dependent wgmma is half as long.
    float d64[NC > 0 ? NC : 1][32], e64[DUAL && NC > 0 ? NC : 1][32];
    float dr[R > 0 ? R / 2 : 1], er[DUAL && R > 0 ? R / 2 : 1];
    #pragma unroll
    for (int c = 0; c < NC; c++)
        #pragma unroll
        for (int e = 0; e < 32; e++) d64[c][e] = e64[c][e] = 0.f;
    #pragma unroll
    for (int e = 0; e < R / 2; e++) dr[e] = er[e] = 0.f;
    for (int t = 0; t < tiles; t++) {
        const int slot = t % stages;
        bg_bar_wait(full + slot, (t / stages) & 1);
        int done = slot;
        if (!nomath) {
            const unsigned char* st = smem + slot * BSTAGE;
            asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
            #pragma unroll
            for (int kk = 0; kk < BK / 16; kk++) {
                // Box kk / 4 of the band and of the tokens, 16 columns (32 bytes) kk % 4 along.
                const int x = kk / (BOX / 16), k16 = kk % (BOX / 16);
                const unsigned long long a = bg_desc(st + BW_BYTES + x * BTOK * BOX * 2) + 2 * k16;
                const unsigned long long b = bg_desc(st + x * BW * BOX * 2) + 2 * k16;
                const bool second = DUAL && (kk & 1);
                #pragma unroll
                for (int c = 0; c < NC; c++) bg_mma64(second ? e64[c] : d64[c], a, b + 512 * c);
#if R > 0
                BG_MMA_R(second ? er : dr, a, b + 512 * NC);
#endif
            }
            asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
            // The group of stage t - WAITN is done: its stage may be refilled.
            asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(WAITN) : "memory");
            done = t >= WAITN ? (t - WAITN) % stages : -1;
        }
        __syncwarp();
        if (lane == 0 && done >= 0)
            asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bg_smem(empty + done))
                         : "memory");
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
#if DUAL
    #pragma unroll
    for (int c = 0; c < NC; c++)
        #pragma unroll
        for (int e = 0; e < 32; e++) d64[c][e] += e64[c][e];
    #pragma unroll
    for (int e = 0; e < R / 2; e++) dr[e] += er[e];
#endif

    // Thread (warp w, lane 4g + c) holds tokens 16w + g (+ 8) and rows 8j + 2c (+ 1) of each chunk.
    const int tok = 16 * warp + (lane >> 2), c2 = 2 * (lane & 3);
    #pragma unroll
    for (int c = 0; c < NC; c++)
        #pragma unroll
        for (int j = 0; j < 8; j++) {
            const int row = row0 + 64 * c + 8 * j + c2;
            bg_store(y, m, n, tok, row, d64[c][4 * j], d64[c][4 * j + 1]);
            bg_store(y, m, n, tok + 8, row, d64[c][4 * j + 2], d64[c][4 * j + 3]);
        }
    #pragma unroll
    for (int j = 0; j < R / 8; j++) {
        const int row = row0 + 64 * NC + 8 * j + c2;
        bg_store(y, m, n, tok, row, dr[4 * j], dr[4 * j + 1]);
        bg_store(y, m, n, tok + 8, row, dr[4 * j + 2], dr[4 * j + 3]);
    }
}
