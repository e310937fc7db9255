// The plugin host harness's C functions (ops/trt/harness/harness.cpp, compiled into this program) served
// over stdin/stdout, so that ops/trt/harness/host.py, running on this machine, drives a plugin library built
// for another one: this program is cross-compiled with it and runs under qemu user mode. The Python side is
// ops/cross/remote_harness.py; the checks are the same functions that run against the x86 library.
//
// A request: u32 size, then u8 name length, the function name, u8 argument count, the arguments, each a tag
// byte and its value:
//   'p' u64 pointer   'n' null pointer   'i' i32   'l' i64
//   's' u32 n, n bytes: an input string (NUL added)
//   'o' u32 n: an output char buffer of n bytes (zeroed; returned)
//   'b' u32 n, n bytes: an in/out array (HxTensor[], int32_t[]; returned)
//   'f' u32 count, per field: u32 name length + name, i32 type, i32 length, u32 data size + data
//       (0xFFFFFFFF: null data): a PluginField array
// The reply: u32 size, a tag and the return value ('p' u64, 'i' i32, 'l' i64, 'v' nothing, 's' i32 length or
// -1 for null, then the bytes), then for each 'o'/'b' argument in order u32 n and its bytes ('o': up to and
// including its first NUL). EOF on stdin ends the program.
#include <NvInferRuntime.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;

struct HxTensor;  // harness.cpp's; only passed through as bytes here

extern "C" {
void* hx_open(const char* path, char* err, int32_t n);
int32_t hx_num_creators(void* h);
int32_t hx_creator_info(void* h, int32_t i, char* buf, int32_t n);
int32_t hx_log(void* h, char* buf, int32_t n, int32_t clear);
void* hx_create(void* h, int32_t creator, const char* name, const PluginField* fields, int32_t nb, int32_t phase);
void* hx_create_null_fc(void* h, int32_t creator);
void hx_destroy(void* p);
int32_t hx_plugin_info(void* p, char* buf, int32_t n);
int32_t hx_output_shapes(void* p, const HxTensor* in, int32_t nb_in, int32_t nb_out, char* buf, int32_t n);
int32_t hx_output_types(void* p, const int32_t* in_types, int32_t nb_in, int32_t* out_types, int32_t nb_out);
int32_t hx_supports(void* p, int32_t pos, const HxTensor* io, int32_t nb_in, int32_t nb_out);
int32_t hx_configure(void* p, const HxTensor* in, int32_t nb_in, const HxTensor* out, int32_t nb_out);
int64_t hx_workspace(void* p, const HxTensor* in, int32_t nb_in, const HxTensor* out, int32_t nb_out);
int32_t hx_on_shape_change(void* p, const HxTensor* in, int32_t nb_in, const HxTensor* out, int32_t nb_out);
int32_t hx_serialized_fields(void* p, char* buf, int32_t n);
void* hx_recreate(void* h, int32_t creator, void* p);
void* hx_clone(void* p);
void* hx_attach(void* p);
const char* hx_timing_cache_id(void* p);
}

namespace {

struct Reader {
  const std::vector<char>& d;
  size_t at = 0;
  template <typename T>
  T get() {
    if (at + sizeof(T) > d.size()) throw std::runtime_error("truncated request");
    T v;
    std::memcpy(&v, d.data() + at, sizeof v);
    at += sizeof v;
    return v;
  }
  std::string bytes(size_t n) {
    if (at + n > d.size()) throw std::runtime_error("truncated request");
    std::string s(d.data() + at, n);
    at += n;
    return s;
  }
};

struct Arg {
  char tag = 0;
  uint64_t p = 0;
  int64_t i = 0;
  std::string s;
  std::vector<char> buf;
  std::vector<std::string> names;
  std::vector<std::string> data;
  std::vector<PluginField> fields;

