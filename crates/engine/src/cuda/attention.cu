// Decode attention: one block per (sequence, query head), online softmax over the cached keys
// (columns below `len`, or up to and including `*col` when `col` is given).
// Each warp takes UNROLL keys at a time, so that many rows of K and V are in flight per warp; each
// lane holds PER = HEAD_DIM / 32 dimensions and loads them as one vector.
#define WARPS 4
#define PER (HEAD_DIM / 32)
#ifndef UNROLL
#define UNROLL 2
#endif

__device__ __forceinline__ void load_row(const bf16_t* __restrict__ p, float* out) {
#if PER == 4
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    out[0] = __uint_as_float(raw.x << 16); out[1] = __uint_as_float(raw.x & 0xffff0000u);
    out[2] = __uint_as_float(raw.y << 16); out[3] = __uint_as_float(raw.y & 0xffff0000u);
#elif PER == 2
    const unsigned int raw = *reinterpret_cast<const unsigned int*>(p);
    out[0] = __uint_as_float(raw << 16); out[1] = __uint_as_float(raw & 0xffff0000u);
#else
    #pragma unroll
    for (int i = 0; i < PER; i++) out[i] = bf2f(p[i]);
#endif
}

__device__ __forceinline__ void store_row(bf16_t* __restrict__ p, const float* f) {
#if PER == 4
    *reinterpret_cast<uint2*>(p) =
        make_uint2((unsigned int)f2bf(f[0]) | ((unsigned int)f2bf(f[1]) << 16),
                   (unsigned int)f2bf(f[2]) | ((unsigned int)f2bf(f[3]) << 16));
#elif PER == 2
    *reinterpret_cast<unsigned int*>(p) = (unsigned int)f2bf(f[0]) | ((unsigned int)f2bf(f[1]) << 16);
#else
    #pragma unroll
    for (int i = 0; i < PER; i++) p[i] = f2bf(f[i]);
#endif
}

// One warp's share of the cached keys first .. len - 1 (UNROLL keys at a time, the warps
// interleaved), folded into its online-softmax state (m, s, acc).
__device__ __forceinline__ void attend_cached(
    const float* qv, const bf16_t* __restrict__ k, const bf16_t* __restrict__ v, long long base,
    int first, int len, int warp, float& m, float& s, float* acc)
{
    for (int j0 = first + warp * UNROLL; j0 < len; j0 += WARPS * UNROLL) {
        float kr[UNROLL][PER], vr[UNROLL][PER], dot[UNROLL];
        #pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const int j = min(j0 + u, len - 1);
            load_row(k + base + (long long)j * HEAD_DIM, kr[u]);
            load_row(v + base + (long long)j * HEAD_DIM, vr[u]);
        }
        #pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            dot[u] = 0.f;
            #pragma unroll
            for (int i = 0; i < PER; i++) dot[u] += qv[i] * kr[u][i];
        }
        #pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            #pragma unroll
            for (int u = 0; u < UNROLL; u++) dot[u] += __shfl_xor_sync(0xffffffffu, dot[u], o);
        }
        float mn = m;
        #pragma unroll
        for (int u = 0; u < UNROLL; u++) if (j0 + u < len) mn = fmaxf(mn, dot[u]);
        const float c = __expf(m - mn);
        s *= c;
        #pragma unroll
        for (int i = 0; i < PER; i++) acc[i] *= c;
        // A row past len (a clamped copy of the last one) weighs 0 rather than being skipped:
        // every value is used, so none of the round's loads is put off until its branch.
        #pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            const float p = j0 + u < len ? __expf(dot[u] - mn) : 0.f;
            s += p;
            #pragma unroll
            for (int i = 0; i < PER; i++) acc[i] += p * vr[u][i];
        }
        m = mn;
    }
}

