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
