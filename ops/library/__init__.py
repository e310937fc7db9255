"""opforge's built-in ops: an op package like any user's (see ops.core.packages), one declaration module each,
kernels under csrc/<name>/. Adding an op means adding a module here and its kernels, nothing else.

Its artefacts keep their historical names: the extension `ops._C` and `libopforge_trt_plugins.so`."""

from ..core.discovery import op_package

PACKAGE = op_package(__name__, extension="ops._C", plugin_library="opforge_trt_plugins")
