// The shim's way of returning a new tensor across the FFI (trainer/src/native): the
// result is null and *out a new handle on success, or the exception's message.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <exception>

namespace expcluster {

// Runs `make` and hands its tensor to the caller as a new handle in *out (tch takes
// ownership); a libtorch exception comes back as its message, and *out is untouched.
template <typename F> char *handed_over(F &&make, at::Tensor **out) {
  try {
    *out = new at::Tensor(make());
    return nullptr;
  } catch (const c10::Error &err) {
    return strdup(err.what_without_backtrace());
  } catch (const std::exception &err) {
    return strdup(err.what());
  } catch (...) {
    return strdup("unknown libtorch exception");
  }
}

} // namespace expcluster
