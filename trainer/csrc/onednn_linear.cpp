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
//
// `relu(x W^T + b)`, the MLP's hidden layer, is one function too: the bias and the
// ReLU in one pass over the matmul's output, and backward the ReLU's mask and the
// bias gradient in one pass over the incoming gradient, instead of a broadcast copy,
// an in-place ReLU, a threshold_backward and a sum, each a pass of its own and an
// autograd node or a dispatch more.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/custom_function.h>

#include "handed_over.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <vector>

namespace at::native {
// Exported by libtorch_cpu (aten/src/ATen/native/mkldnn/Matmul.cpp): result = beta *
// result + alpha * (mat1 @ mat2) on strided ATen tensors, no layout conversion.
void mkldnn_matmul(const Tensor &mat1, const Tensor &mat2, const Tensor &result, float beta,
                   float alpha);
} // namespace at::native

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// a @ b into a new tensor on oneDNN. oneDNN leaves the output unwritten when the
// inner dimension is 0 (a batch of no rows, for a weight's gradient), so that product
// is zeros.
at::Tensor product(const at::Tensor &a, const at::Tensor &b) {
  if (a.size(1) == 0) {
    return at::zeros({a.size(0), b.size(1)}, a.options());
  }
  auto out = at::empty({a.size(0), b.size(1)}, a.options());
  at::native::mkldnn_matmul(a, b, out, 0.0f, 1.0f);
  return out;
}

// The input and weight gradients of `x W^T` given the output's gradient `grad`
// (contiguous), each only when autograd needs it (inputs 0 and 1), on oneDNN.
variable_list matmul_grads(AutogradContext *ctx, const at::Tensor &grad, const at::Tensor &x,
                           const at::Tensor &weight) {
  at::Tensor grad_x, grad_weight;
  if (ctx->needs_input_grad(0)) {
    grad_x = product(grad, weight);
  }
  if (ctx->needs_input_grad(1)) {
    grad_weight = product(grad.t(), x);
  }
  return {grad_x, grad_weight};
}

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
    auto result = matmul_grads(ctx, grad, x, weight);
    result.push_back(ctx->needs_input_grad(2) ? grad.sum(0) : at::Tensor());
    return result;
  }
};

// Elements per parallel chunk of the two passes below (at::parallel_for's grain, as
// ATen's elementwise kernels use): one thread below it, intra-op threads above.
constexpr int64_t kGrain = 32768;

// The two loops below are compiled for AVX-512, AVX2 and plain x86-64, the best one
// chosen when the library loads (GCC/Clang function multi-versioning), as ATen's own
// kernels are; `__restrict` tells the compiler the arrays do not overlap, so each
// loop is vectorised.
#if defined(__x86_64__) && defined(__GNUC__)
#define EXPCLUSTER_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EXPCLUSTER_VECTOR_CLONES
#endif

// row[j] = relu(row[j] + bias[j]) for one row; NaN stays NaN, as torch.relu keeps it.
EXPCLUSTER_VECTOR_CLONES
void add_bias_relu_row(float *__restrict row, const float *__restrict bias, int64_t cols) {
  for (int64_t j = 0; j < cols; ++j) {
    const float v = row[j] + bias[j];
    row[j] = v < 0.0f ? 0.0f : v;
  }
}

// One row of the backward pass: masked[j] = grad[j] where out[j] > 0, else +0, and
// sums[j] += masked[j]. The mask is applied to the bits (a select the compiler
// vectorises; a branch it would not, and the branch mispredicts on a ReLU's mask).
EXPCLUSTER_VECTOR_CLONES
void relu_mask_row(const float *__restrict grad, const float *__restrict out,
                   float *__restrict masked, double *__restrict sums, int64_t cols) {
  for (int64_t j = 0; j < cols; ++j) {
    const float g = grad[j];
    uint32_t bits;
    std::memcpy(&bits, &g, sizeof bits);
    bits &= out[j] > 0.0f ? 0xffffffffu : 0u;
    float v;
    std::memcpy(&v, &bits, sizeof v);
    masked[j] = v;
    sums[j] += static_cast<double>(v);
  }
}

// `y` [n, out] (contiguous) becomes relu(y + bias) in place.
void add_bias_relu(at::Tensor &y, const at::Tensor &bias) {
  const int64_t rows = y.size(0), cols = y.size(1);
  float *out = y.data_ptr<float>();
  const float *b = bias.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      add_bias_relu_row(out + i * cols, b, cols);
    }
  });
}

// grad = grad_out where the ReLU's output is positive, else 0 (threshold_backward);
// returns it, and the bias gradient in `grad_bias`: each column's sum in row order,
// accumulated in double. Threads split the columns, so the result does not depend
// on the thread count.
at::Tensor relu_mask_and_bias_grad(const at::Tensor &grad_out, const at::Tensor &y,
                                   at::Tensor &grad_bias) {
  const int64_t rows = y.size(0), cols = y.size(1);
  auto grad = at::empty({rows, cols}, y.options());
  grad_bias = at::empty({cols}, y.options());
  const float *g = grad_out.data_ptr<float>();
  const float *out = y.data_ptr<float>();
  float *masked = grad.data_ptr<float>();
  float *gb = grad_bias.data_ptr<float>();
  // No rows (an empty batch) gives a zero bias gradient, not a division by zero.
  const int64_t grain = std::max<int64_t>(16, kGrain / std::max<int64_t>(rows, 1));
  at::parallel_for(0, cols, grain, [&](int64_t begin, int64_t end) {
    const int64_t width = end - begin;
    std::vector<double> sums(static_cast<size_t>(width), 0.0);
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t at = i * cols + begin;
      relu_mask_row(g + at, out + at, masked + at, sums.data(), width);
    }
    for (int64_t j = 0; j < width; ++j) {
      gb[begin + j] = static_cast<float>(sums[j]);
    }
  });
  return grad;
}

struct OneDnnLinearRelu : public torch::autograd::Function<OneDnnLinearRelu> {
  // x [n, in], weight [out, in], bias [out] -> relu(x W^T + b) [n, out]
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, const at::Tensor &weight,
                            const at::Tensor &bias) {
    auto y = product(x, weight.t());
    add_bias_relu(y, bias.contiguous());
    ctx->save_for_backward({x, weight, y});
    return y;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0];
    const auto &weight = saved[1];
    const auto &y = saved[2];
    at::Tensor grad_bias;
    auto grad = relu_mask_and_bias_grad(grads[0].contiguous(), y, grad_bias);
    auto result = matmul_grads(ctx, grad, x, weight);
    result.push_back(ctx->needs_input_grad(2) ? grad_bias : at::Tensor());
    return result;
  }
};

} // namespace

extern "C" {

// On success *out is a new tensor handle (tch takes ownership) and the result null.
char *expcluster_onednn_linear(const at::Tensor *x, const at::Tensor *weight,
                               const at::Tensor *bias, at::Tensor **out) {
  return expcluster::handed_over([&] { return OneDnnLinear::apply(*x, *weight, *bias); }, out);
}

// As expcluster_onednn_linear, with the ReLU applied.
char *expcluster_onednn_linear_relu(const at::Tensor *x, const at::Tensor *weight,
                                    const at::Tensor *bias, at::Tensor **out) {
  return expcluster::handed_over([&] { return OneDnnLinearRelu::apply(*x, *weight, *bias); }, out);
}

} // extern "C"
