// The autograd node of every op with compiled kernels, compiled once into each op package's extension.
//
// The generated Autograd kernel of an op (ops/torch/glue.py) goes straight to the device kernel when no
// gradient is needed; otherwise it calls call_with_autograd() with its AutogradSpec. This file is the only
// one that includes torch's autograd headers (they triple the compile time of a translation unit), so it
// is compiled once per extension instead of once per op.
//
// The node's backward is the Python function of the op's declaration. It is reached through the
// dispatcher, as the helper op `ns::<name>_opforge_backward(Tensor?[] saved, Tensor?[] grads, <attrs>)
// -> Tensor?[]` that Python registers with the declaration (ops/torch/register.py), and looked up when a
// backward runs, not at load: the extension must load, and its forwards run, where no Python is
// (libtorch programs, AOTInductor runners). Undefined tensors travel as None both ways.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <vector>

#include "opforge/torch_glue.h"

namespace opforge {
namespace glue {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

c10::List<std::optional<at::Tensor>> optional_list(const std::vector<at::Tensor>& tensors) {
  c10::List<std::optional<at::Tensor>> out;
  out.reserve(tensors.size());
  for (const at::Tensor& t : tensors) out.push_back(t.defined() ? std::optional<at::Tensor>(t) : std::nullopt);
  return out;
}

// One gradient per declared input (undefined where there is none), from the declared backward.
std::vector<at::Tensor> run_backward(const AutogradSpec& spec, AutogradContext* ctx, const variable_list& grads) {
  const auto handle = c10::Dispatcher::singleton().findSchema({spec.backward_op, ""});
  if (!handle.has_value()) {
    OPFORGE_REQUIRE(kRuntime, spec.has_backward, spec.op, " declares no backward, so it cannot be differentiated: "
                    "a gradient was requested through it. Fix: declare backward=fn(ctx, *grad_outputs) in its "
                    "register_op, or call it on inputs that do not require grad (torch::NoGradGuard).");
    OPFORGE_REQUIRE(kRuntime, false, spec.op, ": a gradient was requested through it, and its backward is the "
                    "Python function of its declaration, run through the helper op ", spec.backward_op,
                    ", which is not registered in this process (no Python here, or the op package that declares ",
                    spec.op, " was not imported). Fix: differentiate it from Python after importing its op "
                    "package, or call it on inputs that do not require grad (torch::NoGradGuard).");
  }
  torch::jit::Stack stack;
  stack.reserve(2 + spec.num_attrs);
  stack.emplace_back(optional_list(ctx->get_saved_variables()));
  stack.emplace_back(optional_list(grads));
  const c10::List<c10::IValue> attrs = ctx->saved_data.at("attrs").toList();
  for (size_t k = 0; k < attrs.size(); ++k) stack.push_back(attrs.get(k));
  handle->callBoxed(stack);
  OPFORGE_REQUIRE(kRuntime, stack.size() == 1 && stack[0].isList(), spec.op, ": ", spec.backward_op,
                  " returned something other than one list of gradients");
  const c10::List<c10::IValue> result = stack[0].toList();
  OPFORGE_REQUIRE(kRuntime, result.size() == spec.num_inputs, spec.op, ": backward returned ", result.size(),
                  " gradients, expected one per input (", spec.num_inputs, ")");
  std::vector<at::Tensor> out;
  out.reserve(spec.num_inputs);
  for (size_t k = 0; k < spec.num_inputs; ++k) {
    const c10::IValue g = result.get(k);
    out.push_back(g.isNone() ? at::Tensor() : g.toTensor());
  }
  return out;
}

// torch::autograd::Function over the op's *present* tensor inputs (an absent optional input is no variable:
// autograd cannot describe an undefined tensor). The node's name is that of this struct for every op;
// errors raised from it name the op.
struct OpforgeFunction : public torch::autograd::Function<OpforgeFunction> {
  static variable_list forward(AutogradContext* ctx, const AutogradSpec* spec, BelowAutograd* below,
                               c10::impl::GenericList* attrs, at::TensorList /*present inputs, for autograd*/,
                               const std::vector<at::Tensor>* inputs) {
    variable_list outputs;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      outputs = (*below)();
    }
    OPFORGE_REQUIRE(kRuntime, outputs.size() == spec->num_outputs, spec->op, ": expected ", spec->num_outputs,
                    " outputs from the kernel, got ", outputs.size());
    std::vector<at::Tensor> saved;
    saved.reserve(spec->saves.size());
    int64_t present = 0;  // bit k: input k was given (call_with_autograd checks there are fewer than 63)
    for (size_t k = 0; k < spec->num_inputs; ++k)
      if ((*inputs)[k].defined()) present |= int64_t{1} << k;
    for (size_t k : spec->saves) saved.push_back(k < spec->num_inputs ? (*inputs)[k] : outputs[k - spec->num_inputs]);
    ctx->save_for_backward(saved);
    // The spec is a static object of the extension (which is never unloaded), kept by address.
    ctx->saved_data["spec"] = static_cast<int64_t>(reinterpret_cast<std::intptr_t>(spec));
    ctx->saved_data["present"] = present;
    ctx->saved_data["attrs"] = std::move(*attrs);
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto* spec = reinterpret_cast<const AutogradSpec*>(static_cast<std::intptr_t>(ctx->saved_data.at("spec").toInt()));
    std::vector<at::Tensor> in = run_backward(*spec, ctx, grads);
    const int64_t present = ctx->saved_data.at("present").toInt();
    // One gradient per argument of forward: spec, below, attrs, each present input, inputs.
    variable_list out(3);
    for (size_t k = 0; k < spec->num_inputs; ++k)
      if (present & (int64_t{1} << k)) out.push_back(std::move(in[k]));
    out.emplace_back();
    return out;
  }
};

}  // namespace

std::vector<at::Tensor> call_with_autograd(const AutogradSpec& spec, std::vector<at::Tensor> inputs,
                                           c10::impl::GenericList attrs, BelowAutograd below) {
  OPFORGE_REQUIRE(kRuntime, spec.num_inputs < 63, spec.op, ": more than 62 inputs");
  std::vector<at::Tensor> present;
  present.reserve(spec.num_inputs);
  for (const at::Tensor& t : inputs)
    if (t.defined()) present.push_back(t);
  return OpforgeFunction::apply(&spec, &below, &attrs, at::TensorList(present), &inputs);
}

}  // namespace glue
}  // namespace opforge
