// Reads `n` 16-byte words and folds them, so that the loads are kept: fills the L2 cache with
// clean lines of a buffer that no product reads, as the weights of other products fill it in a
// decode step (a write would leave dirty lines behind, whose write-backs a timed product would
// compete with).
extern "C" __global__ void l2_fill_read(const uint4* __restrict__ p, long long n,
                                        unsigned int* __restrict__ out)
{
    unsigned int acc = 0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const uint4 a = p[i];
        acc ^= a.x ^ a.y ^ a.z ^ a.w;
    }
    if (acc == 0x9e3779b9u) out[0] = acc;
}
