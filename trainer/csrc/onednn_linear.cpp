// `y = x W^T + b` for fp32 CPU tensors through oneDNN's matmul (the library
// libtorch_cpu embeds) instead of MKL's sgemm, which `at::linear` uses. On the AMD
// machines this project runs on, MKL takes its AVX2 path while oneDNN uses AVX-512:
// the MLP benchmark's five big matmuls per step cost ~8% less CPU time. Same fp32
// arithmetic (no reduced-precision mode), deterministic for a given thread count.
//
// A custom autograd function: the backward pass also runs on oneDNN (grad_x only
// when x requires it, as autograd's linear does). Called from
// trainer/src/native/linear.rs; errors come back as a message (freed with
// expcluster_free_error), never as a C++ exception across the FFI.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstring>
#include <exception>

namespace at::native {
// Exported by libtorch_cpu (aten/src/ATen/native/mkldnn/Matmul.cpp): result = beta *
// result + alpha * (mat1 @ mat2) on strided ATen tensors, no layout conversion.
void mkldnn_matmul(const Tensor &mat1, const Tensor &mat2, const Tensor &result, float beta,
                   float alpha);
} // namespace at::native

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct OneDnnLinear : public torch::autograd::Function<OneDnnLinear> {
  // x [n, in], weight [out, in], bias [out] -> [n, out]
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, const at::Tensor &weight,
                            const at::Tensor &bias) {
    ctx->save_for_backward({x, weight});
    // The bias broadcast into a fresh output, then accumulated into (as addmm does).
    // Not `expand().contiguous()`: with one row that is a view of the bias itself.
    auto y = at::empty({x.size(0), weight.size(0)}, x.options());
    y.copy_(bias.expand({x.size(0), weight.size(0)}));
    at::native::mkldnn_matmul(x, weight.t(), y, /*beta=*/1.0f, /*alpha=*/1.0f);
    return y;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0];
    const auto &weight = saved[1];
    auto grad = grads[0].contiguous();
    at::Tensor grad_x, grad_weight, grad_bias;
    if (ctx->needs_input_grad(0)) {
      grad_x = at::empty({grad.size(0), weight.size(1)}, grad.options());
      at::native::mkldnn_matmul(grad, weight, grad_x, 0.0f, 1.0f);
    }
    if (ctx->needs_input_grad(1)) {
      grad_weight = at::empty(weight.sizes(), weight.options());
      at::native::mkldnn_matmul(grad.t(), x, grad_weight, 0.0f, 1.0f);
    }
    if (ctx->needs_input_grad(2)) {
      grad_bias = grad.sum(0);
    }
    return {grad_x, grad_weight, grad_bias};
  }
};

} // namespace

extern "C" {

// On success *out is a new tensor handle (tch takes ownership) and the result null.
char *expcluster_onednn_linear(const at::Tensor *x, const at::Tensor *weight,
                               const at::Tensor *bias, at::Tensor **out) {
  try {
    *out = new at::Tensor(OneDnnLinear::apply(*x, *weight, *bias));
    return nullptr;
  } catch (const std::exception &err) {
    return strdup(err.what());
  } catch (...) {
    return strdup("unknown libtorch exception");
  }
}

} // extern "C"
