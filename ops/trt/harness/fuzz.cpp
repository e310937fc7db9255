// Fuzzes IPluginCreatorV3One::createPlugin of every creator in a plugin library: missing, mistyped,
// truncated, oversized, duplicated, unknown and null fields. Every buffer is allocated at exactly the
// size its (type, length) claims, so under AddressSanitizer any read past what a field holds is caught.
// A rejected case must return nullptr AND log a message; an accepted one is serialized, re-created
// (kRUNTIME), cloned and destroyed.
//
//   opforge_trt_fuzz <libopforge_trt_plugins.so> [cases=2000] [seed=1]
// Exit status 0 when every case behaved; prints a one-line JSON summary.
#include <dlfcn.h>

#include <NvInferRuntime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace {

class CountingLogger final : public ILogger {
 public:
  void log(Severity, const char*) noexcept override { ++messages; }
  int64_t messages = 0;
};

class Finder final : public ILoggerFinder {
 public:
  explicit Finder(ILogger* l) : logger(l) {}
  ILogger* findLogger() override { return logger; }
  ILogger* logger;
};

size_t width(PluginFieldType t) {
  switch (t) {
    case PluginFieldType::kINT64:
    case PluginFieldType::kFLOAT64: return 8;
    case PluginFieldType::kINT32:
    case PluginFieldType::kFLOAT32:
    case PluginFieldType::kDIMS: return 4;
    case PluginFieldType::kINT16:
    case PluginFieldType::kFLOAT16:
    case PluginFieldType::kBF16: return 2;
    default: return 1;
  }
}

// One field whose data buffer is owned and exactly sized.
struct Field {
  std::unique_ptr<std::string> name;  // null: a null name pointer
  PluginFieldType type;
  int32_t length;
  std::vector<unsigned char> data;  // exactly the bytes the field claims (or fewer, for absurd lengths)
  bool null_data = false;
};

struct Case {
  std::vector<Field> fields;
  bool null_fc = false;
};

void fill_valid(Field* f, std::mt19937_64& rng, const PluginField& schema) {
  f->type = schema.type;
  std::uniform_int_distribution<int> small(0, 4);
  if (schema.type == PluginFieldType::kCHAR) {
    static const char* words[] = {"none", "tanh", "", "x"};
    std::string s = words[small(rng) % 4];
    f->length = static_cast<int32_t>(s.size()) + (small(rng) % 2);  // with and without the NUL
    f->data.assign(s.begin(), s.end());
    f->data.resize(f->length, 0);
  } else {
    f->length = schema.length == 0 ? small(rng) : 1;  // lists: 0..4 elements
    f->data.resize(width(f->type) * f->length);
    for (int32_t i = 0; i < f->length; ++i) {
      if (f->type == PluginFieldType::kFLOAT32) {
        float v = std::uniform_real_distribution<float>(-4, 4)(rng);
        std::memcpy(&f->data[4 * i], &v, 4);
      } else {
        int32_t v = small(rng) % 2;  // 0/1: valid for bools and ints alike
        std::memcpy(&f->data[4 * i], &v, 4);
      }
    }
  }
}

void resize_for(Field* f) {
  const size_t cap = 1u << 20;
  const size_t want = f->length > 0 ? width(f->type) * static_cast<size_t>(f->length) : 0;
  f->data.resize(want < cap ? want : cap);  // absurd lengths get a short buffer: must be rejected unread
}

