// Runtime support for the generated ONNX Runtime glue (<build>/opforge/<package>/ort/gen/*_ort.cpp).
//
// Each op's glue is generated from its declaration; this header holds what every op's glue shares:
// the OrtCustomOp adapter (one per op, execution provider and dtype variant), reading attributes exactly
// as the model stores them, validating ORT tensors against the declaration with messages that name the op,
// the argument, what was expected, what was given and the fix; turning OrtValues into opforge::TensorView;
// memory from ORT's allocator (workspace, upper-bound buffers of data-dependent outputs); ORT's intra-op
// thread pool as DeviceContext::parallel_run. Only the files of opforge/ort/ and generated code see the ORT C API.
//
// Errors never cross the C ABI as exceptions: the glue throws opforge::ort::Error, and the entry points
// ORT calls (CreateKernelV2, KernelComputeV2) turn it into an OrtStatus, so a bad input is a clean
// ORT error (Python: onnxruntime's Fail/InvalidArgument exception), never a crash.
//
// The parts: api.h (the API table, Error, dtypes), attributes.h, call.h (the kernel of one node and one
// run of it), custom_op.h (the OrtCustomOp adapter and registration). The checks and messages the three
// hosts share are opforge/host.h's.
#pragma once

#include "opforge/ort/api.h"
#include "opforge/ort/attributes.h"
#include "opforge/ort/call.h"
#include "opforge/ort/custom_op.h"
