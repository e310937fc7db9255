// Deploying an opforge model from C++: ONNX Runtime + the generated custom-op library, no Python.
//
//   ort_run_model MODEL.onnx LIBRARY.so INPUTS.bin EXPECTED.bin [RTOL ATOL]
//
// Loads MODEL.onnx (exported with ops.export_onnx), registers the op package's native library
// (libopforge_ort_ops.so; built by `python -m ops.ort.build`), feeds the tensors of INPUTS.bin to the
// graph inputs in order, runs it, and compares every output with the tensors of EXPECTED.bin (values
// computed by torch) within |got - want| <= ATOL + RTOL * |want|. Exit status 0 when all match.
//
// The .bin files are a sequence of tensors, each: int32 ONNX element type, int32 rank, int64 dims[rank],
// then the raw little-endian data (tests/ort/test_cpp_example.py writes them).
//
// Environment: OPFORGE_RUN_OUTPUTS=PATH writes the outputs to PATH in the same format (to compare two
// machines' runs; tests/jetson); OPFORGE_RUN_REPEAT=N runs the model N more times and prints the median
// time of one run (on a Jetson: the number to look at; under emulation: only ratios mean anything).
//
// Build (tests do it through `python -m ops.ort.build --example`):
//   g++ -std=c++17 -I<ort headers> run_model.cpp -o ort_run_model
//   <site-packages>/onnxruntime/capi/libonnxruntime.so.1.32.0
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Tensor {
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> dims;
  std::vector<char> data;
};

size_t element_size(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return 4;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return 2;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return 8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return 1;
    default: throw std::runtime_error("unsupported element type " + std::to_string(static_cast<int>(t)));
  }
}

std::vector<Tensor> read_tensors(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(std::string("cannot open ") + path);
  std::vector<Tensor> out;
  int32_t type = 0;
  while (in.read(reinterpret_cast<char*>(&type), sizeof type)) {
    Tensor t;
    t.type = static_cast<ONNXTensorElementDataType>(type);
    int32_t rank = 0;
    in.read(reinterpret_cast<char*>(&rank), sizeof rank);
    t.dims.resize(static_cast<size_t>(rank));
    in.read(reinterpret_cast<char*>(t.dims.data()), static_cast<std::streamsize>(rank * sizeof(int64_t)));
    size_t n = 1;
    for (int64_t d : t.dims) n *= static_cast<size_t>(d);
    t.data.resize(n * element_size(t.type));
    in.read(t.data.data(), static_cast<std::streamsize>(t.data.size()));
    if (!in) throw std::runtime_error(std::string("truncated tensor file ") + path);
    out.push_back(std::move(t));
  }
  return out;
}

// Element i of a tensor as double, whatever its storage type.
double value(ONNXTensorElementDataType type, const void* data, size_t i) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return static_cast<const float*>(data)[i];
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return static_cast<const double*>(data)[i];
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return static_cast<const int32_t*>(data)[i];
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return static_cast<double>(static_cast<const int64_t*>(data)[i]);
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return Ort::Float16_t::FromBits(static_cast<const uint16_t*>(data)[i]).ToFloat();
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
      return Ort::BFloat16_t::FromBits(static_cast<const uint16_t*>(data)[i]).ToFloat();
    default: return static_cast<const uint8_t*>(data)[i];
  }
}

