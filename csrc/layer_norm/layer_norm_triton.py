"""opforge::layer_norm's Triton kernel: the op's CUDA kernel when a build selects Triton
(OPFORGE_CUDA_KERNELS=triton), launched from C++ by the generated launcher; the launch description is in
ops/library/layer_norm.py.

Same math as layer_norm_cuda.cu: the mean in float32, then the mean of squared deviations from it (two
passes, no E[x^2] - E[x]^2 cancellation), rstd = 1 / sqrt(var + eps) rounded as CUDA's 1.0f / sqrtf does
(div_rn, sqrt_rn), y = (x - mean) * rstd * w (+ b). `b` is a null pointer when the op has no bias and has_bias
(a runtime int, 1 or 0) says which; it is only read under has_bias. ONE_PASS configs hold ROWS whole rows of
up to BLOCK columns in registers and read x once; the looping config takes any row length and reads x three
times."""

import triton
import triton.language as tl


@triton.jit
def layer_norm_fwd(
    x, w, b, y, rows, cols, eps, has_bias, BLOCK: tl.constexpr, ROWS: tl.constexpr, ONE_PASS: tl.constexpr
):
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_ok = r < rows
    base = r.to(tl.int64) * cols  # rows * cols may pass 2^31 elements
    if ONE_PASS:
        c = tl.arange(0, BLOCK)
        col_ok = c < cols
        mask = row_ok[:, None] & col_ok[None, :]
        offs = base[:, None] + c[None, :]
        v = tl.load(x + offs, mask=mask, other=0.0).to(tl.float32)
        mean = tl.sum(v, axis=1) / cols
        d = tl.where(mask, v - mean[:, None], 0.0)  # padding lanes must not add (0 - mean)^2
        rstd = tl.div_rn(1.0, tl.sqrt_rn(tl.sum(d * d, axis=1) / cols + eps))
        wv = tl.load(w + c, mask=col_ok, other=0.0).to(tl.float32)
        out = d * rstd[:, None] * wv[None, :]
        if has_bias != 0:
            out += tl.load(b + c, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        tl.store(y + offs, out.to(y.dtype.element_ty), mask=mask)
    else:
        acc = tl.zeros((ROWS, BLOCK), tl.float32)
        for start in range(0, cols, BLOCK):
            c = start + tl.arange(0, BLOCK)
            mask = row_ok[:, None] & (c < cols)[None, :]
            acc += tl.load(x + base[:, None] + c[None, :], mask=mask, other=0.0).to(tl.float32)
        mean = tl.sum(acc, axis=1) / cols
        acc = tl.zeros((ROWS, BLOCK), tl.float32)
        for start in range(0, cols, BLOCK):
            c = start + tl.arange(0, BLOCK)
            mask = row_ok[:, None] & (c < cols)[None, :]
            v = tl.load(x + base[:, None] + c[None, :], mask=mask, other=0.0).to(tl.float32)
            d = tl.where(mask, v - mean[:, None], 0.0)
            acc += d * d
        rstd = tl.div_rn(1.0, tl.sqrt_rn(tl.sum(acc, axis=1) / cols + eps))
        for start in range(0, cols, BLOCK):
            c = start + tl.arange(0, BLOCK)
            col_ok = c < cols
            mask = row_ok[:, None] & col_ok[None, :]
            offs = base[:, None] + c[None, :]
            v = tl.load(x + offs, mask=mask, other=0.0).to(tl.float32)
            wv = tl.load(w + c, mask=col_ok, other=0.0).to(tl.float32)
            out = (v - mean[:, None]) * rstd[:, None] * wv[None, :]
            if has_bias != 0:
                out += tl.load(b + c, mask=col_ok, other=0.0).to(tl.float32)[None, :]
            tl.store(y + offs, out.to(y.dtype.element_ty), mask=mask)
