// Exceptions thrown by flashattn. Every public call validates its arguments before it touches memory
// and reports a broken rule with one of these; nothing is written to the outputs in that case.
#pragma once

#include <stdexcept>
#include <string>

#include "flashattn/export.hpp"

namespace flashattn {

// Base of every exception the library throws.
class FLASHATTN_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An argument broke a documented rule (shape, dtype, stride, device, value). The message starts with the
// argument's name, e.g. "k: head_dim 96 does not match q head_dim 128". Python maps it to ValueError.
class FLASHATTN_API InvalidArgument : public Error {
 public:
  InvalidArgument(std::string argument, const std::string& rule)
      : Error(argument + ": " + rule), argument_(std::move(argument)) {}
  const std::string& argument() const noexcept { return argument_; }

 private:
  std::string argument_;
};

// A valid request that this build or backend does not implement (fp8, a backend not compiled in, ...).
// Python maps it to NotImplementedError.
class FLASHATTN_API NotSupported : public Error {
 public:
  using Error::Error;
};

// A failure reported by a device runtime (CUDA error codes) or by the operating system.
class FLASHATTN_API BackendError : public Error {
 public:
  using Error::Error;
};

}  // namespace flashattn
