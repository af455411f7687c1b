# A steady GPU load for energy cross-checks: bf16 matrix products on GPU 0 for SECONDS seconds.
import sys, time, torch

seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
torch.cuda.synchronize()
t0 = time.time()
n = 0
while time.time() - t0 < seconds:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize()
    n += 20
dt = time.time() - t0
print(f"{n} matmuls in {dt:.2f} s, {2 * 8192**3 * n / dt / 1e12:.0f} TFLOP/s", file=sys.stderr)
