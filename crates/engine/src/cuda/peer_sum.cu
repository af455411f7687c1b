// One-shot all-reduce of bf16 values over the GPUs of one process, through peer memory (NVLink):
// every rank copies its values into its own buffer, tells every rank (a flag per block and
// source rank, written into the reader's memory), waits for every rank's flag, then reads the
// same slice from every rank's buffer and adds them in f32 in rank order, so that every rank gets
// the same sums. Each rank's buffer has two halves used in turn: a rank can only write a half
// again after every rank has flagged the call in between, by which time every rank has finished
// reading that half. Block b of every rank always handles the same slice and the same flags.
#define MAX_RANKS 8

__device__ __forceinline__ void store_release(unsigned int* p, unsigned int v) {
    asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ unsigned int load_acquire(const unsigned int* p) {
    unsigned int v;
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ unsigned long long now_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ __forceinline__ void add8(float* acc, uint4 v) {
    acc[0] += __uint_as_float(v.x << 16); acc[1] += __uint_as_float(v.x & 0xffff0000u);
    acc[2] += __uint_as_float(v.y << 16); acc[3] += __uint_as_float(v.y & 0xffff0000u);
    acc[4] += __uint_as_float(v.z << 16); acc[5] += __uint_as_float(v.z & 0xffff0000u);
    acc[6] += __uint_as_float(v.w << 16); acc[7] += __uint_as_float(v.w & 0xffff0000u);
}

__device__ __forceinline__ unsigned int pack2(float lo, float hi) {
    return (unsigned int)f2bf(lo) | ((unsigned int)f2bf(hi) << 16);
}

// in, out: n_vec vectors of 8 bf16. table[p] (p < world): rank p's buffer, 2 * cap_vec vectors;
// table[world + p]: rank p's flags, gridDim.x * MAX_RANKS u32. counters: this rank's call count
// per block.
extern "C" __global__ void peer_sum(
    const uint4* __restrict__ in, uint4* __restrict__ out,
    const unsigned long long* __restrict__ table, unsigned int* __restrict__ counters,
    int rank, int world, long long n_vec, long long cap_vec)
{
    __shared__ unsigned int shared_count;
    const int b = blockIdx.x;
    if (threadIdx.x == 0) shared_count = counters[b] + 1;
    __syncthreads();
    const unsigned int count = shared_count;
    const long long half = (long long)(count & 1u) * cap_vec;
    const long long per = (n_vec + gridDim.x - 1) / gridDim.x;
    const long long lo = (long long)b * per, hi = min(n_vec, lo + per);
    uint4* mine = reinterpret_cast<uint4*>(table[rank]) + half;
    for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) mine[i] = in[i];
    __threadfence_system();
    __syncthreads();
    if (threadIdx.x < world) {
        unsigned int* flags = reinterpret_cast<unsigned int*>(table[world + threadIdx.x]);
        store_release(flags + b * MAX_RANKS + rank, count);
        const unsigned int* mine_f =
            reinterpret_cast<const unsigned int*>(table[world + rank]) + b * MAX_RANKS + threadIdx.x;
        const unsigned long long start = now_ns();
        while ((int)(load_acquire(mine_f) - count) < 0) {
            // A rank that never comes (it failed) must not hang this one: fail after 30 s.
            if (now_ns() - start > 30000000000ull) __trap();
        }
    }
    __syncthreads();
    for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        for (int p = 0; p < world; p++) {
            add8(acc, __ldcg(reinterpret_cast<const uint4*>(table[p]) + half + i));
        }
        out[i] = make_uint4(pack2(acc[0], acc[1]), pack2(acc[2], acc[3]),
                            pack2(acc[4], acc[5]), pack2(acc[6], acc[7]));
    }
    if (threadIdx.x == 0) counters[b] = count;
}
