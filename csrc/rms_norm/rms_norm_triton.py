"""opforge::rms_norm's Triton kernel: the op's CUDA kernel when a build selects Triton (OPFORGE_CUDA_KERNELS=triton),
launched from C++ by the generated launcher; the launch description is in ops/library/rms_norm.py.

Same math as rms_norm_cuda.cu: the sum of squares in float32, inv = 1 / sqrt(mean + eps) rounded as CUDA's
1.0f / sqrtf does (div_rn, sqrt_rn), y = x * inv * w. ONE_PASS configs hold ROWS whole rows of up to BLOCK
columns in registers and read x once; the looping config takes any row length and reads x twice."""

import triton
import triton.language as tl


@triton.jit
def rms_norm_fwd(x, w, y, rows, cols, eps, BLOCK: tl.constexpr, ROWS: tl.constexpr, ONE_PASS: tl.constexpr):
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = r < rows
    base = r.to(tl.int64) * cols  # rows * cols may pass 2^31 elements
    if ONE_PASS:
        c = tl.arange(0, BLOCK)
        mask = row_ok[:, None] & (c < cols)[None, :]
        offs = base[:, None] + c[None, :]
        v = tl.load(x + offs, mask=mask, other=0.0).to(tl.float32)
        inv = tl.div_rn(1.0, tl.sqrt_rn(tl.sum(v * v, axis=1) / cols + eps))
        wv = tl.load(w + c, mask=c < cols, other=0.0).to(tl.float32)
        tl.store(y + offs, (v * inv[:, None] * wv[None, :]).to(y.dtype.element_ty), mask=mask)
    else:
        acc = tl.zeros((ROWS, BLOCK), tl.float32)
        for start in range(0, cols, BLOCK):
            c = start + tl.arange(0, BLOCK)
            mask = row_ok[:, None] & (c < cols)[None, :]
            v = tl.load(x + base[:, None] + c[None, :], mask=mask, other=0.0).to(tl.float32)
            acc += v * v
        inv = tl.div_rn(1.0, tl.sqrt_rn(tl.sum(acc, axis=1) / cols + eps))
        for start in range(0, cols, BLOCK):
            c = start + tl.arange(0, BLOCK)
            mask = row_ok[:, None] & (c < cols)[None, :]
            offs = base[:, None] + c[None, :]
            v = tl.load(x + offs, mask=mask, other=0.0).to(tl.float32)
            wv = tl.load(w + c, mask=c < cols, other=0.0).to(tl.float32)
            tl.store(y + offs, (v * inv[:, None] * wv[None, :]).to(y.dtype.element_ty), mask=mask)
