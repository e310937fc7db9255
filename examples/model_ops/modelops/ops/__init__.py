"""modelops' op package: one declaration per module; kernels in modelops/csrc/<name>/."""

import ops

PACKAGE = ops.op_package(__name__)
