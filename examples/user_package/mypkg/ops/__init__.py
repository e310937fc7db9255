"""mypkg's op package: each module here declares one op; kernels live in mypkg/csrc/<name>/."""

import ops

PACKAGE = ops.op_package(__name__)  # imports the declarations below and loads mypkg/ops/_C