int run(int argc, char** argv) {
  if (argc != 5 && argc != 7) {
    std::fprintf(stderr, "usage: %s MODEL.onnx LIBRARY.so INPUTS.bin EXPECTED.bin [RTOL ATOL]\n", argv[0]);
    return 2;
  }
  const double rtol = argc == 7 ? std::stod(argv[5]) : 1e-5;
  const double atol = argc == 7 ? std::stod(argv[6]) : 1e-6;
  std::vector<Tensor> inputs = read_tensors(argv[3]);
  const std::vector<Tensor> expected = read_tensors(argv[4]);

  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "opforge-example");
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(2);
  options.RegisterCustomOpsLibrary(argv[2]);  // calls the library's RegisterCustomOps
  Ort::Session session(env, argv[1], options);
  std::printf("ONNX Runtime %s, model %s, %zu inputs, %zu outputs\n", Ort::GetVersionString().c_str(), argv[1],
              session.GetInputCount(), session.GetOutputCount());

  Ort::AllocatorWithDefaultOptions allocator;
  std::vector<Ort::AllocatedStringPtr> name_storage;
  std::vector<const char*> input_names, output_names;
  for (size_t i = 0; i < session.GetInputCount(); ++i) {
    name_storage.push_back(session.GetInputNameAllocated(i, allocator));
    input_names.push_back(name_storage.back().get());
  }
  for (size_t i = 0; i < session.GetOutputCount(); ++i) {
    name_storage.push_back(session.GetOutputNameAllocated(i, allocator));
    output_names.push_back(name_storage.back().get());
  }
  if (inputs.size() != input_names.size())
    throw std::runtime_error("the model has " + std::to_string(input_names.size()) + " inputs, the file " +
                             std::to_string(inputs.size()));

  const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<Ort::Value> feeds;
  for (Tensor& t : inputs)
    feeds.push_back(Ort::Value::CreateTensor(cpu, t.data.data(), t.data.size(), t.dims.data(), t.dims.size(), t.type));
  std::vector<Ort::Value> outputs = session.Run(Ort::RunOptions{nullptr}, input_names.data(), feeds.data(),
                                                feeds.size(), output_names.data(), output_names.size());
  if (const char* repeat = std::getenv("OPFORGE_RUN_REPEAT"); repeat != nullptr && std::atoi(repeat) > 0) {
    std::vector<double> ms;
    for (int r = 0; r < std::atoi(repeat); ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      session.Run(Ort::RunOptions{nullptr}, input_names.data(), feeds.data(), feeds.size(), output_names.data(),
                  output_names.size());
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf("median run %.3f ms over %zu runs\n", ms[ms.size() / 2], ms.size());
  }
  if (const char* path = std::getenv("OPFORGE_RUN_OUTPUTS"); path != nullptr && *path != '\0') {
    std::ofstream out(path, std::ios::binary);
    for (Ort::Value& v : outputs) {
      const auto info = v.GetTensorTypeAndShapeInfo();
      const int32_t header[2] = {static_cast<int32_t>(info.GetElementType()),
                                 static_cast<int32_t>(info.GetShape().size())};
      out.write(reinterpret_cast<const char*>(header), sizeof header);
      const std::vector<int64_t> dims = info.GetShape();
      out.write(reinterpret_cast<const char*>(dims.data()),
                static_cast<std::streamsize>(dims.size() * sizeof(int64_t)));
      out.write(static_cast<const char*>(v.GetTensorRawData()),
                static_cast<std::streamsize>(info.GetElementCount() * element_size(info.GetElementType())));
    }
    if (!out) throw std::runtime_error(std::string("cannot write ") + path);
  }

  bool ok = outputs.size() == expected.size();
  for (size_t k = 0; k < outputs.size() && k < expected.size(); ++k) {
    const auto info = outputs[k].GetTensorTypeAndShapeInfo();
    const Tensor& want = expected[k];
    if (info.GetElementType() != want.type || info.GetShape() != want.dims) {
      std::printf("output %s: type/shape differ from the expected tensor\n", output_names[k]);
      ok = false;
      continue;
    }
    double max_abs = 0;
    size_t bad = 0;
    const void* got = outputs[k].GetTensorRawData();
    for (size_t i = 0; i < info.GetElementCount(); ++i) {
      const double g = value(want.type, got, i), w = value(want.type, want.data.data(), i);
      const double diff = std::fabs(g - w);
      max_abs = diff > max_abs ? diff : max_abs;
      if (!(diff <= atol + rtol * std::fabs(w))) ++bad;
    }
    std::printf("output %s: %zu elements, max_abs %.3g, %zu outside rtol %g / atol %g\n", output_names[k],
                info.GetElementCount(), max_abs, bad, rtol, atol);
    ok = ok && bad == 0;
  }
  std::printf("%s\n", ok ? "MATCH" : "MISMATCH");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // Ort::Exception included: print ORT's message, not an abort
    std::fprintf(stderr, "error: %s\n", e.what());
    return 3;
  }
}
