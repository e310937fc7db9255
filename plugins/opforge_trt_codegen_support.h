// Helpers the generated OpSpec sources (ops/trt/codegen.py) call; kept here so generated code stays
// short and every op shares one tested implementation.
#pragma once

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

// Compares concrete dims with an expected shape; unknown values (either side) always match.
inline bool shape_matches(const nvinfer1::Dims& got, const std::vector<KnownInt>& expect, std::string* why) {
  std::string e = "[", g = "[";
  for (size_t i = 0; i < expect.size(); ++i)
    e += (i ? ", " : "") + (expect[i].known ? std::to_string(expect[i].v) : std::string("?"));
  for (int32_t i = 0; i < got.nbDims && i < nvinfer1::Dims::MAX_DIMS; ++i)
    g += (i ? ", " : "") + (got.d[i] >= 0 ? std::to_string(got.d[i]) : std::string("?"));
  *why = e + "], got " + g + "]";
  if (got.nbDims != static_cast<int32_t>(expect.size())) return false;
  for (int32_t i = 0; i < got.nbDims; ++i) {
    if (expect[i].known && got.d[i] >= 0 && got.d[i] != expect[i].v) return false;
  }
  return true;
}

}  // namespace trt
}  // namespace opforge
