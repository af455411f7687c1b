// Element-wise work of a transformer layer, fused around the matrix products.

// out[0] = x + r (rounded to bf16, the residual stream) and out[1] = rms_norm(out[0]) * w, for
// `rows` rows of `n`. One block per row.
extern "C" __global__ void add_rms_norm(
    const bf16_t* __restrict__ x, const bf16_t* __restrict__ r, const bf16_t* __restrict__ w,
    bf16_t* __restrict__ out, int rows, int n, float eps)
{
    __shared__ float red[32];
    const long long row = blockIdx.x;
    const bf16_t* xp = x + row * n;
    const bf16_t* rp = r + row * n;
    bf16_t* sp = out + row * n;
    bf16_t* hp = out + (long long)rows * n + row * n;
    float ss = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const bf16_t s = f2bf(bf2f(xp[i]) + bf2f(rp[i]));
        sp[i] = s;
        const float f = bf2f(s);
        ss += f * f;
    }
    ss = block_sum(ss, red);
    const float inv = rsqrtf(ss / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) hp[i] = f2bf(bf2f(sp[i]) * inv * bf2f(w[i]));
}

// Word i of a row for add_rms_norm_v8: x + r rounded to bf16 into a (and stored at sp[i], the
// residual stream), its squares added to ss in order.
__device__ __forceinline__ void add_word(const uint4* __restrict__ xp, const uint4* __restrict__ rp,
                                         uint4* __restrict__ sp, int i, float* a, float& ss)
{
    float b[8];
    unpack8(xp[i], a);
    unpack8(rp[i], b);
    #pragma unroll
    for (int e = 0; e < 8; e++) a[e] = bf2f(f2bf(a[e] + b[e]));
    sp[i] = pack8(a);
    #pragma unroll
    for (int e = 0; e < 8; e++) ss += a[e] * a[e];
}

// Word i of the normalized row: a * inv * g, stored at hp[i].
__device__ __forceinline__ void norm_word(uint4* __restrict__ hp, int i, float* a, const float* g,
                                          float inv)
{
    #pragma unroll
    for (int e = 0; e < 8; e++) a[e] = a[e] * inv * g[e];
    hp[i] = pack8(a);
}

// add_rms_norm with 16-byte accesses (n a multiple of 8): the same arithmetic, eight elements at a
// time per thread. A thread's first eight sums and weights stay in registers between the two
// passes (all of a row's, where n / 8 <= blockDim.x), so the second pass reads nothing back.
extern "C" __global__ void add_rms_norm_v8(
    const bf16_t* __restrict__ x, const bf16_t* __restrict__ r, const bf16_t* __restrict__ w,
    bf16_t* __restrict__ out, int rows, int n, float eps)
{
    __shared__ float red[32];
    const long long row = blockIdx.x;
    const int n8 = n / 8;
    const uint4* xp = reinterpret_cast<const uint4*>(x + row * n);
    const uint4* rp = reinterpret_cast<const uint4*>(r + row * n);
    const uint4* wp = reinterpret_cast<const uint4*>(w);
    uint4* sp = reinterpret_cast<uint4*>(out + row * n);
    uint4* hp = reinterpret_cast<uint4*>(out + (long long)rows * n + row * n);
    const int i0 = threadIdx.x;
    float s0[8], g0[8];
    float ss = 0.f;
    if (i0 < n8) {
        add_word(xp, rp, sp, i0, s0, ss);
        unpack8(wp[i0], g0);
    }
    for (int i = i0 + blockDim.x; i < n8; i += blockDim.x) {
        float a[8];
        add_word(xp, rp, sp, i, a, ss);
    }
    ss = block_sum(ss, red);
    const float inv = rsqrtf(ss / (float)n + eps);
    if (i0 < n8) norm_word(hp, i0, s0, g0, inv);
    for (int i = i0 + blockDim.x; i < n8; i += blockDim.x) {
        float a[8], g[8];
        unpack8(sp[i], a);
        unpack8(wp[i], g);
        norm_word(hp, i, a, g, inv);
    }
}

