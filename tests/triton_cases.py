"""The Triton kernel the launch-description and AOT tests share (tests/test_triton_launch.py,
tests/native/test_triton.py): y = x * alpha (+ b where the optional input b is given), and its launch."""

from ops import TritonConfig


def axpb(name: str = "axpb") -> str:
    """The kernel file's text, the @triton.jit function called `name`."""
    return f"""import triton
import triton.language as tl


@triton.jit
def {name}(x, b, y, n, has_b, alpha, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    v = tl.load(x + offs, mask=m).to(tl.float32) * alpha
    if has_b:
        v += tl.load(b + offs, mask=m).to(tl.float32)
    tl.store(y + offs, v.to(y.dtype.element_ty), mask=m)
"""


def axpb_launch(name: str = "axpb") -> dict:
    """Its launch description's fields (ops.Triton(**...))."""
    return dict(
        kernel=name,
        args={"x": "x", "b": "b", "y": "y", "n": "numel(x)", "has_b": "present(b)", "alpha": "alpha"},
        grid=["ceil_div(numel(x), BLOCK)"],
        key="numel(x)",
        configs=[TritonConfig(BLOCK=256, num_warps=2, max_key=256), TritonConfig(BLOCK=1024)],
        int64=("n",),
    )