  void* ptr() const { return tag == 'n' ? nullptr : reinterpret_cast<void*>(p); }
  char* chars() { return tag == 'n' ? nullptr : buf.data(); }
  template <typename T>
  T* array() {
    return tag == 'n' ? nullptr : reinterpret_cast<T*>(buf.data());
  }
  int32_t i32() const { return static_cast<int32_t>(i); }
};

Arg read_arg(Reader& r) {
  Arg a;
  a.tag = r.get<char>();
  switch (a.tag) {
    case 'p': a.p = r.get<uint64_t>(); break;
    case 'n': break;
    case 'i': a.i = r.get<int32_t>(); break;
    case 'l': a.i = r.get<int64_t>(); break;
    case 's': a.s = r.bytes(r.get<uint32_t>()); break;
    case 'o': a.buf.assign(r.get<uint32_t>(), '\0'); break;
    case 'b': {
      const std::string b = r.bytes(r.get<uint32_t>());
      a.buf.assign(b.begin(), b.end());
      break;
    }
    case 'f': {
      const uint32_t count = r.get<uint32_t>();
      a.names.resize(count);
      a.data.resize(count);
      std::vector<bool> null_data(count);
      std::vector<int32_t> types(count), lengths(count);
      for (uint32_t k = 0; k < count; ++k) {
        a.names[k] = r.bytes(r.get<uint32_t>());
        types[k] = r.get<int32_t>();
        lengths[k] = r.get<int32_t>();
        const uint32_t size = r.get<uint32_t>();
        null_data[k] = size == 0xFFFFFFFFu;
        if (!null_data[k]) a.data[k] = r.bytes(size);
      }
      for (uint32_t k = 0; k < count; ++k)  // pointers taken once the strings no longer move
        a.fields.emplace_back(a.names[k].c_str(), null_data[k] ? nullptr : a.data[k].data(),
                              static_cast<PluginFieldType>(types[k]), lengths[k]);
      break;
    }
    default: throw std::runtime_error(std::string("unknown argument tag ") + a.tag);
  }
  return a;
}

struct Writer {
  std::string out;
  template <typename T>
  void put(T v) {
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
};

void serve(const std::string& fn, std::vector<Arg>& a, Writer& w) {
  auto P = [&](void* v) {
    w.put<char>('p');
    w.put<uint64_t>(reinterpret_cast<uint64_t>(v));
  };
  auto I = [&](int32_t v) {
    w.put<char>('i');
    w.put<int32_t>(v);
  };
  auto need = [&](size_t n) {
    if (a.size() != n) throw std::runtime_error(fn + ": wrong argument count");
  };
  if (fn == "hx_open") {
    need(3);
    P(hx_open(a[0].s.c_str(), a[1].chars(), a[2].i32()));
  } else if (fn == "hx_num_creators") {
    need(1);
    I(hx_num_creators(a[0].ptr()));
  } else if (fn == "hx_creator_info") {
    need(4);
    I(hx_creator_info(a[0].ptr(), a[1].i32(), a[2].chars(), a[3].i32()));
  } else if (fn == "hx_log") {
    need(4);
    I(hx_log(a[0].ptr(), a[1].chars(), a[2].i32(), a[3].i32()));
  } else if (fn == "hx_create") {
    need(6);
    P(hx_create(a[0].ptr(), a[1].i32(), a[2].tag == 'n' ? nullptr : a[2].s.c_str(),
                a[3].tag == 'n' ? nullptr : a[3].fields.data(), a[4].i32(), a[5].i32()));
  } else if (fn == "hx_create_null_fc") {
    need(2);
    P(hx_create_null_fc(a[0].ptr(), a[1].i32()));
  } else if (fn == "hx_destroy") {
    need(1);
    hx_destroy(a[0].ptr());
    w.put<char>('v');
  } else if (fn == "hx_plugin_info") {
    need(3);
    I(hx_plugin_info(a[0].ptr(), a[1].chars(), a[2].i32()));
  } else if (fn == "hx_output_shapes") {
    need(6);
    I(hx_output_shapes(a[0].ptr(), a[1].array<HxTensor>(), a[2].i32(), a[3].i32(), a[4].chars(), a[5].i32()));
  } else if (fn == "hx_output_types") {
    need(5);
    I(hx_output_types(a[0].ptr(), a[1].array<int32_t>(), a[2].i32(), a[3].array<int32_t>(), a[4].i32()));
  } else if (fn == "hx_supports") {
    need(5);
    I(hx_supports(a[0].ptr(), a[1].i32(), a[2].array<HxTensor>(), a[3].i32(), a[4].i32()));
  } else if (fn == "hx_configure" || fn == "hx_on_shape_change" || fn == "hx_workspace") {
    need(5);
    auto* in = a[1].array<HxTensor>();
    auto* out = a[3].array<HxTensor>();
    if (fn == "hx_workspace") {
      w.put<char>('l');
      w.put<int64_t>(hx_workspace(a[0].ptr(), in, a[2].i32(), out, a[4].i32()));
    } else {
      I((fn == "hx_configure" ? hx_configure : hx_on_shape_change)(a[0].ptr(), in, a[2].i32(), out, a[4].i32()));
    }
  } else if (fn == "hx_serialized_fields") {
    need(3);
    I(hx_serialized_fields(a[0].ptr(), a[1].chars(), a[2].i32()));
  } else if (fn == "hx_recreate") {
    need(3);
    P(hx_recreate(a[0].ptr(), a[1].i32(), a[2].ptr()));
  } else if (fn == "hx_clone") {
    need(1);
    P(hx_clone(a[0].ptr()));
  } else if (fn == "hx_attach") {
    need(1);
    P(hx_attach(a[0].ptr()));
  } else if (fn == "hx_timing_cache_id") {
    need(1);
    const char* s = hx_timing_cache_id(a[0].ptr());
    w.put<char>('s');
    w.put<int32_t>(s ? static_cast<int32_t>(std::strlen(s)) : -1);
    if (s) w.out.append(s);
  } else {
    throw std::runtime_error("no such function: " + fn);
  }
  for (Arg& x : a) {
    if (x.tag == 'o') {
      const size_t n = strnlen(x.buf.data(), x.buf.size());
      const uint32_t k = static_cast<uint32_t>(n < x.buf.size() ? n + 1 : n);
      w.put<uint32_t>(k);
      w.out.append(x.buf.data(), k);
    } else if (x.tag == 'b') {
      w.put<uint32_t>(static_cast<uint32_t>(x.buf.size()));
      w.out.append(x.buf.data(), x.buf.size());
    }
  }
}

bool read_exact(void* p, size_t n) { return std::fread(p, 1, n, stdin) == n; }

}  // namespace

int main() {
  // Replies go to the original stdout; anything the plugin library prints goes to stderr instead.
  FILE* reply = fdopen(dup(1), "wb");
  dup2(2, 1);
  if (reply == nullptr) return 1;
  for (;;) {
    uint32_t size = 0;
    if (!read_exact(&size, sizeof size)) return 0;
    std::vector<char> req(size);
    if (!read_exact(req.data(), size)) return 1;
    Writer w;
    try {
      Reader r{req};
      const std::string fn = r.bytes(r.get<uint8_t>());
      const uint8_t nargs = r.get<uint8_t>();
      std::vector<Arg> args;
      for (uint8_t k = 0; k < nargs; ++k) args.push_back(read_arg(r));
      serve(fn, args, w);
    } catch (const std::exception& e) {
      w.out.clear();
      w.put<char>('E');
      w.out.append(e.what());
    }
    const uint32_t n = static_cast<uint32_t>(w.out.size());
    std::fwrite(&n, sizeof n, 1, reply);
    std::fwrite(w.out.data(), 1, n, reply);
    std::fflush(reply);
  }
}