// Merges the warps' states and writes the head's output row (this lane's PER values at yp).
__device__ __forceinline__ void merge_store(float m, float s, const float* acc,
                                            bf16_t* __restrict__ yp, int warp, int lane)
{
    __shared__ float sm[WARPS], ss[WARPS], sacc[WARPS][HEAD_DIM];
    if (lane == 0) { sm[warp] = m; ss[warp] = s; }
    #pragma unroll
    for (int i = 0; i < PER; i++) sacc[warp][lane * PER + i] = acc[i];
    __syncthreads();
    if (warp == 0) {
        float M = NEG_INF;
        for (int w = 0; w < WARPS; w++) M = fmaxf(M, sm[w]);
        float S = 0.f, out[PER];
        #pragma unroll
        for (int i = 0; i < PER; i++) out[i] = 0.f;
        for (int w = 0; w < WARPS; w++) {
            if (sm[w] == NEG_INF) continue;
            const float c = __expf(sm[w] - M);
            S += ss[w] * c;
            #pragma unroll
            for (int i = 0; i < PER; i++) out[i] += sacc[w][lane * PER + i] * c;
        }
        #pragma unroll
        for (int i = 0; i < PER; i++) yp[i] = f2bf(out[i] / S);
    }
}

extern "C" __global__ void decode_attention(
    const bf16_t* __restrict__ q, const bf16_t* __restrict__ k, const bf16_t* __restrict__ v,
    bf16_t* __restrict__ y, const unsigned int* __restrict__ start,
    const unsigned int* __restrict__ col, int nh, int nkv, long long k_batch, long long k_head,
    int len, float scale)
{
    // A step replayed from a CUDA graph reads its cache column from the device: keys 0..col.
    if (col) len = min(len, (int)col[0] + 1);
    const int h = blockIdx.x, b = blockIdx.y;
    const int kvh = h / (nh / nkv);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float qv[PER];
    load_row(q + ((long long)b * nh + h) * HEAD_DIM + lane * PER, qv);
    #pragma unroll
    for (int i = 0; i < PER; i++) qv[i] *= scale;
    const long long base = (long long)b * k_batch + (long long)kvh * k_head + lane * PER;
    float m = NEG_INF, s = 0.f, acc[PER];
    #pragma unroll
    for (int i = 0; i < PER; i++) acc[i] = 0.f;
    attend_cached(qv, k, v, base, (int)start[b], len, warp, m, s, acc);
    merge_store(m, s, acc, y + ((long long)b * nh + h) * HEAD_DIM + lane * PER, warp, lane);
}

// This lane's PER dimensions of a head's row `src`, rotated by position p (tables cos/sin
// [context, HEAD_DIM / 2]; pairs (d, d + HEAD_DIM / 2), or (2i, 2i + 1) when interleaved) and
// rounded to bf16, as the QKV split kernel (layer.cu) writes them. Every lane of the warp calls it.
__device__ __forceinline__ void rope_row(const bf16_t* __restrict__ src,
                                         const bf16_t* __restrict__ cos_t,
                                         const bf16_t* __restrict__ sin_t, long long p, int lane,
                                         int interleaved, float* out)
{
    constexpr int half = HEAD_DIM / 2;
    float x[PER];
    load_row(src + lane * PER, x);
    if (interleaved) {
        // Pairs (2i, 2i + 1): this lane's PER / 2 pairs, angles PER / 2 from lane * PER / 2.
        float c[PER / 2], s[PER / 2];
        #pragma unroll
        for (int j = 0; j < PER / 2; j++) {
            c[j] = bf2f(cos_t[p * half + lane * PER / 2 + j]);
            s[j] = bf2f(sin_t[p * half + lane * PER / 2 + j]);
        }
        #pragma unroll
        for (int j = 0; j < PER / 2; j++) {
            const float x0 = x[2 * j], x1 = x[2 * j + 1];
            out[2 * j] = bf2f(f2bf(x0 * c[j] - x1 * s[j]));
            out[2 * j + 1] = bf2f(f2bf(x0 * s[j] + x1 * c[j]));
        }
    } else {
        // Dimension d of lane l pairs with d + half, held by lane l + 16; both use angle d % half.
        const bool upper = lane >= 16;
        float c[PER], s[PER];
        load_row(cos_t + p * half + (lane & 15) * PER, c);
        load_row(sin_t + p * half + (lane & 15) * PER, s);
        #pragma unroll
        for (int i = 0; i < PER; i++) {
            const float o = __shfl_xor_sync(0xffffffffu, x[i], 16);
            out[i] = upper ? bf2f(f2bf(o * s[i] + x[i] * c[i])) : bf2f(f2bf(x[i] * c[i] - o * s[i]));
        }
    }
}

