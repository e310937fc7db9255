import ops

ops.op_package(__name__)