Case make_case(std::mt19937_64& rng, const PluginFieldCollection* schema) {
  Case c;
  for (int32_t k = 0; k < schema->nbFields; ++k) {
    Field f;
    f.name.reset(new std::string(schema->fields[k].name));
    fill_valid(&f, rng, schema->fields[k]);
    c.fields.push_back(std::move(f));
  }
  std::uniform_int_distribution<int> pick(0, 13);
  const int mutations = std::uniform_int_distribution<int>(0, 3)(rng);
  for (int m = 0; m < mutations; ++m) {
    const int kind = pick(rng);
    const size_t n = c.fields.size();
    Field* f = n ? &c.fields[std::uniform_int_distribution<size_t>(0, n - 1)(rng)] : nullptr;
    switch (kind) {
      case 0:
        if (n) c.fields.erase(c.fields.begin() + (rng() % n));
        break;  // missing
      case 1:
        if (f) {
          f->type = static_cast<PluginFieldType>(rng() % 15);
          resize_for(f);
        }
        break;  // mistyped
      case 2:
        if (f) {
          static const int32_t L[] = {-1, -1000, 0, 2, 3, 1 << 17, 1 << 30, 2147483647};
          f->length = L[rng() % 8];
          resize_for(f);
        }
        break;  // wrong / oversized length
      case 3: {
        Field u;
        u.name.reset(new std::string("unknown_" + std::to_string(rng() % 100)));
        u.type = PluginFieldType::kINT32;
        u.length = 1;
        u.data.assign(4, 0);
        c.fields.push_back(std::move(u));
      } break;
      case 4:
        if (f && f->name) {
          Field d;
          d.name.reset(new std::string(*f->name));
          d.type = f->type;
          d.length = f->length;
          d.data = f->data;
          c.fields.push_back(std::move(d));
        }
        break;  // duplicate
      case 5:
        if (f) f->name.reset();
        break;  // null name
      case 6:
        if (f && f->length > 0) f->null_data = true;
        break;
      case 7:
        if (f && f->type == PluginFieldType::kCHAR) {  // truncated, unterminated string
          std::string s(static_cast<size_t>(rng() % 40), 'a' + static_cast<char>(rng() % 26));
          f->length = static_cast<int32_t>(s.size());
          f->data.assign(s.begin(), s.end());
        }
        break;
      case 8:
        if (f && f->type == PluginFieldType::kINT32 && f->length > 0) {  // out-of-range values
          int32_t v = static_cast<int32_t>(rng());
          std::memcpy(f->data.data(), &v, 4);
        }
        break;
      case 9:
        if (f && f->type == PluginFieldType::kFLOAT32 && f->length > 0) {
          float v = (rng() % 2) ? NAN : INFINITY;
          std::memcpy(f->data.data(), &v, 4);
        }
        break;
      case 10: c.fields.clear(); break;
      case 11: c.null_fc = true; break;
      case 12:
        if (f) {
          f->type = PluginFieldType::kINT64;
          resize_for(f);
        }
        break;   // wider ints
      case 13:
        if (f) {
          f->type = PluginFieldType::kFLOAT64;
          resize_for(f);
        }
        break;
    }
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s LIB [cases] [seed]\n", argv[0]);
    return 2;
  }
  const int64_t cases = argc > 2 ? std::atoll(argv[2]) : 2000;
  std::mt19937_64 rng(argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1);
  void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    std::fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  auto get = reinterpret_cast<IPluginCreatorInterface* const* (*)(int32_t&)>(dlsym(lib, "getCreators"));
  auto set_finder = reinterpret_cast<void (*)(ILoggerFinder*)>(dlsym(lib, "setLoggerFinder"));
  if (!get || !set_finder) return 2;
  CountingLogger logger;
  Finder finder(&logger);
  set_finder(&finder);
  int32_t nb = 0;
  IPluginCreatorInterface* const* list = get(nb);
  int64_t created = 0, rejected = 0, silent = 0, roundtrip_failures = 0;
  for (int64_t i = 0; i < cases; ++i) {
    auto* creator = static_cast<IPluginCreatorV3One*>(list[i % nb]);
    Case c = make_case(rng, creator->getFieldNames());
    std::vector<PluginField> pf;
    for (auto& f : c.fields) {
      pf.emplace_back(f.name ? f.name->c_str() : nullptr, f.null_data || f.data.empty() ? nullptr : f.data.data(),
                      f.type, f.length);
    }
    // The fields array itself is heap-allocated at its exact size too.
    std::unique_ptr<PluginField[]> exact(new PluginField[pf.size() ? pf.size() : 1]);
    for (size_t k = 0; k < pf.size(); ++k) exact[k] = pf[k];
    PluginFieldCollection fc{static_cast<int32_t>(pf.size()), pf.empty() ? nullptr : exact.get()};
    const int64_t before = logger.messages;
    const TensorRTPhase phase = (i % 3 == 0) ? TensorRTPhase::kRUNTIME : TensorRTPhase::kBUILD;
    IPluginV3* p = creator->createPlugin("fuzz", c.null_fc ? nullptr : &fc, phase);
    if (p == nullptr) {
      ++rejected;
      if (logger.messages == before) ++silent;
      continue;
    }
    ++created;
    auto* rt = static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    IPluginV3* again = creator->createPlugin("again", rt->getFieldsToSerialize(), TensorRTPhase::kRUNTIME);
    if (again == nullptr) ++roundtrip_failures;
    IPluginV3* copy = p->clone();
    delete p;
    if (copy) {
      auto* crt = static_cast<IPluginV3OneRuntime*>(copy->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
      if (crt->getFieldsToSerialize() == nullptr) ++roundtrip_failures;  // the clone outlives the original
    }
    delete copy;
    delete again;
  }
  std::printf(
      "{\"cases\": %lld, \"created\": %lld, \"rejected\": %lld, \"rejected_silently\": %lld, "
      "\"roundtrip_failures\": %lld}\n",
      static_cast<long long>(cases), static_cast<long long>(created), static_cast<long long>(rejected),
      static_cast<long long>(silent), static_cast<long long>(roundtrip_failures));
  return (silent == 0 && roundtrip_failures == 0 && created > 0 && rejected > 0) ? 0 : 1;
}
