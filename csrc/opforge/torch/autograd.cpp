// The autograd node of every op with compiled kernels, compiled once into each op package's extension.
//
// The generated Autograd kernel of an op (ops/torch/glue.py) goes straight to the device kernel when no
// gradient is needed; otherwise it calls call_with_autograd() with its AutogradSpec. This file is the only
// one that includes torch's autograd headers (they triple the compile time of a translation unit), so it
// is compiled once per extension instead of once per op.
//
// The node is a plain torch::autograd::Node, recorded the way torch's generated code records its own (next
// edges, saved variables, set_history): torch::autograd::Function's generic apply cost a third more host
// time per call than aten's gelu (1.33x on the H100). torch made Node intrusive-pointer based after 2.11,
// so the few places that touch the pointer type are written for both (NodePtr below).
//
// The node's backward is the Python function of the op's declaration. It is reached through the
// dispatcher, as the helper op `ns::<name>_opforge_backward(Tensor?[] opforge_saved, Tensor?[] opforge_grads, <attrs>)
// -> Tensor?[]` that Python registers with the declaration (ops/torch/register.py), and looked up when a
// backward runs, not at load: the extension must load, and its forwards run, where no Python is
// (libtorch programs, AOTInductor runners). Undefined tensors travel as None both ways.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/csrc/autograd/variable.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "opforge/torch/glue.h"

namespace opforge {
namespace glue {
namespace {

using torch::autograd::Node;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

// std::shared_ptr<Node> up to torch 2.11, c10::intrusive_ptr<Node> after: whatever an Edge holds.
using NodePtr = decltype(torch::autograd::Edge::function);
template <typename P> struct IsSharedPtr : std::false_type {};
template <typename T> struct IsSharedPtr<std::shared_ptr<T>> : std::true_type {};

template <typename N, typename... Args>
NodePtr make_node(Args&&... args) {
  if constexpr (IsSharedPtr<NodePtr>::value) {
    // torch's deleteNode frees long chains of nodes without deep recursion (found by ADL through Node).
    return std::shared_ptr<N>(new N(std::forward<Args>(args)...), [](N* n) { deleteNode(n); });
  } else {
    return c10::make_intrusive<N>(std::forward<Args>(args)...);
  }
}

// The node's own pointer, for unpacking saved outputs: getptr() where torch has it, else shared_from_this().
template <typename N>
auto self_ptr(N* n, int) -> decltype(n->getptr()) {
  return n->getptr();
}
template <typename N>
auto self_ptr(N* n, long) -> decltype(n->shared_from_this()) {
  return n->shared_from_this();
}

c10::List<std::optional<at::Tensor>> optional_list(const std::vector<at::Tensor>& tensors) {
  c10::List<std::optional<at::Tensor>> out;
  out.reserve(tensors.size());
  for (const at::Tensor& t : tensors) out.push_back(t.defined() ? std::optional<at::Tensor>(t) : std::nullopt);
  return out;
}

// One gradient per declared input (undefined where there is none), from the declared backward.
std::vector<at::Tensor> run_backward(const AutogradSpec& spec, const std::vector<at::Tensor>& saved,
                                     const c10::impl::GenericList& attrs, const variable_list& grads) {
  const auto handle = c10::Dispatcher::singleton().findSchema({spec.backward_op, ""});
  if (!handle.has_value()) {
    OPFORGE_REQUIRE(kRuntime, spec.has_backward, spec.op,
                    " declares no backward, so it cannot be differentiated: "
                    "a gradient was requested through it. Fix: declare backward=fn(ctx, *grad_outputs) in its "
                    "register_op, or call it on inputs that do not require grad (torch::NoGradGuard).");
    OPFORGE_REQUIRE(kRuntime, false, spec.op,
                    ": a gradient was requested through it, and its backward is the "
                    "Python function of its declaration, run through the helper op ",
                    spec.backward_op,
                    ", which is not registered in this process (no Python here, or the op package that declares ",
                    spec.op,
                    " was not imported). Fix: differentiate it from Python after importing its op "
                    "package, or call it on inputs that do not require grad (torch::NoGradGuard).");
  }
  torch::jit::Stack stack;
  stack.reserve(2 + spec.num_attrs);
  stack.emplace_back(optional_list(saved));
  stack.emplace_back(optional_list(grads));
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

// The autograd node of one call. Its next edges are the op's *present* tensor inputs (an absent optional
// input is no variable: autograd cannot describe an undefined tensor); its inputs are the op's outputs.
struct OpforgeNode : public Node {
  OpforgeNode(const AutogradSpec* spec, c10::impl::GenericList attrs, int64_t present)
      : spec_(spec), attrs_(std::move(attrs)), present_(present) {}

  std::string name() const override { return std::string(spec_->op) + "Backward"; }

  variable_list apply(variable_list&& grads) override {
    std::vector<at::Tensor> saved;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      saved.reserve(saved_.size());
      // Raises torch's own "backward through the graph a second time" once released.
      for (const SavedVariable& v : saved_) saved.push_back(v.unpack(self_ptr(static_cast<Node*>(this), 0)));
    }
    // Like torch::autograd::Function: an output that received no gradient gets zeros (the declared backward
    // sees a tensor for every differentiable output); a non-differentiable one (integer) gets None.
    for (size_t k = 0; k < grads.size(); ++k)
      if (!grads[k].defined() && (differentiable_ >> k & 1)) grads[k] = input_metadata(k).zeros_like();
    std::vector<at::Tensor> in = run_backward(*spec_, saved, attrs_, grads);
    variable_list out;  // one per next edge: the present inputs, in order
    out.reserve(num_outputs());
    for (size_t k = 0; k < spec_->num_inputs; ++k)
      if (present_ >> k & 1) out.push_back(std::move(in[k]));
    return out;
  }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (SavedVariable& v : saved_) v.reset_data();
  }

