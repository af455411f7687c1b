// Asks the L2 cache for the first `head` bytes of each of `rows` rows `pitch` bytes apart from
// `base`, one request per `step` bytes; `keep` marks the lines to be evicted last. Nothing is
// read into the SMs: the requests go on after the kernel ends.
extern "C" __global__ void l2_prefetch(const char* __restrict__ base, long long rows,
                                       long long pitch, long long head, int step, int keep)
{
    const long long per_row = (head + step - 1) / step;
    const long long total = rows * per_row;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long r = i / per_row;
        const char* p = base + r * pitch + (i - r * per_row) * step;
        if (keep) asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(p));
        else asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
    }
}
