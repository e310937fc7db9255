// Helpers the generated OpSpec sources (ops/trt/codegen.py) call; kept here so generated code stays
// short and every op shares one tested implementation.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "opforge_trt_plugin.h"

namespace opforge {
namespace trt {

// x.shape[i] as an expression; negative i counts from the end of the input's nbDims. Null when the
// input is absent or the index is out of range (the plugin logs it and returns an error).
inline const nvinfer1::IDimensionExpr* e_dim(const nvinfer1::DimsExprs* in, int32_t nb_in, int32_t input,
                                             int32_t index) {
  if (input >= nb_in) return nullptr;
  const int32_t i = index < 0 ? index + in[input].nbDims : index;
  if (i < 0 || i >= in[input].nbDims) return nullptr;
  return in[input].d[i];
}

inline const nvinfer1::IDimensionExpr* e_op(nvinfer1::IExprBuilder& eb, nvinfer1::DimensionOperation op,
                                            const nvinfer1::IDimensionExpr* a, const nvinfer1::IDimensionExpr* b) {
  if (a == nullptr || b == nullptr) return nullptr;
  return eb.operation(op, *a, *b);
}

// Compares the concrete dims of input `name` with its declared shape `rule`; unknown values (either side)
// always match. On a mismatch, opforge/host.h's message in *why.
inline bool shape_matches(const nvinfer1::Dims& got, const std::vector<KnownInt>& expect, const char* name,
                          const char* rule, std::string* why) {
  int64_t dims[nvinfer1::Dims::MAX_DIMS] = {};
  const int32_t rank = got.nbDims < 0                          ? 0
                       : got.nbDims > nvinfer1::Dims::MAX_DIMS ? nvinfer1::Dims::MAX_DIMS
                                                               : got.nbDims;
  for (int32_t i = 0; i < rank; ++i) dims[i] = got.d[i];
  std::vector<int64_t> values(expect.size());
  std::unique_ptr<bool[]> known(new bool[expect.size() + 1]);
  for (size_t i = 0; i < expect.size(); ++i) {
    values[i] = expect[i].v;
    known[i] = expect[i].known;
  }
  host::Error e = host::check_shape(Host::kTensorRT, nullptr, name, dims, rank, values.data(),
                                    static_cast<int64_t>(expect.size()), rule, known.get());
  *why = e.message;
  return !e;
}

}  // namespace trt
}  // namespace opforge
