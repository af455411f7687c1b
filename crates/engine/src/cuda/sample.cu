// Temperature and top-p sampling, one block per row of logits [B, V] (f32 or bf16: a decode
// step samples the output head's bf16 logits as they are).
//
// The top-p threshold is found by bisection over probabilities (as the tensor version does), then
// a token is drawn from the kept set by Gumbel-max. The noise of (seed, step, row, column) comes
// from a SplitMix64 hash, so a seed gives the same tokens on every run.

__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#define BISECTION_STEPS 20  // even: each pass below takes two

// block_sum of three values at once, without its first barrier: consecutive calls alternate
// between two buffers (`shared`: 3 * 32 floats each), and a warp that writes one cannot be a whole
// call ahead of a warp still reading the other. Each value is summed in block_sum's order.
__device__ __forceinline__ void block_sum3_alternating(float* v, float* shared) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        #pragma unroll
        for (int j = 0; j < 3; j++) v[j] += __shfl_xor_sync(0xffffffffu, v[j], o);
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        #pragma unroll
        for (int j = 0; j < 3; j++) shared[32 * j + warp] = v[j];
    }
    __syncthreads();
    #pragma unroll
    for (int j = 0; j < 3; j++) v[j] = lane < (int)(blockDim.x / 32) ? shared[32 * j + lane] : 0.f;
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        #pragma unroll
        for (int j = 0; j < 3; j++) v[j] += __shfl_xor_sync(0xffffffffu, v[j], o);
    }
}

// The Gumbel-max score of column i: its scaled logit z plus the noise of (key, i).
__device__ __forceinline__ float gumbel_score(float z, unsigned long long key, int i) {
    const unsigned long long h = mix64(key ^ (unsigned long long)i);
    const float u = ((float)(h >> 41) + 0.5f) * (1.f / 8388608.f);  // (0, 1)
    return z - logf(-logf(u));
}