  const AutogradSpec* spec_;
  c10::impl::GenericList attrs_;
  int64_t present_;           // bit k: input k was given
  int64_t differentiable_ = 0;  // bit k: output k carries a gradient edge
  std::vector<SavedVariable> saved_;  // spec->saves, in order
};

}  // namespace

std::vector<at::Tensor> call_with_autograd(const AutogradSpec& spec, std::vector<at::Tensor> inputs,
                                           c10::impl::GenericList attrs, BelowAutograd below) {
  OPFORGE_REQUIRE(kRuntime, spec.num_inputs < 63 && spec.num_outputs < 63, spec.op, ": more than 62 inputs or outputs");
  std::vector<at::Tensor> outputs;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    outputs = below();
  }
  OPFORGE_REQUIRE(kRuntime, outputs.size() == spec.num_outputs, spec.op, ": expected ", spec.num_outputs,
                  " outputs from the kernel, got ", outputs.size());
  variable_list present;
  present.reserve(spec.num_inputs);
  int64_t present_bits = 0;
  for (size_t k = 0; k < spec.num_inputs; ++k) {
    if (!inputs[k].defined()) continue;
    present.push_back(inputs[k]);
    present_bits |= int64_t{1} << k;
  }
  NodePtr node = make_node<OpforgeNode>(&spec, std::move(attrs), present_bits);
  auto* raw = static_cast<OpforgeNode*>(node.get());
  node->set_next_edges(torch::autograd::collect_next_edges(present));
  for (size_t k = 0; k < outputs.size(); ++k) {
    const at::Tensor& o = outputs[k];
    if (o.defined() && torch::autograd::isDifferentiableType(o.scalar_type())) {
      torch::autograd::set_history(o, node);
      raw->differentiable_ |= int64_t{1} << k;
    } else {
      node->add_input_metadata(Node::undefined_input());
    }
  }
  // After set_history: a saved output then refers to its node weakly (no reference cycle).
  raw->saved_.reserve(spec.saves.size());
  for (size_t k : spec.saves) {
    const bool is_output = k >= spec.num_inputs;
    raw->saved_.emplace_back(is_output ? outputs[k - spec.num_inputs] : inputs[k], is_output);
  }
  return outputs;
}

}  // namespace glue
}  // namespace opforge