// Decode attention straight from the fused QKV projection y [B, (nh + 2 nkv) * HEAD_DIM] (one
// token per sequence): the block of (query head h, sequence b) rotates its query and attends over
// the cached keys start[b] .. c - 1 and the step's own key and value at column c (= *col when
// given, else offset), which it rotates from y itself; the block of the first query
// head of each key head also writes them into the caches [B, nkv, cap, HEAD_DIM]. No block reads
// column c from the caches, so none waits for another's write. Replaces the QKV split kernel and
// its query tensor in a decode step. y, the tables, and the caches start on 8-byte boundaries.
// The caches come twice: read through k and v (never at column c, so the read-only path may
// serve them) and written through k_out and v_out (only at column c).
extern "C" __global__ void __launch_bounds__(WARPS * 32, 16) decode_attention_qkv(
    const bf16_t* __restrict__ y, const bf16_t* __restrict__ cos_t,
    const bf16_t* __restrict__ sin_t, const unsigned int* __restrict__ pos,
    const bf16_t* __restrict__ k, const bf16_t* __restrict__ v, bf16_t* __restrict__ k_out,
    bf16_t* __restrict__ v_out, bf16_t* __restrict__ out, const unsigned int* __restrict__ start,
    const unsigned int* __restrict__ col, int offset,
    int nh, int nkv, long long k_batch, long long k_head, int cap, float scale, int interleaved)
{
    const int c = col ? (int)col[0] : offset;
    if (c >= cap) return;  // past the cache: the host never asks for it
    const int h = blockIdx.x, b = blockIdx.y;
    const int group = nh / nkv, kvh = h / group;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float qv[PER];
    rope_row(y + ((long long)b * (nh + 2 * nkv) + h) * HEAD_DIM, cos_t, sin_t, pos[b], lane,
             interleaved, qv);
    #pragma unroll
    for (int i = 0; i < PER; i++) qv[i] *= scale;
    const long long base = (long long)b * k_batch + (long long)kvh * k_head + lane * PER;
    float m = NEG_INF, s = 0.f, acc[PER];
    #pragma unroll
    for (int i = 0; i < PER; i++) acc[i] = 0.f;
    // The step's own key and value go to the warp with the fewest cached keys (the keys are
    // dealt to the warps UNROLL at a time), before its share: the order of the keys does not
    // change the result.
    const int first = (int)start[b];
    const int chunks = (c - first + UNROLL - 1) / UNROLL;
    if (warp == (chunks % WARPS == 0 ? WARPS - 1 : chunks % WARPS)) {
        const bf16_t* kv = y + ((long long)b * (nh + 2 * nkv) + nh + kvh) * HEAD_DIM;
        float kn[PER], vn[PER];
        rope_row(kv, cos_t, sin_t, pos[b], lane, interleaved, kn);
        load_row(kv + (long long)nkv * HEAD_DIM + lane * PER, vn);
        if (h % group == 0) {
            store_row(k_out + base + (long long)c * HEAD_DIM, kn);
            store_row(v_out + base + (long long)c * HEAD_DIM, vn);
        }
        float dot = 0.f;
        #pragma unroll
        for (int i = 0; i < PER; i++) dot += qv[i] * kn[i];
        #pragma unroll
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        m = dot;
        s = 1.f;
        #pragma unroll
        for (int i = 0; i < PER; i++) acc[i] = vn[i];
    }
    attend_cached(qv, k, v, base, first, c, warp, m, s, acc);
    merge_store(m, s, acc, out + ((long long)b * nh + h) * HEAD_DIM + lane * PER, warp, lane);
}

// Attention over a prompt: T queries per sequence, at cache columns offset .. offset + T - 1, each
// seeing the keys from its sequence's first real column start[b] up to its own column (causal); a
// query in the padding (column < start[b]) sees only itself, as under the additive mask. One block
// of MWARPS warps per (tile of MQT queries, query head, sequence); each warp takes 16 queries and
// runs on the tensor cores (mma m16n8k16, bf16 in, f32 sums): scores Q K^T for a tile of MKT keys,
// an online softmax in f32 over them, then P V with P rounded to bf16. Keys and values of a tile go
// through shared memory (rows padded by 16 bytes, so that the fragment loads hit 32 banks). Writes
// y [B, T, nh, HEAD_DIM], the layout the output projection reads.
#define MQ 16
#define MWARPS 4
#define MQT (MQ * MWARPS)
#define MKT 32
#define SROW (HEAD_DIM + 8)

