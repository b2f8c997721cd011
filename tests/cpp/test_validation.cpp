// One test per validation rule of src/validate.cpp: a valid call with one thing broken must throw the
// documented exception type, name the argument, say which rule broke, and leave every output untouched.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "api_kinds.hpp"
#include "flashattn/info.hpp"
#include "rejection.hpp"
#include "test_case.hpp"

namespace flashattn::test {
namespace {

using Kind = RejectionKind;

// A valid call whose arguments a rule test breaks one at a time. The views start as the Instance's.
struct Call {
  Instance instance;
  TensorView q, k, v, out, lse, dout, dq, dk, dv;
  std::optional<VarlenSeqlens> seqlens;
  AttentionOptions options;
  std::vector<Tensor> keep_alive;  // replacement tensors a rule test allocates

  std::int32_t* cu_seqlens_q() { return static_cast<std::int32_t*>(seqlens->cu_seqlens_q.data); }
  std::int32_t* cu_seqlens_k() { return static_cast<std::int32_t*>(seqlens->cu_seqlens_k.data); }
};

Call make_call(Api api) {
  Config config;
  config.batch = 2;
  config.seqlen_q = 5;
  config.seqlen_k = 6;
  config.heads_q = 4;
  config.heads_kv = 2;
  config.head_dim = 16;
  config.head_dim_v = 24;
  if (is_varlen(api)) {
    config.sequences = {{3, 4}, {2, 6}};
    config.seqused_k = {4, 5};
    config.varlen_label = "validation";
  }
  Call call;
  call.instance = make_instance(config);
  const Instance& c = call.instance;
  call.q = c.q.view;
  call.k = c.k.view;
  call.v = c.v.view;
  call.out = c.out.view;
  call.lse = c.lse.view;
  call.dout = c.dout.view;
  call.dq = c.dq.view;
  call.dk = c.dk.view;
  call.dv = c.dv.view;
  call.seqlens = c.seqlens;
  call.options = c.options;
  return call;
}

void invoke(Api api, const Call& c) {
  switch (api) {
    case Api::kForward:
      forward(c.q, c.k, c.v, c.out, c.lse, c.options);
      break;
    case Api::kBackward:
      backward(c.q, c.k, c.v, c.out, c.dout, c.lse, c.dq, c.dk, c.dv, c.options);
      break;
    case Api::kForwardVarlen:
      forward_varlen(c.q, c.k, c.v, c.out, c.lse, *c.seqlens, c.options);
      break;
    case Api::kBackwardVarlen:
      backward_varlen(c.q, c.k, c.v, c.out, c.dout, c.lse, c.dq, c.dk, c.dv, *c.seqlens, c.options);
      break;
  }
}

// A rejected call must not have written anything: every output storage still holds only poison.
testing::AssertionResult outputs_untouched(const Call& c) {
  const Instance& i = c.instance;
  for (const Tensor* t : {&i.out, &i.lse, &i.dq, &i.dk, &i.dv}) {
    const Storage& storage = *t->storage;
    for (std::int64_t e = 0; e < storage.elements(); ++e) {
      if (!std::isnan(reference::load_element(storage.at(e), storage.dtype))) {
        return testing::AssertionFailure() << "an output was written before the call was rejected";
      }
    }
  }
  return testing::AssertionSuccess();
}

struct Rule {
  const char* name;
  Api api;
  Kind kind;
  const char* argument;
  std::vector<const char*> keywords;  // words the message must contain
  std::function<void(Call&)> break_rule;
};

Rule rule(const char* name, Api api, Kind kind, const char* argument, std::vector<const char*> keywords,
          std::function<void(Call&)> break_rule) {
  return {name, api, kind, argument, std::move(keywords), std::move(break_rule)};
}

void PrintTo(const Rule& rule, std::ostream* os) { *os << rule.name; }

constexpr std::int64_t kCudaDevice = 0;

std::vector<Rule> rules() {
  const float kNaN = std::numeric_limits<float>::quiet_NaN();
  const float kInf = std::numeric_limits<float>::infinity();
  using enum Api;
  using enum Kind;
  std::vector<Rule> list = {
      // Tensor layout rules, checked for each input.
      rule("q_rank", kForward, kInvalidArgument, "q", {"4 dimensions"}, [](Call& c) { c.q.rank = 3; }),
      rule("k_rank", kForward, kInvalidArgument, "k", {"4 dimensions"}, [](Call& c) { c.k.rank = 2; }),
      rule("v_rank", kForward, kInvalidArgument, "v", {"4 dimensions"}, [](Call& c) { c.v.rank = 3; }),
      rule("varlen_q_rank", kForwardVarlen, kInvalidArgument, "q", {"3 dimensions"}, [](Call& c) { c.q.rank = 4; }),
      rule("negative_extent", kForward, kInvalidArgument, "k", {"negative"}, [](Call& c) { c.k.shape[1] = -1; }),
      rule("negative_stride", kForward, kInvalidArgument, "v", {"negative"}, [](Call& c) { c.v.strides[0] = -1; }),
      rule("last_dim_not_contiguous", kForward, kInvalidArgument, "q", {"contiguous"},
           [](Call& c) { c.q.strides[3] = 2; }),
      rule("null_data", kForward, kInvalidArgument, "k", {"null"}, [](Call& c) { c.k.data = nullptr; }),

      // dtypes.
      rule("q_dtype_int32", kForward, kInvalidArgument, "q", {"dtype", "int32", "not supported"},
           [](Call& c) { c.q.dtype = DType::kInt32; }),
      rule("q_dtype_fp8", kForward, kNotSupported, "q", {"fp8"},
           [](Call& c) {
             for (TensorView* t : {&c.q, &c.k, &c.v, &c.out}) t->dtype = DType::kFloat8E4M3;
           }),
      rule("k_dtype", kForward, kInvalidArgument, "k", {"dtype", "fp16", "fp32"},
           [](Call& c) { c.k.dtype = DType::kFloat16; }),
      rule("v_dtype", kForward, kInvalidArgument, "v", {"dtype"}, [](Call& c) { c.v.dtype = DType::kBFloat16; }),

      // Devices.
      rule("k_device", kForward, kInvalidArgument, "k", {"device", "cuda:0"},
           [](Call& c) { c.k.device = Device::cuda(kCudaDevice); }),

      // Heads and head dims.
      rule("heads_q_zero", kForward, kInvalidArgument, "q", {"heads_q"}, [](Call& c) { c.q.shape[2] = 0; }),
      rule("heads_kv_zero", kForward, kInvalidArgument, "k", {"heads_kv"},
           [](Call& c) {
             c.k.shape[2] = 0;
             c.v.shape[2] = 0;
           }),
      rule("heads_not_multiple", kForward, kInvalidArgument, "q", {"multiple", "heads_kv"},
           [](Call& c) { c.q.shape[2] = 3; }),
      rule("k_head_dim_mismatch", kForward, kInvalidArgument, "k", {"head_dim"}, [](Call& c) { c.k.shape[3] = 8; }),
      rule("head_dim_not_multiple_of_8", kForward, kInvalidArgument, "q", {"head_dim", "multiple of 8"},
           [](Call& c) {
             c.q.shape[3] = 12;
             c.k.shape[3] = 12;
           }),
      rule("head_dim_above_256", kForward, kInvalidArgument, "q", {"head_dim", "256"},
           [](Call& c) {
             c.q.shape[3] = 264;
             c.k.shape[3] = 264;
           }),
      rule("head_dim_v_not_multiple_of_8", kForward, kInvalidArgument, "v", {"head_dim_v", "multiple of 8"},
           [](Call& c) { c.v.shape[3] = 20; }),
      rule("v_heads_mismatch", kForward, kInvalidArgument, "v", {"heads"}, [](Call& c) { c.v.shape[2] = 1; }),
      rule("v_tokens_mismatch", kForward, kInvalidArgument, "v", {"k"}, [](Call& c) { c.v.shape[1] = 5; }),
      rule("varlen_v_tokens_mismatch", kForwardVarlen, kInvalidArgument, "v", {"k"}, [](Call& c) { c.v.shape[0] = 9; }),
      rule("k_batch_mismatch", kForward, kInvalidArgument, "k", {"batch"},
           [](Call& c) {
             c.k.shape[0] = 1;
             c.v.shape[0] = 1;
           }),

      // Outputs.
      rule("out_rank", kForward, kInvalidArgument, "out", {"4 dimensions"}, [](Call& c) { c.out.rank = 3; }),
      rule("out_dtype", kForward, kInvalidArgument, "out", {"dtype"}, [](Call& c) { c.out.dtype = DType::kFloat16; }),
      rule("out_device", kForward, kInvalidArgument, "out", {"device"},
           [](Call& c) { c.out.device = Device::cuda(kCudaDevice); }),
      rule("out_shape", kForward, kInvalidArgument, "out", {"shape"}, [](Call& c) { c.out.shape[3] = 16; }),
      rule("out_broadcast", kForward, kInvalidArgument, "out", {"stride 0"}, [](Call& c) { c.out.strides[1] = 0; }),
      rule("lse_device", kForward, kInvalidArgument, "lse", {"device"},
           [](Call& c) { c.lse.device = Device::cuda(kCudaDevice); }),
      rule("lse_dtype", kForward, kInvalidArgument, "lse", {"fp32"}, [](Call& c) { c.lse.dtype = DType::kFloat16; }),
      rule("lse_rank", kForward, kInvalidArgument, "lse", {"3 dimensions"}, [](Call& c) { c.lse.rank = 2; }),
      rule("lse_shape", kForward, kInvalidArgument, "lse", {"shape"}, [](Call& c) { c.lse.shape[2] = 4; }),
      rule("lse_broadcast", kForward, kInvalidArgument, "lse", {"stride 0"}, [](Call& c) { c.lse.strides[1] = 0; }),
      rule("varlen_out_shape", kForwardVarlen, kInvalidArgument, "out", {"shape"}, [](Call& c) { c.out.shape[0] = 4; }),
      rule("varlen_lse_shape", kForwardVarlen, kInvalidArgument, "lse", {"shape"}, [](Call& c) { c.lse.shape[1] = 4; }),

      // Backward tensors.
      rule("dout_shape", kBackward, kInvalidArgument, "dout", {"shape"}, [](Call& c) { c.dout.shape[1] = 4; }),
      rule("dq_shape", kBackward, kInvalidArgument, "dq", {"shape"}, [](Call& c) { c.dq.shape[2] = 2; }),
      rule("dk_shape", kBackward, kInvalidArgument, "dk", {"shape"}, [](Call& c) { c.dk.shape[1] = 5; }),
      rule("dv_shape", kBackwardVarlen, kInvalidArgument, "dv", {"shape"}, [](Call& c) { c.dv.shape[2] = 8; }),
      rule("dout_dtype", kBackward, kInvalidArgument, "dout", {"dtype"},
           [](Call& c) { c.dout.dtype = DType::kFloat16; }),
      rule("dq_dtype", kBackward, kInvalidArgument, "dq", {"dtype"}, [](Call& c) { c.dq.dtype = DType::kBFloat16; }),
      rule("dv_device", kBackward, kInvalidArgument, "dv", {"device"},
           [](Call& c) { c.dv.device = Device::cuda(kCudaDevice); }),
      rule("dk_rank", kBackward, kInvalidArgument, "dk", {"4 dimensions"}, [](Call& c) { c.dk.rank = 3; }),
      rule("dk_broadcast", kBackward, kInvalidArgument, "dk", {"stride 0"}, [](Call& c) { c.dk.strides[1] = 0; }),
      rule("backward_lse_shape", kBackward, kInvalidArgument, "lse", {"shape"}, [](Call& c) { c.lse.shape[1] = 2; }),

      // Options.
      rule("softmax_scale_nan", kForward, kInvalidArgument, "softmax_scale", {"finite"},
           [kNaN](Call& c) { c.options.softmax_scale = kNaN; }),
      rule("softmax_scale_inf", kBackward, kInvalidArgument, "softmax_scale", {"finite"},
           [kInf](Call& c) { c.options.softmax_scale = kInf; }),
      rule("softcap_negative", kForward, kInvalidArgument, "softcap", {">= 0"},
           [](Call& c) { c.options.softcap = -1.0f; }),
      rule("softcap_inf", kForward, kInvalidArgument, "softcap", {"finite"},
           [kInf](Call& c) { c.options.softcap = kInf; }),
      rule("window_left_below_minus_1", kForward, kInvalidArgument, "window_left", {">= -1"},
           [](Call& c) { c.options.window_left = -2; }),
      rule("window_right_below_minus_1", kForward, kInvalidArgument, "window_right", {">= -1"},
           [](Call& c) { c.options.window_right = -5; }),
      rule("causal_with_window_right", kForward, kInvalidArgument, "window_right", {"causal"},
           [](Call& c) {
             c.options.causal = true;
             c.options.window_right = 2;
           }),
      rule("num_threads_negative", kForward, kInvalidArgument, "num_threads", {">= 0"},
           [](Call& c) { c.options.num_threads = -1; }),

      // ALiBi slopes.
      rule("alibi_dtype", kForward, kInvalidArgument, "alibi_slopes", {"fp32"},
           [](Call& c) {
             c.keep_alive.push_back(make_dense(DType::kFloat16, {c.q.shape[2]}));
             c.options.alibi_slopes = c.keep_alive.back().view;
           }),
      rule("alibi_heads", kForward, kInvalidArgument, "alibi_slopes", {"heads_q"},
           [](Call& c) {
             c.keep_alive.push_back(make_dense(DType::kFloat32, {c.q.shape[2] + 1}));
             c.options.alibi_slopes = c.keep_alive.back().view;
           }),
      rule("alibi_batch", kForwardVarlen, kInvalidArgument, "alibi_slopes", {"batch"},
           [](Call& c) {
             c.keep_alive.push_back(make_dense(DType::kFloat32, {3, c.q.shape[1]}));
             c.options.alibi_slopes = c.keep_alive.back().view;
           }),
      rule("alibi_rank", kForward, kInvalidArgument, "alibi_slopes", {"dimensions"},
           [](Call& c) {
             c.keep_alive.push_back(make_dense(DType::kFloat32, {2, c.q.shape[2], 1}));
             c.options.alibi_slopes = c.keep_alive.back().view;
           }),
      rule("alibi_device", kForward, kInvalidArgument, "alibi_slopes", {"device"},
           [](Call& c) {
             c.keep_alive.push_back(make_dense(DType::kFloat32, {c.q.shape[2]}));
             c.keep_alive.back().view.device = Device::cuda(kCudaDevice);
             c.options.alibi_slopes = c.keep_alive.back().view;
           }),

      // Backend selection.
      rule("cpu_backend_with_cuda_tensors", kForward, kInvalidArgument, "backend", {"cpu"},
           [](Call& c) {
             for (TensorView* t : {&c.q, &c.k, &c.v, &c.out, &c.lse}) t->device = Device::cuda(kCudaDevice);
           }),
      rule("cuda_backend_with_cpu_tensors", kForward, kInvalidArgument, "backend", {"cuda"},
           [](Call& c) { c.options.backend = Backend::kCUDA; }),

      // Variable-length index tensors.
      rule("cu_seqlens_q_rank", kForwardVarlen, kInvalidArgument, "cu_seqlens_q", {"dimension"},
           [](Call& c) { c.seqlens->cu_seqlens_q.rank = 2; }),
      rule("cu_seqlens_q_empty", kForwardVarlen, kInvalidArgument, "cu_seqlens_q", {"at least one entry"},
           [](Call& c) { c.seqlens->cu_seqlens_q.shape[0] = 0; }),
      rule("cu_seqlens_q_dtype", kForwardVarlen, kInvalidArgument, "cu_seqlens_q", {"int32"},
           [](Call& c) { c.seqlens->cu_seqlens_q.dtype = DType::kFloat32; }),
      rule("cu_seqlens_k_length", kBackwardVarlen, kInvalidArgument, "cu_seqlens_k", {"shape"},
           [](Call& c) { c.seqlens->cu_seqlens_k.shape[0] = 2; }),
      rule("cu_seqlens_k_device", kForwardVarlen, kInvalidArgument, "cu_seqlens_k", {"device"},
           [](Call& c) { c.seqlens->cu_seqlens_k.device = Device::cuda(kCudaDevice); }),
      rule("max_seqlen_q_negative", kForwardVarlen, kInvalidArgument, "max_seqlen_q", {">= 0"},
           [](Call& c) { c.seqlens->max_seqlen_q = -1; }),
      rule("max_seqlen_k_too_small", kForwardVarlen, kInvalidArgument, "max_seqlen_k", {"6 tokens", "more than"},
           [](Call& c) { c.seqlens->max_seqlen_k = 5; }),
      rule("cu_seqlens_q_first_negative", kForwardVarlen, kInvalidArgument, "cu_seqlens_q", {"negative"},
           [](Call& c) { c.cu_seqlens_q()[0] = -1; }),
      rule("cu_seqlens_q_decreasing", kForwardVarlen, kInvalidArgument, "cu_seqlens_q", {"non-decreasing"},
           [](Call& c) { c.cu_seqlens_q()[2] = 2; }),
      rule("cu_seqlens_k_past_tokens", kBackwardVarlen, kInvalidArgument, "cu_seqlens_k", {"exceeds"},
           [](Call& c) {
             c.cu_seqlens_k()[2] = 11;  // one past the 10 key tokens
             c.seqlens->max_seqlen_k = 7;
           }),
      rule("seqused_k_length", kForwardVarlen, kInvalidArgument, "seqused_k", {"shape"},
           [](Call& c) { c.seqlens->seqused_k->shape[0] = 3; }),
      rule("seqused_k_dtype", kForwardVarlen, kInvalidArgument, "seqused_k", {"int32"},
           [](Call& c) { c.seqlens->seqused_k->dtype = DType::kFloat32; }),
      rule("seqused_k_above_length", kBackwardVarlen, kInvalidArgument, "seqused_k", {"outside"},
           [](Call& c) { static_cast<std::int32_t*>(c.seqlens->seqused_k->data)[1] = 7; }),
      rule("seqused_k_negative", kForwardVarlen, kInvalidArgument, "seqused_k", {"outside"},
           [](Call& c) { static_cast<std::int32_t*>(c.seqlens->seqused_k->data)[0] = -1; }),
  };
  // A build without the CUDA backend rejects CUDA tensors. One with it would run its kernels on these host
  // pointers: its CUDA rules are tested on device memory (tests/cuda/test_cuda_validation.cpp).
  if (!build_info().cuda_compiled) {
    list.push_back(rule("cuda_tensors_in_cpu_only_build", kBackward, kNotSupported, "q", {"cuda"}, [](Call& c) {
      for (TensorView* t : {&c.q, &c.k, &c.v, &c.out, &c.lse, &c.dout, &c.dq, &c.dk, &c.dv}) {
        t->device = Device::cuda(kCudaDevice);
      }
      c.options.backend = Backend::kAuto;
    }));
  }
  return list;
}

class ValidationRule : public testing::TestWithParam<Rule> {};

TEST_P(ValidationRule, RejectsAndLeavesOutputsUntouched) {
  const Rule& rule = GetParam();
  Call call = make_call(rule.api);
  rule.break_rule(call);
  expect_rejected([&] { invoke(rule.api, call); }, rule.kind, rule.argument, rule.keywords);
  EXPECT_TRUE(outputs_untouched(call));
}

INSTANTIATE_TEST_SUITE_P(Rules, ValidationRule, testing::ValuesIn(rules()),
                         [](const testing::TestParamInfo<Rule>& info) { return std::string(info.param.name); });

// The unbroken calls the rules start from are accepted, so each rule test fails for its own reason.
class ValidCall : public testing::TestWithParam<Api> {};

TEST_P(ValidCall, IsAccepted) {
  const Call call = make_call(GetParam());
  EXPECT_NO_THROW(invoke(GetParam(), call));
}

INSTANTIATE_TEST_SUITE_P(Apis, ValidCall, all_apis(), ApiName());

}  // namespace
}  // namespace flashattn::test
