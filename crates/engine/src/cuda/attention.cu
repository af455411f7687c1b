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
    for (int j0 = (int)start[b] + warp * UNROLL; j0 < len; j0 += WARPS * UNROLL) {
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
        #pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            if (j0 + u < len) {
                const float p = __expf(dot[u] - mn);
                s += p;
                #pragma unroll
                for (int i = 0; i < PER; i++) acc[i] += p * vr[u][i];
            }
        }
        m = mn;
    }
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
        bf16_t* yp = y + ((long long)b * nh + h) * HEAD_DIM + lane * PER;
        #pragma unroll
        for (int i = 0; i < PER; i++) yp[i] = f2bf(out[i] / S);
    }
}

// Attention over a prompt: T queries per sequence, at cache columns offset .. offset + T - 1, each
// seeing the keys from its sequence's first real column start[b] up to its own column (causal); a
// query in the padding (column < start[b]) sees only itself, as under the additive mask. One block
// per (tile of PQ_TILE queries, query head, sequence); each of the PWARPS warps takes PQ queries.
// Tiles of 32 keys and values go through shared memory; lane j scores key j of the tile for each of
// its warp's queries, and the output dimensions are spread over the lanes as in decode_attention.
// Online softmax in f32 (lane-local sums, warp-wide maxima). Writes y [B, T, nh, HEAD_DIM], the
// layout the output projection reads.
#define PQ 4
#define PWARPS 8
#define PQ_TILE (PQ * PWARPS)
#define PKT 32
#define KWORDS (HEAD_DIM / 2)
#define KSTRIDE (KWORDS + 1)

extern "C" __global__ void __launch_bounds__(PWARPS * 32) prefill_attention(
    const bf16_t* __restrict__ q, const bf16_t* __restrict__ k, const bf16_t* __restrict__ v,
    bf16_t* __restrict__ y, const unsigned int* __restrict__ start, int T, int nh, int nkv,
    long long k_batch, long long k_head, int offset, float scale)
{
    __shared__ unsigned int ks[PKT * KSTRIDE];
    __shared__ __align__(16) unsigned int vs[PKT * KWORDS];
    __shared__ __align__(16) float qs[PQ_TILE * HEAD_DIM];
    const int q0 = blockIdx.x * PQ_TILE, h = blockIdx.y, b = blockIdx.z;
    const int kvh = h / (nh / nkv);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int st = (int)start[b];
    const bf16_t* qb = q + ((long long)b * nh + h) * T * HEAD_DIM;
    for (int e = threadIdx.x; e < PQ_TILE * HEAD_DIM; e += blockDim.x) {
        const int qi = q0 + e / HEAD_DIM;
        qs[e] = qi < T ? bf2f(qb[(long long)q0 * HEAD_DIM + e]) * scale : 0.f;
    }
    const bf16_t* kb = k + b * k_batch + kvh * k_head;
    const bf16_t* vb = v + b * k_batch + kvh * k_head;
    // The block's queries sit at columns offset + q0 .. last; padding queries need their own key.
    const int last = offset + min(q0 + PQ_TILE, T) - 1;
    const int first = min(st, offset + q0);
    float m[PQ], l[PQ], acc[PQ][PER];
    #pragma unroll
    for (int p = 0; p < PQ; p++) {
        m[p] = NEG_INF;
        l[p] = 0.f;
        #pragma unroll
        for (int i = 0; i < PER; i++) acc[p][i] = 0.f;
    }
    for (int k0 = first; k0 <= last; k0 += PKT) {
        __syncthreads();
        for (int e = threadIdx.x; e < PKT * KWORDS; e += blockDim.x) {
            const int r = e / KWORDS, w = e % KWORDS, j = k0 + r;
            unsigned int kw = 0, vw = 0;
            if (j <= last) {
                kw = reinterpret_cast<const unsigned int*>(kb + (long long)j * HEAD_DIM)[w];
                vw = reinterpret_cast<const unsigned int*>(vb + (long long)j * HEAD_DIM)[w];
            }
            ks[r * KSTRIDE + w] = kw;
            vs[r * KWORDS + w] = vw;
        }
        __syncthreads();
        float sc[PQ];
        #pragma unroll
        for (int p = 0; p < PQ; p++) sc[p] = 0.f;
        const float* qw = qs + warp * PQ * HEAD_DIM;
        #pragma unroll 8
        for (int w = 0; w < KWORDS; w++) {
            const unsigned int kw = ks[lane * KSTRIDE + w];
            const float ka = __uint_as_float(kw << 16), kz = __uint_as_float(kw & 0xffff0000u);
            #pragma unroll
            for (int p = 0; p < PQ; p++) {
                const float2 qq = reinterpret_cast<const float2*>(qw + p * HEAD_DIM)[w];
                sc[p] += qq.x * ka + qq.y * kz;
            }
        }
        const int j = k0 + lane;
        float pe[PQ];
        #pragma unroll
        for (int p = 0; p < PQ; p++) {
            const int qi = q0 + warp * PQ + p, qc = offset + qi;
            const bool ok = qi < T && j <= qc && (qc < st ? j == qc : j >= st);
            const float s = ok ? sc[p] : NEG_INF;
            float mx = s;
            #pragma unroll
            for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float mn = fmaxf(m[p], mx);
            if (mn == NEG_INF) {  // nothing visible yet
                pe[p] = 0.f;
                continue;
            }
            const float c = __expf(m[p] - mn);
            pe[p] = ok ? __expf(s - mn) : 0.f;
            l[p] = l[p] * c + pe[p];
            #pragma unroll
            for (int i = 0; i < PER; i++) acc[p][i] *= c;
            m[p] = mn;
        }
        const int rows = min(PKT, last - k0 + 1);
        for (int r = 0; r < rows; r++) {
            float vr[PER];
            load_row(reinterpret_cast<const bf16_t*>(vs + r * KWORDS) + lane * PER, vr);
            #pragma unroll
            for (int p = 0; p < PQ; p++) {
                const float pj = __shfl_sync(0xffffffffu, pe[p], r);
                #pragma unroll
                for (int i = 0; i < PER; i++) acc[p][i] += pj * vr[i];
            }
        }
    }
    #pragma unroll
    for (int p = 0; p < PQ; p++) {
        const int qi = q0 + warp * PQ + p;
        float sum = l[p];
        #pragma unroll
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (qi >= T) continue;
        bf16_t* yp = y + (((long long)b * T + qi) * nh + h) * HEAD_DIM + lane * PER;
        #pragma unroll
        for (int i = 0; i < PER; i++) yp[i] = f2bf(acc[p][i] / sum);
    }
}