__device__ __forceinline__ void mma_bf16(float* c, const unsigned int* a, unsigned int b0,
                                         unsigned int b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned int pack2(float lo, float hi) {
    return (unsigned int)f2bf(lo) | ((unsigned int)f2bf(hi) << 16);
}

extern "C" __global__ void __launch_bounds__(MWARPS * 32) prefill_attention(
    const bf16_t* __restrict__ q, const bf16_t* __restrict__ k, const bf16_t* __restrict__ v,
    bf16_t* __restrict__ y, const unsigned int* __restrict__ start, int T, int nh, int nkv,
    long long k_batch, long long k_head, int offset, float scale)
{
    __shared__ __align__(16) bf16_t ks[MKT * SROW];
    __shared__ __align__(16) bf16_t vs[MKT * SROW];
    const int q0 = blockIdx.x * MQT, h = blockIdx.y, b = blockIdx.z;
    const int kvh = h / (nh / nkv);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane >> 2, tq = lane & 3;
    const int st = (int)start[b];
    const bf16_t* qb = q + ((long long)b * nh + h) * T * HEAD_DIM;
    // This thread's two query rows (of the warp's 16) and their cache columns.
    const int r0 = q0 + warp * MQ + g, r1 = r0 + 8;
    const int c0 = offset + r0, c1 = offset + r1;
    unsigned int qa[HEAD_DIM / 16][4];
    #pragma unroll
    for (int kc = 0; kc < HEAD_DIM / 16; kc++) {
        const int d = kc * 16 + tq * 2;
        qa[kc][0] = r0 < T ? *reinterpret_cast<const unsigned int*>(qb + (long long)r0 * HEAD_DIM + d) : 0u;
        qa[kc][1] = r1 < T ? *reinterpret_cast<const unsigned int*>(qb + (long long)r1 * HEAD_DIM + d) : 0u;
        qa[kc][2] = r0 < T ? *reinterpret_cast<const unsigned int*>(qb + (long long)r0 * HEAD_DIM + d + 8) : 0u;
        qa[kc][3] = r1 < T ? *reinterpret_cast<const unsigned int*>(qb + (long long)r1 * HEAD_DIM + d + 8) : 0u;
    }
    const bf16_t* kb = k + b * k_batch + kvh * k_head;
    const bf16_t* vb = v + b * k_batch + kvh * k_head;
    // The block's queries sit at columns offset + q0 .. last; padding queries need their own key.
    const int last = offset + min(q0 + MQT, T) - 1;
    const int first = min(st, offset + q0);
    float o[HEAD_DIM / 8][4];
    #pragma unroll
    for (int n = 0; n < HEAD_DIM / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
    float m0 = NEG_INF, m1 = NEG_INF, l0 = 0.f, l1 = 0.f;
    const unsigned int vs_base = (unsigned int)__cvta_generic_to_shared(vs);
    for (int k0 = first; k0 <= last; k0 += MKT) {
        __syncthreads();
        for (int e = threadIdx.x; e < MKT * HEAD_DIM / 8; e += blockDim.x) {
            const int r = e / (HEAD_DIM / 8), c8 = e % (HEAD_DIM / 8), j = k0 + r;
            uint4 kw = make_uint4(0, 0, 0, 0), vw = make_uint4(0, 0, 0, 0);
            if (j <= last) {
                kw = reinterpret_cast<const uint4*>(kb + (long long)j * HEAD_DIM)[c8];
                vw = reinterpret_cast<const uint4*>(vb + (long long)j * HEAD_DIM)[c8];
            }
            *reinterpret_cast<uint4*>(ks + r * SROW + c8 * 8) = kw;
            *reinterpret_cast<uint4*>(vs + r * SROW + c8 * 8) = vw;
        }
        __syncthreads();
        // Scores of the warp's 16 queries against the tile's keys: MKT / 8 blocks of 8 keys.
        float sc[MKT / 8][4];
        #pragma unroll
        for (int nb = 0; nb < MKT / 8; nb++) {
            sc[nb][0] = sc[nb][1] = sc[nb][2] = sc[nb][3] = 0.f;
            #pragma unroll
            for (int kc = 0; kc < HEAD_DIM / 16; kc++) {
                const bf16_t* kr = ks + (nb * 8 + g) * SROW + kc * 16 + tq * 2;
                mma_bf16(sc[nb], qa[kc], *reinterpret_cast<const unsigned int*>(kr),
                         *reinterpret_cast<const unsigned int*>(kr + 8));
            }
        }
        float mx0 = NEG_INF, mx1 = NEG_INF;
        #pragma unroll
        for (int nb = 0; nb < MKT / 8; nb++) {
            #pragma unroll
            for (int e = 0; e < 2; e++) {
                const int j = k0 + nb * 8 + tq * 2 + e;
                const bool ok0 = r0 < T && j <= c0 && (c0 < st ? j == c0 : j >= st);
                const bool ok1 = r1 < T && j <= c1 && (c1 < st ? j == c1 : j >= st);
                sc[nb][e] = ok0 ? sc[nb][e] * scale : NEG_INF;
                sc[nb][2 + e] = ok1 ? sc[nb][2 + e] * scale : NEG_INF;
                mx0 = fmaxf(mx0, sc[nb][e]);
                mx1 = fmaxf(mx1, sc[nb][2 + e]);
            }
        }
        #pragma unroll
        for (int x = 1; x < 4; x <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, x));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, x));
        }
        const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
        // A row with nothing visible yet keeps its (empty) state.
        const float f0 = n0 == NEG_INF ? 1.f : __expf(m0 - n0);
        const float f1 = n1 == NEG_INF ? 1.f : __expf(m1 - n1);
        l0 *= f0;
        l1 *= f1;
        #pragma unroll
        for (int nb = 0; nb < MKT / 8; nb++) {
            #pragma unroll
            for (int e = 0; e < 2; e++) {
                sc[nb][e] = n0 == NEG_INF ? 0.f : __expf(sc[nb][e] - n0);
                sc[nb][2 + e] = n1 == NEG_INF ? 0.f : __expf(sc[nb][2 + e] - n1);
                l0 += sc[nb][e];
                l1 += sc[nb][2 + e];
            }
        }
        #pragma unroll
        for (int n = 0; n < HEAD_DIM / 8; n++) {
            o[n][0] *= f0; o[n][1] *= f0;
            o[n][2] *= f1; o[n][3] *= f1;
        }
        m0 = n0;
        m1 = n1;
        // P V: 16 keys at a time; the values' fragments come transposed from shared memory.
        #pragma unroll
        for (int kc = 0; kc < MKT / 16; kc++) {
            const unsigned int pa[4] = {
                pack2(sc[2 * kc][0], sc[2 * kc][1]), pack2(sc[2 * kc][2], sc[2 * kc][3]),
                pack2(sc[2 * kc + 1][0], sc[2 * kc + 1][1]),
                pack2(sc[2 * kc + 1][2], sc[2 * kc + 1][3])};
            #pragma unroll
            for (int n = 0; n < HEAD_DIM / 8; n += 2) {
                const int mat = lane >> 3;
                const int row = kc * 16 + (mat & 1) * 8 + (lane & 7);
                const int col = (n + (mat >> 1)) * 8;
                const unsigned int addr = vs_base + (unsigned int)((row * SROW + col) * 2);
                unsigned int r[4];
                asm volatile(
                    "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                    : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                    : "r"(addr));
                mma_bf16(o[n], pa, r[0], r[1]);
                mma_bf16(o[n + 1], pa, r[2], r[3]);
            }
        }
    }
    #pragma unroll
    for (int x = 1; x < 4; x <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, x);
        l1 += __shfl_xor_sync(0xffffffffu, l1, x);
    }
    #pragma unroll
    for (int n = 0; n < HEAD_DIM / 8; n++) {
        const int d = n * 8 + tq * 2;
        if (r0 < T)
            *reinterpret_cast<unsigned int*>(y + (((long long)b * T + r0) * nh + h) * HEAD_DIM + d) =
                pack2(o[n][0] / l0, o[n][1] / l0);
        if (r1 < T)
            *reinterpret_cast<unsigned int*>(y + (((long long)b * T + r1) * nh + h) * HEAD_DIM + d) =
                pack2(o[n][2] / l1, o[n][3] / l1);
    }
}
