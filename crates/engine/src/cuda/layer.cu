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

// Splits the fused projection y [B*T, (nh + 2 nkv) * hd] into heads: rotates queries and keys by
// their positions (tables cos/sin [context, hd/2]), writes queries to q [B, nh, T, hd] and keys and
// values into the caches [B, nkv, capacity, hd] at column offset + t (offset = *col when `col` is
// given: a step replayed from a CUDA graph). Grid (nh + 2 nkv, B*T), hd/2 threads, one per
// rotated pair.
extern "C" __global__ void qkv_rope_cache(
    const bf16_t* __restrict__ y, const bf16_t* __restrict__ cos_t,
    const bf16_t* __restrict__ sin_t, const unsigned int* __restrict__ pos,
    bf16_t* __restrict__ q, bf16_t* __restrict__ kc, bf16_t* __restrict__ vc,
    const unsigned int* __restrict__ col_p, int T, int nh, int nkv, int hd, long long c_batch,
    long long c_head, int offset, int interleaved)
{
    const int slot = blockIdx.x, row = blockIdx.y, i = threadIdx.x, half = hd / 2;
    const int b = row / T, t = row % T;
    if (col_p) offset = (int)col_p[0];
    if ((long long)(offset + T) * hd > c_head) return;  // past the cache: never written
    const bf16_t* src = y + (long long)row * (nh + 2 * nkv) * hd + (long long)slot * hd;
    const long long col = (long long)(offset + t) * hd;
    if (slot >= nh + nkv) {
        bf16_t* dst = vc + b * c_batch + (long long)(slot - nh - nkv) * c_head + col;
        dst[i] = src[i];
        dst[i + half] = src[i + half];
        return;
    }
    const long long p = pos[row];
    const float c = bf2f(cos_t[p * half + i]), s = bf2f(sin_t[p * half + i]);
    const int a = interleaved ? 2 * i : i, z = interleaved ? 2 * i + 1 : i + half;
    const float x0 = bf2f(src[a]), x1 = bf2f(src[z]);
    bf16_t* dst = slot < nh ? q + (((long long)b * nh + slot) * T + t) * hd
                            : kc + b * c_batch + (long long)(slot - nh) * c_head + col;
    dst[a] = f2bf(x0 * c - x1 * s);
    dst[z] = f2bf(x0 * s + x1 * c);
}

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
