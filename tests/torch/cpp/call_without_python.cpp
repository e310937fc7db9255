// A libtorch program with no Python in it: it dlopens an op package's extension (argv[1]) and calls
// opforge's ops through the dispatcher. Built and run by tests/torch/test_without_python.py.
//
// Checks: the library loads with every symbol bound at once (RTLD_NOW; the test also sets LD_BIND_NOW),
// its schemas were defined by the extension itself, the ops compute what they should on CPU tensors, an
// input that requires grad records a node, and differentiating it raises an error naming the op (its
// backward is Python code that this process does not have).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <dlfcn.h>

#include <cstdio>
#include <string>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s path/to/extension.so\n", argv[0]);
    return 2;
  }
  if (dlopen(argv[1], RTLD_NOW | RTLD_LOCAL) == nullptr) {
    std::fprintf(stderr, "dlopen failed: %s\n", dlerror());
    return 3;
  }
  auto& dispatcher = c10::Dispatcher::singleton();
  const auto rms_schema = dispatcher.findSchema({"opforge::rms_norm", ""});
  expect(rms_schema.has_value(), "opforge::rms_norm is defined by the extension");
  if (!rms_schema.has_value()) return 1;
  std::printf("schema %s\n", c10::toString(rms_schema->schema()).c_str());

  auto rms_norm = rms_schema->typed<at::Tensor(const at::Tensor&, const at::Tensor&, double)>();
  const at::Tensor x = at::randn({5, 64});
  const at::Tensor w = at::randn({64});
  const at::Tensor y = rms_norm.call(x, w, 1e-5);
  const at::Tensor expected = x * at::rsqrt(x.pow(2).mean(-1, true) + 1e-5) * w;
  expect(at::allclose(y, expected, 1e-5, 1e-5), "rms_norm matches x * rsqrt(mean(x^2) + eps) * w");

  auto gelu = dispatcher.findSchemaOrThrow("opforge::scaled_gelu", "")
                  .typed<at::Tensor(const at::Tensor&, double, c10::string_view)>();
  const at::Tensor g = gelu.call(x, 1.5, "tanh");
  expect(at::allclose(g, 1.5 * at::gelu(x, "tanh"), 1e-5, 1e-5), "scaled_gelu(alpha=1.5, tanh) matches 1.5 * gelu");

  const at::Tensor xg = x.detach().clone().set_requires_grad(true);
  const at::Tensor yg = rms_norm.call(xg, w, 1e-5);
  expect(yg.requires_grad() && yg.grad_fn() != nullptr, "an input that requires grad records an autograd node");
  std::string message;
  try {
    yg.sum().backward();
  } catch (const c10::Error& e) { message = e.what_without_backtrace(); }
  std::printf("backward error: %s\n", message.c_str());
  expect(message.find("opforge::rms_norm") != std::string::npos &&
             message.find("not registered in this process") != std::string::npos,
         "differentiating without Python raises an error naming the op");
  return failures == 0 ? 0 : 1;
}
