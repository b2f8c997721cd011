// The four attention entry points, as test parameters: the validation suites (CPU and CUDA) run each rule
// against the call it breaks and check that every unbroken call is accepted.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace flashattn::test {

enum class Api { kForward, kBackward, kForwardVarlen, kBackwardVarlen };

inline bool is_varlen(Api api) { return api == Api::kForwardVarlen || api == Api::kBackwardVarlen; }
inline bool is_backward(Api api) { return api == Api::kBackward || api == Api::kBackwardVarlen; }

inline const char* api_name(Api api) {
  switch (api) {
    case Api::kForward:
      return "forward";
    case Api::kBackward:
      return "backward";
    case Api::kForwardVarlen:
      return "forward_varlen";
    case Api::kBackwardVarlen:
      return "backward_varlen";
  }
  return "unknown";
}

// gtest values and parameter names for a suite over every entry point.
inline auto all_apis() {
  return testing::Values(Api::kForward, Api::kBackward, Api::kForwardVarlen, Api::kBackwardVarlen);
}
struct ApiName {
  std::string operator()(const testing::TestParamInfo<Api>& info) const { return api_name(info.param); }
};

}  // namespace flashattn::test
