// libtorch kernels that tch does not bind: the fused optimizer steps PyTorch runs
// with `fused=True` (one pass over each parameter instead of one kernel per
// arithmetic operation, and on CUDA a few launches for all parameters).
//
// Called from trainer/src/native/optim.rs with the `torch::Tensor*` handles tch holds.
// Every entry point catches libtorch's exceptions and returns the message (freed
// with expcluster_free_error), or null on success.

#include <ATen/core/Tensor.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/_fused_sgd.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

namespace {

std::vector<at::Tensor> tensors(const at::Tensor *const *handles, int count) {
  std::vector<at::Tensor> list;
  list.reserve(count);
  for (int i = 0; i < count; ++i) {
    list.push_back(*handles[i]);
  }
  return list;
}

template <typename F> char *guarded(F &&body) {
  try {
    body();
    return nullptr;
  } catch (const std::exception &err) {
    return strdup(err.what());
  } catch (...) {
    return strdup("unknown libtorch exception");
  }
}

} // namespace

extern "C" {

// Adam (decoupled == 0, L2 penalty added to the gradient) or AdamW (decoupled != 0),
// in place on params, exp_avgs and exp_avg_sqs. steps[i] holds the step number
// (float32, on the parameters' device) after this update's increment.
char *expcluster_fused_adam(const at::Tensor *const *params, const at::Tensor *const *grads,
                            const at::Tensor *const *exp_avgs,
                            const at::Tensor *const *exp_avg_sqs,
                            const at::Tensor *const *steps, int count, double lr, double beta1,
                            double beta2, double weight_decay, double eps, int decoupled) {
  return guarded([&] {
    auto p = tensors(params, count);
    auto g = tensors(grads, count);
    auto m = tensors(exp_avgs, count);
    auto v = tensors(exp_avg_sqs, count);
    auto s = tensors(steps, count);
    if (decoupled) {
      at::_fused_adamw_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps,
                        /*amsgrad=*/false, /*maximize=*/false);
    } else {
      at::_fused_adam_(p, g, m, v, {}, s, lr, beta1, beta2, weight_decay, eps,
                       /*amsgrad=*/false, /*maximize=*/false);
    }
  });
}

// SGD with optional momentum (momentum_buffers may be null when momentum is 0) and
// Nesterov, in place on params and the momentum buffers.
char *expcluster_fused_sgd(const at::Tensor *const *params, const at::Tensor *const *grads,
                           const at::Tensor *const *momentum_buffers, int count,
                           double weight_decay, double momentum, double lr, int nesterov) {
  return guarded([&] {
    auto p = tensors(params, count);
    auto g = tensors(grads, count);
    auto b = momentum_buffers ? tensors(momentum_buffers, count) : std::vector<at::Tensor>();
    at::_fused_sgd_(p, g, b, weight_decay, momentum, lr, /*dampening=*/0.0, nesterov != 0,
                    /*maximize=*/false, /*is_first_step=*/false);
  });
}

// Frees a message returned by any entry point of the shim (this file or
// onednn_linear.cpp).
void expcluster_free_error(char *message) { free(message); }

} // extern "C"
