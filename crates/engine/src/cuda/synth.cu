// Synthetic weights computed where they are used (see synthetic.rs for the definition): every
// element is SplitMix64 output number k of its chunk's stream, reached in one step, turned into a
// uniform value, rounded to the dtype and optionally scaled in the dtype's arithmetic. The float
// steps use explicitly rounded intrinsics so that no multiply-add is fused: the values equal the
// CPU's bit for bit.
#define GAMMA 0x9E3779B97F4A7C15ull

__device__ __forceinline__ unsigned short f2h(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ unsigned long long mix(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ float synth_value(unsigned long long tseed, unsigned long long index,
                                             float a) {
    const unsigned long long start = tseed ^ ((index >> CHUNK_BITS) << CHUNK_BITS);
    const unsigned long long k = index & ((1ull << CHUNK_BITS) - 1ull);
    const unsigned long long z = mix(start + (k + 1ull) * GAMMA);
    const double u = __dmul_rn((double)(z >> 11), 1.0 / 9007199254740992.0);
    const float f = __double2float_rn(u);
    return __fmul_rn(__fsub_rn(__fmul_rn(f, 2.0f), 1.0f), a);
}

// Rows [0, rows) of the part go to out rows [out_row, out_row + rows), `cols` wide; element
// (r, c) is element (row0 + r) * width + col0 + c of the tensor. dtype: 0 bf16, 1 f16, 2 f32.
// `scale` holds the scale's bits in the dtype when `scaled` is set.
extern "C" __global__ void synth(
    void* __restrict__ out, int dtype, long long out_row, long long rows, long long cols,
    long long row0, long long col0, long long width, unsigned long long tseed, float a,
    unsigned int scale, int scaled)
{
    const long long total = rows * cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long r = i / cols, c = i - r * cols;
        const unsigned long long index =
            (unsigned long long)((row0 + r) * width + col0 + c);
        const float v = synth_value(tseed, index, a);
        const long long o = (out_row + r) * cols + c;
        if (dtype == 0) {
            bf16_t x = f2bf(v);
            if (scaled) {
                x = f2bf(__fmul_rn(bf2f(x), bf2f((bf16_t)scale)));
                x = f2bf(__fadd_rn(bf2f(x), 0.0f));
            }
            ((bf16_t*)out)[o] = x;
        } else if (dtype == 1) {
            unsigned short x = f2h(v);
            if (scaled) {
                x = f2h(__fmul_rn(h2f(x), h2f((unsigned short)scale)));
                x = f2h(__fadd_rn(h2f(x), 0.0f));
            }
            ((unsigned short*)out)[o] = x;
        } else {
            float x = v;
            if (scaled) x = __fadd_rn(__fmul_rn(x, __uint_as_float(scale)), 0.0f);
            ((float*)out)[o] = x;
        }
    }
}