// out[r, c] = silu(y[r, c]) * y[r, f + c] over rows of y = [gate | up], 2f wide.
extern "C" __global__ void silu_mul(const bf16_t* __restrict__ y, bf16_t* __restrict__ out,
                                    long long total, int f)
{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long row = i / f;
        const long long c = i - row * f;
        const float g = bf2f(y[row * 2 * f + c]);
        const float u = bf2f(y[row * 2 * f + f + c]);
        out[i] = f2bf(g / (1.f + __expf(-g)) * u);
    }
}

// silu_mul with 16-byte accesses (f a multiple of 8): `total8` groups of eight outputs, `f8`
// groups per row.
extern "C" __global__ void silu_mul_v8(const bf16_t* __restrict__ y, bf16_t* __restrict__ out,
                                       long long total8, int f8)
{
    const uint4* yv = reinterpret_cast<const uint4*>(y);
    uint4* ov = reinterpret_cast<uint4*>(out);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total8;
         i += (long long)gridDim.x * blockDim.x) {
        const long long row = i / f8;
        const long long c = i - row * f8;
        float g[8], u[8];
        unpack8(yv[row * 2 * f8 + c], g);
        unpack8(yv[row * 2 * f8 + f8 + c], u);
        #pragma unroll
        for (int e = 0; e < 8; e++) g[e] = g[e] / (1.f + __expf(-g[e])) * u[e];
        ov[i] = pack8(g);
    }
}

// Four bf16 values in one 8-byte word, to and from f32.
__device__ __forceinline__ void load4(const bf16_t* p, float* f) {
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    f[0] = __uint_as_float(u.x << 16); f[1] = __uint_as_float(u.x & 0xffff0000u);
    f[2] = __uint_as_float(u.y << 16); f[3] = __uint_as_float(u.y & 0xffff0000u);
}
__device__ __forceinline__ void store4(bf16_t* p, const float* f) {
    *reinterpret_cast<uint2*>(p) =
        make_uint2((unsigned int)f2bf(f[0]) | ((unsigned int)f2bf(f[1]) << 16),
                   (unsigned int)f2bf(f[2]) | ((unsigned int)f2bf(f[3]) << 16));
}

