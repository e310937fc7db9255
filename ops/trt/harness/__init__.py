"""The plugin host harness: drives a built plugin library through TensorRT's `IPluginV3` interfaces without
the TensorRT library (harness.cpp plays TensorRT's side; host.py loads it with ctypes).

It proves that a plugin honours the interface as the 10.x headers define it (fields, output shapes, formats,
configure, serialization, clones, and `enqueue` numerics on a GPU), not that TensorRT accepted the plugin in
an engine build: that needs TensorRT itself (`ops.build_engine`, trtexec). `ops.check` and the tests both
use it from here."""
