"""What every native host (the torch extension, the ONNX Runtime library, the TensorRT plugin library) shares
about the framework-free kernels in csrc/: their generated calling convention (prototypes), the compilers and
the CUDA kernel objects built once for several libraries, ninja and what a build prints, the CPU ISA rule.
It sits between the core and the backends: it imports the core only, and no backend."""