__device__ __forceinline__ float logit(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float logit(const bf16_t* p, long long i) { return bf2f(p[i]); }

// R > 0: each thread keeps the probabilities of its R logits (columns tid, tid + blockDim, ...)
// in registers, so that the bisection passes read no memory and compute no exponentials (V must
// be at most R * blockDim); R = 0 recomputes them from the logits on every pass. Both give the
// same values, sums and tokens.
template <int R, typename T>
__device__ __forceinline__ void sample_body(
    const T* __restrict__ logits, unsigned int* __restrict__ out, int V, float inv_t,
    float top_p, unsigned long long seed, unsigned long long step,
    const unsigned long long* __restrict__ step_p)
{
    if (step_p) step = step_p[0];  // a step replayed from a CUDA graph
    __shared__ float red[32];
    __shared__ float masses[2][3 * 32];
    __shared__ float best_v[32];
    __shared__ int best_i[32];
    const long long row = blockIdx.x;
    const T* lp = logits + row * V;
    float e[R > 0 ? R : 1];
    float m = NEG_INF;
    if (R > 0) {
        #pragma unroll
        for (int k = 0; k < R; k++) {
            const int i = threadIdx.x + k * blockDim.x;
            e[k] = i < V ? logit(lp, i) * inv_t : NEG_INF;
            m = fmaxf(m, e[k]);
        }
    } else {
        for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, logit(lp, i) * inv_t);
    }
    m = block_max(m, red);
    float s = 0.f;
    if (R > 0) {
        #pragma unroll
        for (int k = 0; k < R; k++) {
            const int i = threadIdx.x + k * blockDim.x;
            e[k] = i < V ? expf(e[k] - m) : 0.f;
            s += e[k];  // adding the zeros of columns past V changes no sum
        }
    } else {
        for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(logit(lp, i) * inv_t - m);
    }
    s = block_sum(s, red);
    const float inv_s = 1.f / s;
    if (R > 0) {
        #pragma unroll
        for (int k = 0; k < R; k++) e[k] *= inv_s;  // probabilities from here on
    }
    // Bisection over the threshold: the largest `lo` whose kept probabilities (those >= lo) add
    // up to top_p. Each pass takes two steps: it sums the mass at the midpoint and at the
    // midpoints of both halves, one of which the second step then bisects at (the same
    // thresholds, decisions and sums as one step a pass, in half the block reductions).
    float lo = 0.f, hi = inv_s;
    if (top_p < 1.f) {
        for (int it = 0; it < BISECTION_STEPS; it += 2) {
            const float mid = 0.5f * (lo + hi);
            const float mid_lo = 0.5f * (lo + mid), mid_hi = 0.5f * (mid + hi);
            float mass[3] = {0.f, 0.f, 0.f};  // at mid, mid_lo and mid_hi
            if (R > 0) {
                #pragma unroll
                for (int k = 0; k < R; k++) {
                    const float p = e[k];  // mid_lo > 0: columns past V never count
                    if (p >= mid) mass[0] += p;
                    if (p >= mid_lo) mass[1] += p;
                    if (p >= mid_hi) mass[2] += p;
                }
            } else {
                for (int i = threadIdx.x; i < V; i += blockDim.x) {
                    const float p = expf(logit(lp, i) * inv_t - m) * inv_s;
                    if (p >= mid) mass[0] += p;
                    if (p >= mid_lo) mass[1] += p;
                    if (p >= mid_hi) mass[2] += p;
                }
            }
            block_sum3_alternating(mass, masses[(it / 2) & 1]);
            if (mass[0] >= top_p) {
                lo = mid;
                if (mass[2] >= top_p) lo = mid_hi; else hi = mid_hi;
            } else {
                hi = mid;
                if (mass[1] >= top_p) lo = mid_lo; else hi = mid_lo;
            }
        }
    }
    const unsigned long long key = mix64(seed ^ mix64(step ^ mix64((unsigned long long)row)));
    float bv = NEG_INF;
    int bi = 0x7fffffff;
    if (R > 0) {
        // Which of the thread's columns are kept, as bits, so that the cached values are dead
        // before the noise is drawn.
        unsigned long long kept = 0;
        #pragma unroll
        for (int k = 0; k < R; k++) {
            const int i = threadIdx.x + k * blockDim.x;
            if (i < V && !(top_p < 1.f && e[k] < lo)) kept |= 1ull << k;
        }
        while (kept) {
            const int k = __ffsll((long long)kept) - 1;
            kept &= kept - 1;
            const int i = threadIdx.x + k * blockDim.x;
            const float score = gumbel_score(logit(lp, i) * inv_t, key, i);
            if (score > bv) { bv = score; bi = i; }
        }
    } else {
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            const float z = logit(lp, i) * inv_t;
            if (top_p < 1.f && expf(z - m) * inv_s < lo) continue;
            const float score = gumbel_score(z, key, i);
            if (score > bv) { bv = score; bi = i; }
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) { best_v[warp] = bv; best_i[warp] = bi; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x / 32); w++)
            if (best_v[w] > bv || (best_v[w] == bv && best_i[w] < bi)) { bv = best_v[w]; bi = best_i[w]; }
        out[row] = bi == 0x7fffffff ? 0 : bi;
    }
}

#define SAMPLE_ARGS(T)                                                                           \
    const T* __restrict__ logits, unsigned int* __restrict__ out, int V, float inv_t,            \
        float top_p, unsigned long long seed, unsigned long long step,                           \
        const unsigned long long* __restrict__ step_p
#define SAMPLE_PASS logits, out, V, inv_t, top_p, seed, step, step_p

extern "C" __global__ void __launch_bounds__(1024) sample_top_p(SAMPLE_ARGS(float))
{
    sample_body<0>(SAMPLE_PASS);
}

extern "C" __global__ void __launch_bounds__(1024) sample_top_p_bf16(SAMPLE_ARGS(bf16_t))
{
    sample_body<0>(SAMPLE_PASS);
}

// Vocabularies of up to 32 * blockDim (32,768 with 1,024 threads).
extern "C" __global__ void __launch_bounds__(1024) sample_top_p_r32(SAMPLE_ARGS(float))
{
    sample_body<32>(SAMPLE_PASS);
}

extern "C" __global__ void __launch_bounds__(1024) sample_top_p_r32_bf16(SAMPLE_ARGS(bf16_t))
{
    sample_body<32>(SAMPLE_PASS);
}
