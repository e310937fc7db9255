"""What the library's row-normalization ops (rms_norm, layer_norm) share about their Triton kernels: the candidate
configurations by row length. Their kernels have the same meta-parameters (BLOCK, ROWS, ONE_PASS): one-pass configs
hold a whole row (valid up to BLOCK elements, the tightest fit is the default; per row length the Triton tutorials'
warp count first, one alternative), and a looping config takes rows longer than 16384."""

from ops import TritonConfig


def _one_pass(block, rows, num_warps):
    return TritonConfig(BLOCK=block, ROWS=rows, ONE_PASS=True, num_warps=num_warps, max_key=block)


ROW_CONFIGS = (
    _one_pass(64, 16, 4),
    _one_pass(256, 8, 4),
    _one_pass(1024, 2, 4),
    _one_pass(1024, 4, 8),
    _one_pass(2048, 1, 4),
    _one_pass(2048, 2, 8),
    _one_pass(4096, 1, 8),
    _one_pass(4096, 1, 16),
    _one_pass(8192, 1, 8),
    _one_pass(8192, 1, 16),
    _one_pass(16384, 1, 8),
    _one_pass(16384, 1, 16),
    TritonConfig(BLOCK=2048, ROWS=1, ONE_PASS=False, num_warps=8),
)