// Splits the fused projection y [B*T, (nh + 2 nkv) * hd] into heads: rotates queries and keys by
// their positions (tables cos/sin [context, hd/2]), writes queries to q [B, nh, T, hd] and keys and
// values into the caches [B, nkv, capacity, hd] at column offset + t (offset = *col when `col` is
// given: a step replayed from a CUDA graph). One work item per (row, head slot, P rotated pairs),
// taken grid-stride: a prefill of B*T rows would otherwise launch (nh + 2 nkv) * B*T tiny blocks.
// P = 4 (hd a multiple of 8) moves the pairs in 8- and 16-byte words; P = 1 one element at a time.
template <int P>
__device__ __forceinline__ void qkv_rope_cache_body(
    const bf16_t* __restrict__ y, const bf16_t* __restrict__ cos_t,
    const bf16_t* __restrict__ sin_t, const unsigned int* __restrict__ pos,
    bf16_t* __restrict__ q, bf16_t* __restrict__ kc, bf16_t* __restrict__ vc,
    const unsigned int* __restrict__ col_p, int T, int nh, int nkv, int hd, long long c_batch,
    long long c_head, int offset, int interleaved, int rows)
{
    const int half = hd / 2, slots = nh + 2 * nkv, groups = half / P;
    if (col_p) offset = (int)col_p[0];
    if ((long long)(offset + T) * hd > c_head) return;  // past the cache: never written
    const long long total = (long long)rows * slots * groups;
    for (long long w = blockIdx.x * (long long)blockDim.x + threadIdx.x; w < total;
         w += (long long)gridDim.x * blockDim.x) {
        const int i0 = (int)(w % groups) * P;
        const long long rs = w / groups;
        const int slot = (int)(rs % slots), row = (int)(rs / slots);
        const int b = row / T, t = row % T;
        const bf16_t* src = y + (long long)row * slots * hd + (long long)slot * hd;
        const long long col = (long long)(offset + t) * hd;
        if (slot >= nh + nkv) {
            bf16_t* dst = vc + b * c_batch + (long long)(slot - nh - nkv) * c_head + col;
            if (P == 4) {
                *reinterpret_cast<uint2*>(dst + i0) = *reinterpret_cast<const uint2*>(src + i0);
                *reinterpret_cast<uint2*>(dst + half + i0) =
                    *reinterpret_cast<const uint2*>(src + half + i0);
            } else {
                dst[i0] = src[i0];
                dst[i0 + half] = src[i0 + half];
            }
            continue;
        }
        const long long p = pos[row];
        bf16_t* dst = slot < nh ? q + (((long long)b * nh + slot) * T + t) * hd
                                : kc + b * c_batch + (long long)(slot - nh) * c_head + col;
        float c[4], s[4], x0[4], x1[4];
        if (P == 4) {
            load4(cos_t + p * half + i0, c);
            load4(sin_t + p * half + i0, s);
            if (interleaved) {
                float v[8];
                unpack8(*reinterpret_cast<const uint4*>(src + 2 * i0), v);
                #pragma unroll
                for (int k = 0; k < P; k++) { x0[k] = v[2 * k]; x1[k] = v[2 * k + 1]; }
            } else {
                load4(src + i0, x0);
                load4(src + half + i0, x1);
            }
        } else {
            c[0] = bf2f(cos_t[p * half + i0]);
            s[0] = bf2f(sin_t[p * half + i0]);
            const int a = interleaved ? 2 * i0 : i0, z = interleaved ? 2 * i0 + 1 : i0 + half;
            x0[0] = bf2f(src[a]);
            x1[0] = bf2f(src[z]);
        }
        float r0[4], r1[4];
        #pragma unroll
        for (int k = 0; k < P; k++) {
            r0[k] = x0[k] * c[k] - x1[k] * s[k];
            r1[k] = x0[k] * s[k] + x1[k] * c[k];
        }
        if (P == 4) {
            if (interleaved) {
                float v[8];
                #pragma unroll
                for (int k = 0; k < P; k++) { v[2 * k] = r0[k]; v[2 * k + 1] = r1[k]; }
                *reinterpret_cast<uint4*>(dst + 2 * i0) = pack8(v);
            } else {
                store4(dst + i0, r0);
                store4(dst + half + i0, r1);
            }
        } else {
            const int a = interleaved ? 2 * i0 : i0, z = interleaved ? 2 * i0 + 1 : i0 + half;
            dst[a] = f2bf(r0[0]);
            dst[z] = f2bf(r1[0]);
        }
    }
}

#define QKV_ARGS                                                                                 \
    const bf16_t* __restrict__ y, const bf16_t* __restrict__ cos_t,                              \
        const bf16_t* __restrict__ sin_t, const unsigned int* __restrict__ pos,                  \
        bf16_t* __restrict__ q, bf16_t* __restrict__ kc, bf16_t* __restrict__ vc,                \
        const unsigned int* __restrict__ col_p, int T, int nh, int nkv, int hd,                  \
        long long c_batch, long long c_head, int offset, int interleaved, int rows
#define QKV_PASS y, cos_t, sin_t, pos, q, kc, vc, col_p, T, nh, nkv, hd, c_batch, c_head, offset, \
    interleaved, rows

extern "C" __global__ void qkv_rope_cache(QKV_ARGS) { qkv_rope_cache_body<1>(QKV_PASS); }
extern "C" __global__ void qkv_rope_cache_v4(QKV_ARGS) { qkv_rope_cache_body<4>(QKV_PASS); }

// Moves a step replayed from a CUDA graph on by one cache column: the column itself, every
// sequence's rotary position `pos [b]` and, when given, the sampling step.
extern "C" __global__ void next_column(unsigned int* __restrict__ col,
                                       unsigned int* __restrict__ pos, int b,
                                       unsigned long long* __restrict__ step)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < b) pos[i] += 1;
    if (i == 0) {
        col[0] += 1;
        if (step) step[0] += 1;
    }
}
