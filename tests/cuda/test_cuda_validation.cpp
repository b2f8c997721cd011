// Validation rules particular to CUDA tensors: the dtypes the CUDA backend does not implement, tensors
// spread over devices, and rows that are not 16-byte aligned. As in tests/cpp/test_validation.cpp, each rule breaks one
// thing in a valid call, which must throw the documented exception, name the argument, and leave every output untouched
// (here: the device copies, read back, and the guards around them).
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "api_kinds.hpp"
#include "cuda_cases.hpp"
#include "device_memory.hpp"
#include "rejection.hpp"

namespace flashattn::test {
namespace {

using Kind = RejectionKind;

// An index no machine of the tests has; validation must reject the mix before it asks the device.
constexpr int kOtherDevice = 7;

Config valid_config(Api api, DType dtype) {
  Config c;
  c.device = Device::cuda(0);
  c.dtype = dtype;
  c.batch = 2;
  c.seqlen_q = 5;
  c.seqlen_k = 6;
  c.heads_q = 4;
  c.heads_kv = 2;
  c.head_dim = 64;
  c.head_dim_v = 64;
  c.alibi = Alibi::kPerHead;
  if (is_varlen(api)) {
    c.sequences = {{3, 4}, {2, 6}};
    c.seqused_k = {4, 5};
    c.varlen_label = "validation";
  }
  return c;
}

void invoke(Api api, const Arguments& a) {
  switch (api) {
    case Api::kForward:
      forward(a.q, a.k, a.v, a.out, a.lse, a.options);
      break;
    case Api::kBackward:
      backward(a.q, a.k, a.v, a.out, a.dout, a.lse, a.dq, a.dk, a.dv, a.options);
      break;
    case Api::kForwardVarlen:
      forward_varlen(a.q, a.k, a.v, a.out, a.lse, *a.seqlens, a.options);
      break;
    case Api::kBackwardVarlen:
      backward_varlen(a.q, a.k, a.v, a.out, a.dout, a.lse, a.dq, a.dk, a.dv, *a.seqlens, a.options);
      break;
  }
}

struct Rule {
  const char* name;
  Api api;
  DType dtype;
  Kind kind;
  const char* argument;  // the message starts with it; InvalidArgument::argument() names it
  const char* keyword;   // a word the message must contain
  std::function<void(Instance&)> break_rule;
};

Rule rule(const char* name, Api api, DType dtype, Kind kind, const char* argument, const char* keyword,
          std::function<void(Instance&)> break_rule) {
  return {name, api, dtype, kind, argument, keyword, std::move(break_rule)};
}

void PrintTo(const Rule& rule, std::ostream* os) { *os << rule.name; }

std::vector<Rule> rules() {
  using enum Api;
  using enum Kind;
  constexpr DType kFp16 = DType::kFloat16, kFp32 = DType::kFloat32;
  const auto unchanged = [](Instance&) {};
  return {
      rule("fp32_forward", kForward, kFp32, kNotSupported, "q", "fp32", unchanged),
      rule("fp32_backward", kBackward, kFp32, kNotSupported, "q", "fp32", unchanged),
      rule("fp32_forward_varlen", kForwardVarlen, kFp32, kNotSupported, "q", "fp32", unchanged),
      rule("fp32_backward_varlen", kBackwardVarlen, kFp32, kNotSupported, "q", "fp32", unchanged),
      rule("k_on_cpu", kForward, kFp16, kInvalidArgument, "k", "device", [](Instance& c) { c.args.k = c.k.view; }),
      rule("v_on_other_device", kBackward, kFp16, kInvalidArgument, "v", "device",
           [](Instance& c) { c.args.v.device = Device::cuda(kOtherDevice); }),
      rule("out_on_cpu", kForward, kFp16, kInvalidArgument, "out", "device",
           [](Instance& c) { c.args.out = c.out.view; }),
      rule("lse_on_other_device", kForwardVarlen, kFp16, kInvalidArgument, "lse", "device",
           [](Instance& c) { c.args.lse.device = Device::cuda(kOtherDevice); }),
      rule("dout_on_other_device", kBackward, kFp16, kInvalidArgument, "dout", "device",
           [](Instance& c) { c.args.dout.device = Device::cuda(kOtherDevice); }),
      rule("dq_on_cpu", kBackwardVarlen, kFp16, kInvalidArgument, "dq", "device",
           [](Instance& c) { c.args.dq = c.dq.view; }),
      rule("cu_seqlens_k_on_cpu", kForwardVarlen, kFp16, kInvalidArgument, "cu_seqlens_k", "device",
           [](Instance& c) { c.args.seqlens->cu_seqlens_k = c.cu_seqlens_k.view; }),
      rule("seqused_k_on_cpu", kBackwardVarlen, kFp16, kInvalidArgument, "seqused_k", "device",
           [](Instance& c) { c.args.seqlens->seqused_k = c.seqused_k.view; }),
      rule("alibi_slopes_on_cpu", kForward, kFp16, kInvalidArgument, "alibi_slopes", "device",
           [](Instance& c) { c.args.options.alibi_slopes = c.alibi_slopes.view; }),
      rule("cpu_backend_with_cuda_tensors", kBackward, kFp16, kInvalidArgument, "backend", "cpu",
           [](Instance& c) { c.args.options.backend = Backend::kCPU; }),
      // The kernels copy rows in 16-byte pieces; the calls are rejected before anything is read.
      rule("q_pointer_not_16_byte_aligned", kForward, kFp16, kNotSupported, "q", "16-byte",
           [](Instance& c) { c.args.q.data = static_cast<char*>(c.args.q.data) + sizeof(std::uint16_t); }),
      rule("v_token_stride_not_multiple_of_8", kForwardVarlen, kFp16, kNotSupported, "v", "16-byte",
           [](Instance& c) { c.args.v.strides[0] += 4; }),
      rule("dout_head_stride_not_multiple_of_8", kBackward, kFp16, kNotSupported, "dout", "16-byte",
           [](Instance& c) { c.args.dout.strides[2] += 4; }),
      rule("dk_pointer_not_16_byte_aligned", kBackwardVarlen, kFp16, kNotSupported, "dk", "16-byte",
           [](Instance& c) { c.args.dk.data = static_cast<char*>(c.args.dk.data) + sizeof(std::uint16_t); }),
  };
}

// A rejected call must not have written anything: every output's device copy, read back, is still poison.
testing::AssertionResult outputs_untouched(const Instance& c) {
  copy_outputs_to_host(c);
  const std::pair<const char*, const Tensor*> outputs[] = {
      {"out", &c.out}, {"lse", &c.lse}, {"dq", &c.dq}, {"dk", &c.dk}, {"dv", &c.dv}};
  for (const auto& [name, t] : outputs) {
    testing::AssertionResult untouched = still_poisoned(name, *t);
    if (!untouched) return untouched;
  }
  return testing::AssertionSuccess();
}

class CudaValidationRule : public CudaParamTest<Rule> {};

TEST_P(CudaValidationRule, RejectsAndLeavesOutputsUntouched) {
  const Rule& rule = GetParam();
  Instance c = make_instance(valid_config(rule.api, rule.dtype));
  rule.break_rule(c);
  expect_rejected([&] { invoke(rule.api, c.args); }, rule.kind, rule.argument, {rule.keyword});
  EXPECT_TRUE(outputs_untouched(c));
}

INSTANTIATE_TEST_SUITE_P(Rules, CudaValidationRule, testing::ValuesIn(rules()),
                         [](const testing::TestParamInfo<Rule>& info) { return std::string(info.param.name); });

// The unbroken fp16 calls the device rules start from are accepted, so each rule test fails for its own reason.
class CudaValidCall : public CudaParamTest<Api> {};

TEST_P(CudaValidCall, IsAccepted) {
  const Instance c = make_instance(valid_config(GetParam(), DType::kFloat16));
  if (is_backward(GetParam())) {
    ASSERT_NO_THROW(call_forward(c));  // the backward reads a real out and lse
  }
  EXPECT_NO_THROW(invoke(GetParam(), c.args));
  EXPECT_NO_THROW(copy_outputs_to_host(c));
}

INSTANTIATE_TEST_SUITE_P(Apis, CudaValidCall, all_apis(), ApiName());

}  // namespace
}  // namespace flashattn::test
