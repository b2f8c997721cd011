#include "bench.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <iostream>
#include <limits>
#include <random>
#include <span>
#include <tuple>
#include <vector>

#include "args.hpp"
#include "flashattn/attention.hpp"
#include "flashattn/errors.hpp"
#include "flashattn/info.hpp"
#include "host_tensor.hpp"
#include "reference/reference.hpp"

namespace flashattn::cli {
namespace {

constexpr std::int64_t kMaxExtent = std::numeric_limits<std::int32_t>::max();
constexpr double kMaxTensorElements = 0x1p40;  // refuse problems whose tensors cannot be allocated anyway
constexpr std::int64_t kMaxRepeats = 1'000'000;
constexpr std::int64_t kMaxThreads = 4096;
// Seeds fit --seed's signed 64-bit parsing, so that a printed seed can be passed back.
constexpr std::uint64_t kMaxSeed = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

// Loose bounds on |result - float64 reference| / max(1, max |reference|): far above what a correct kernel
// gives (fp32 accumulation, inputs rounded identically for both), far below what a broken one gives.
// They are sanity checks for the benchmark, not the test suite's tolerance.
constexpr double kSanityBoundFp32 = 1e-3;
constexpr double kSanityBoundFp16 = 1e-2;
constexpr double kSanityBoundBf16 = 5e-2;

// The gradient check runs the float64 reference backward on one (batch, KV head) slice. Above this much work,
// group * seqlen_q * seqlen_k * (head_dim + head_dim_v), it would take more than a few seconds; the default
// problem (2048 * 2048 * 256, about 1.5 s here) is just inside.
constexpr double kMaxGradientCheckWork = 0x1p31;

// Streams of the random generator: one per input tensor and one for choosing what to check.
enum class RandomStream : std::uint64_t { kQuery = 1, kKey, kValue, kOutGrad, kSampler };

std::uint64_t stream_seed(std::uint64_t seed, RandomStream stream) {
  std::seed_seq sequence{seed & 0xffffffffu, seed >> 32, static_cast<std::uint64_t>(stream)};
  std::uint64_t mixed[2];
  sequence.generate(std::begin(mixed), std::end(mixed));
  return (mixed[0] << 32) ^ mixed[1];
}

const char* kBenchUsage =
    "usage: flashattn bench [flags]\n"
    "\n"
    "Times attention on one problem: the median and minimum time of a call after warm-up, the throughput,\n"
    "and the largest error of sampled output rows (and, with --backward, of one head's gradients) against\n"
    "a float64 reference. Inputs are fresh N(0, 1) samples. Without flags it runs the default problem:\n"
    "batch 1, seqlen 2048, 16 heads, head_dim 128, bf16, non-causal, forward.\n"
    "\n"
    "FLOPs: 2 * batch * heads * (head_dim + head_dim_v) per visible (query, key) pair (= 4*b*h*s_q*s_k*d\n"
    "without a mask), backward 2.5x forward. The main figure counts exactly the pairs that the causal mask\n"
    "or window leaves visible; the FlashAttention convention figure counts all pairs, halved when causal.\n"
    "\n"
    "flags:\n";

FlagParser make_bench_parser() {
  FlagParser parser("flashattn bench");
  parser.add_value("batch", "N", "batch size (default 1)");
  parser.add_value("seqlen-q", "N", "query sequence length (default 2048)");
  parser.add_value("seqlen-k", "N", "key/value sequence length (default: seqlen-q)");
  parser.add_value("heads", "N", "query heads (default 16)");
  parser.add_value("heads-kv", "N", "key/value heads, dividing heads: GQA/MQA (default: heads)");
  parser.add_value("head-dim", "N", "head dimension of q and k (default 128)");
  parser.add_value("head-dim-v", "N", "head dimension of v (default: head-dim)");
  parser.add_value("dtype", "fp32|fp16|bf16", "element type of q, k, v and the outputs (default bf16)");
  parser.add_switch("causal", "causal mask");
  parser.add_value("alignment", "A", "bottom-right (flash-attn, default) or top-left (PyTorch is_causal)");
  parser.add_value("window", "L,R", "sliding window: keys [i-L, i+R] around the diagonal; -1 = unbounded");
  parser.add_value("softcap", "X", "cap the scores with X*tanh(s/X) (default 0: off)");
  parser.add_switch("backward", "also time the backward pass (the forward runs first for out and lse)");
  parser.add_value("backend", "cpu|cuda|auto",
                   "where to run (default auto: the CPU; GPU timings: bench/gpu_attention.py)");
  parser.add_value("threads", "N", "CPU threads; 0 = OpenMP's default (default 0)");
  parser.add_value("warmup", "N", "untimed calls first (default 2)");
  parser.add_value("iters", "N", "timed calls (default 10)");
  parser.add_value("check-rows", "N", "output rows checked against the reference; 0 = no checks (default 8)");
  parser.add_value("seed", "N", "seed of the random inputs (default: a fresh one, printed)");
  parser.add_value("json", "PATH", "also write the results to PATH as one line of JSON");
  return parser;
}

DType parse_dtype(const std::string& name) {
  if (name == "fp32") return DType::kFloat32;
  if (name == "fp16") return DType::kFloat16;
  return DType::kBFloat16;
}

Backend parse_backend(const std::string& name) {
  if (name == "cpu") return Backend::kCPU;
  if (name == "cuda") return Backend::kCUDA;
  return Backend::kAuto;
}

struct BackendChoice {
  Backend backend = Backend::kCPU;
  std::string reason;
};

// The command-line bench times the CPU backend; GPU timings come from bench/gpu_attention.py, which runs
// PyTorch's attention backends in the same process. `auto` therefore means the CPU here.
BackendChoice choose_backend(Backend requested, const BuildInfo& info) {
  if (requested == Backend::kCPU) return {Backend::kCPU, "requested with --backend cpu"};
  if (requested == Backend::kAuto) {
    return {Backend::kCPU, "auto: flashattn bench times the CPU backend (GPU: bench/gpu_attention.py)"};
  }
  if (!info.cuda_kernels) {
    throw NotSupported(std::string("--backend cuda: this build has no CUDA attention kernels") +
                       (info.cuda_compiled ? "" : " (built without CUDA)"));
  }
  throw NotSupported(
      "--backend cuda: flashattn bench times the CPU backend; time the CUDA backend with bench/gpu_attention.py");
}

template <class Call>
Timing time_calls(const Call& call, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) call();
  std::vector<double> milliseconds;
  milliseconds.reserve(static_cast<std::size_t>(iters));
  for (int i = 0; i < iters; ++i) {
    const auto start = std::chrono::steady_clock::now();
    call();
    const auto stop = std::chrono::steady_clock::now();
    milliseconds.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  std::sort(milliseconds.begin(), milliseconds.end());
  const std::size_t middle = milliseconds.size() / 2;
  const double median =
      milliseconds.size() % 2 == 1 ? milliseconds[middle] : (milliseconds[middle - 1] + milliseconds[middle]) / 2.0;
  return {median, milliseconds.front()};
}

double sanity_bound(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return kSanityBoundFp32;
    case DType::kFloat16:
      return kSanityBoundFp16;
    default:
      return kSanityBoundBf16;
  }
}

// Adds one compared value; a NaN result (or an infinite error) sticks, so that it is never hidden.
void accumulate(ErrorStat& stat, double result, double reference) {
  const bool same_infinity = std::isinf(reference) && result == reference;  // fully masked rows: lse = -inf
  const double error = same_infinity ? 0.0 : std::abs(result - reference);
  if (std::isnan(error) || error > stat.max_abs_error) stat.max_abs_error = error;
  if (std::isfinite(reference)) stat.max_abs_reference = std::max(stat.max_abs_reference, std::abs(reference));
  ++stat.compared;
}

void finish(ErrorStat& stat, DType dtype) {
  stat.within_sanity_bound = stat.max_abs_error <= sanity_bound(dtype) * std::max(1.0, stat.max_abs_reference);
}

// The tensors of one benchmark, in flash-attn's (batch, seqlen, heads, head_dim) layout.
struct BenchTensors {
  HostTensor q, k, v, out, lse;
  // The backward's, allocated only with --backward.
  std::optional<HostTensor> dout = std::nullopt, dq = std::nullopt, dk = std::nullopt, dv = std::nullopt;
};

// View of batch element `batch_index`, heads [head_begin, head_begin + heads) of a (batch, seqlen, heads, dim)
// tensor.
TensorView head_slice(const HostTensor& tensor, std::int64_t batch_index, std::int64_t head_begin, std::int64_t heads) {
  TensorView view = tensor.view();
  const std::int64_t offset = batch_index * view.strides[0] + head_begin * view.strides[2];
  view.data = static_cast<std::byte*>(view.data) + offset * static_cast<std::int64_t>(dtype_size(view.dtype));
  view.shape[0] = 1;
  view.shape[2] = heads;
  return view;
}

void check_rows(const BenchConfig& config, const BenchTensors& tensors, const AttentionOptions& options,
                std::mt19937_64& sampler, BenchResult& result) {
  const AttentionShape& shape = config.shape;
  if (config.check_rows == 0 || shape.batch == 0 || shape.seqlen_q == 0) return;
  std::uniform_int_distribution<std::int64_t> pick_batch(0, shape.batch - 1), pick_head(0, shape.heads_q - 1),
      pick_row(0, shape.seqlen_q - 1);
  ErrorStat out_error{"out"}, lse_error{"lse"};
  for (int row = 0; row < config.check_rows; ++row) {
    const std::int64_t b = pick_batch(sampler), h = pick_head(sampler), i = pick_row(sampler);
    double reference_lse = 0.0;
    const std::vector<double> reference_out = reference::forward_row(
        tensors.q.view(), tensors.k.view(), tensors.v.view(), options, nullptr, b, h, i, &reference_lse);
    const std::int64_t out_row = ((b * shape.seqlen_q + i) * shape.heads_q + h) * shape.head_dim_v;
    for (std::int64_t c = 0; c < shape.head_dim_v; ++c) {
      accumulate(out_error, tensors.out.at(out_row + c), reference_out[static_cast<std::size_t>(c)]);
    }
    accumulate(lse_error, tensors.lse.at((b * shape.heads_q + h) * shape.seqlen_q + i), reference_lse);
  }
  finish(out_error, config.dtype);
  finish(lse_error, config.dtype);
  result.rows_checked = config.check_rows;
  result.out_error = out_error;
  result.lse_error = lse_error;
}

// Compares dq, dk, dv of one (batch, KV head) slice (its KV head and the query heads that share it) with the
// float64 reference backward of that slice.
void check_gradients(const BenchConfig& config, const BenchTensors& tensors, const AttentionOptions& options,
                     std::mt19937_64& sampler, BenchResult& result) {
  const AttentionShape& shape = config.shape;
  const std::int64_t group = shape.heads_q / config.heads_kv;
  const double work = static_cast<double>(group) * static_cast<double>(shape.seqlen_q) *
                      static_cast<double>(shape.seqlen_k) * static_cast<double>(shape.head_dim + shape.head_dim_v);
  if (work > kMaxGradientCheckWork) {
    result.gradient_note = "not checked: one KV head's backward is too large for the float64 reference";
    return;
  }
  const std::int64_t b = std::uniform_int_distribution<std::int64_t>(0, shape.batch - 1)(sampler);
  const std::int64_t g = std::uniform_int_distribution<std::int64_t>(0, config.heads_kv - 1)(sampler);
  const reference::BackwardResult expected = reference::backward(
      head_slice(tensors.q, b, g * group, group), head_slice(tensors.k, b, g, 1), head_slice(tensors.v, b, g, 1),
      head_slice(*tensors.dout, b, g * group, group), options, nullptr, reference::Precision::kFloat64);
  result.gradient_note = "batch " + std::to_string(b) + ", KV head " + std::to_string(g);

  // The reference is dense over the slice: (1, seqlen, heads_in_slice, dim).
  auto compare = [&](const char* name, const HostTensor& computed, const std::vector<double>& reference,
                     std::int64_t seqlen, std::int64_t heads, std::int64_t head_begin, std::int64_t slice_heads,
                     std::int64_t dim) {
    ErrorStat stat{name};
    for (std::int64_t t = 0; t < seqlen; ++t) {
      for (std::int64_t h = 0; h < slice_heads; ++h) {
        const std::int64_t computed_row = ((b * seqlen + t) * heads + head_begin + h) * dim;
        const std::int64_t reference_row = (t * slice_heads + h) * dim;
        for (std::int64_t c = 0; c < dim; ++c) {
          accumulate(stat, computed.at(computed_row + c), reference[static_cast<std::size_t>(reference_row + c)]);
        }
      }
    }
    finish(stat, config.dtype);
    return stat;
  };
  result.dq_error =
      compare("dq", *tensors.dq, expected.dq, shape.seqlen_q, shape.heads_q, g * group, group, shape.head_dim);
  result.dk_error = compare("dk", *tensors.dk, expected.dk, shape.seqlen_k, config.heads_kv, g, 1, shape.head_dim);
  result.dv_error = compare("dv", *tensors.dv, expected.dv, shape.seqlen_k, config.heads_kv, g, 1, shape.head_dim_v);
}

}  // namespace

bool BenchResult::checks_passed() const {
  for (const auto* stat : {&out_error, &lse_error, &dq_error, &dk_error, &dv_error}) {
    if (stat->has_value() && !(*stat)->within_sanity_bound) return false;
  }
  return true;
}

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::kCPU:
      return "cpu";
    case Backend::kCUDA:
      return "cuda";
    default:
      return "auto";
  }
}

std::optional<BenchConfig> parse_bench_flags(int argc, char* const* argv) {
  FlagParser flags = make_bench_parser();
  flags.parse(std::span<char* const>(argv, static_cast<std::size_t>(argc)));
  if (flags.help_requested()) {
    std::cout << kBenchUsage << flags.flags_help();
    return std::nullopt;
  }
  BenchConfig config;
  AttentionShape& shape = config.shape;
  shape.batch = flags.int_or("batch", shape.batch, 1, kMaxExtent);
  shape.seqlen_q = flags.int_or("seqlen-q", shape.seqlen_q, 0, kMaxExtent);
  shape.seqlen_k = flags.int_or("seqlen-k", shape.seqlen_q, 0, kMaxExtent);
  shape.heads_q = flags.int_or("heads", shape.heads_q, 1, kMaxExtent);
  config.heads_kv = flags.int_or("heads-kv", shape.heads_q, 1, kMaxExtent);
  shape.head_dim = flags.int_or("head-dim", shape.head_dim, 1, kMaxExtent);
  shape.head_dim_v = flags.int_or("head-dim-v", shape.head_dim, 1, kMaxExtent);
  config.dtype = parse_dtype(flags.choice_or("dtype", "bf16", {"fp32", "fp16", "bf16"}));
  config.mask.causal = flags.given("causal");
  config.mask.alignment = flags.choice_or("alignment", "bottom-right", {"bottom-right", "top-left"}) == "top-left"
                              ? CausalAlignment::kTopLeft
                              : CausalAlignment::kBottomRight;
  std::tie(config.mask.window_left, config.mask.window_right) = flags.int_pair_or("window", {-1, -1});
  for (std::int64_t edge : {config.mask.window_left, config.mask.window_right}) {
    if (edge < -1 || edge > kMaxExtent) throw UsageError("--window edges must be -1 (unbounded) or >= 0");
  }
  config.softcap = static_cast<float>(flags.number_or("softcap", 0.0));
  config.backward = flags.given("backward");
  config.backend = parse_backend(flags.choice_or("backend", "auto", {"cpu", "cuda", "auto"}));
  config.threads = static_cast<int>(flags.int_or("threads", 0, 0, kMaxThreads));
  config.warmup = static_cast<int>(flags.int_or("warmup", config.warmup, 0, kMaxRepeats));
  config.iters = static_cast<int>(flags.int_or("iters", config.iters, 1, kMaxRepeats));
  config.check_rows = static_cast<int>(flags.int_or("check-rows", config.check_rows, 0, kMaxRepeats));
  config.seed_given = flags.given("seed");
  config.seed = static_cast<std::uint64_t>(flags.int_or("seed", 0, 0, static_cast<std::int64_t>(kMaxSeed)));
  config.json_path = flags.string_or("json", "");

  const double widest_head = static_cast<double>(std::max(shape.head_dim, shape.head_dim_v));
  const double q_elements = static_cast<double>(shape.batch) * static_cast<double>(shape.seqlen_q) *
                            static_cast<double>(shape.heads_q) * widest_head;
  const double kv_elements = static_cast<double>(shape.batch) * static_cast<double>(shape.seqlen_k) *
                             static_cast<double>(config.heads_kv) * widest_head;
  if (std::max(q_elements, kv_elements) > kMaxTensorElements) throw UsageError("the problem is too large to allocate");
  return config;
}

BenchResult run_bench(const BenchConfig& config) {
  const BuildInfo info = build_info();
  const BackendChoice choice = choose_backend(config.backend, info);
  BenchResult result;
  result.config = config;
  result.version = info.version;
  result.backend = choice.backend;
  result.backend_reason = choice.reason;
  result.cpu_isa = info.cpu_isa;
  result.threads = config.threads > 0 ? config.threads : info.cpu_threads;
  std::random_device entropy;
  const std::uint64_t fresh_seed = ((std::uint64_t{entropy()} << 32) ^ entropy()) & kMaxSeed;
  result.seed = config.seed_given ? config.seed : fresh_seed;

  const AttentionShape& s = config.shape;
  const DType dtype = config.dtype;
  BenchTensors tensors{.q = HostTensor(dtype, {s.batch, s.seqlen_q, s.heads_q, s.head_dim}),
                       .k = HostTensor(dtype, {s.batch, s.seqlen_k, config.heads_kv, s.head_dim}),
                       .v = HostTensor(dtype, {s.batch, s.seqlen_k, config.heads_kv, s.head_dim_v}),
                       .out = HostTensor(dtype, {s.batch, s.seqlen_q, s.heads_q, s.head_dim_v}),
                       .lse = HostTensor(DType::kFloat32, {s.batch, s.heads_q, s.seqlen_q})};
  tensors.q.fill_normal(stream_seed(result.seed, RandomStream::kQuery));
  tensors.k.fill_normal(stream_seed(result.seed, RandomStream::kKey));
  tensors.v.fill_normal(stream_seed(result.seed, RandomStream::kValue));

  AttentionOptions options;
  options.causal = config.mask.causal;
  options.causal_alignment = config.mask.alignment;
  options.window_left = static_cast<int>(config.mask.window_left);
  options.window_right = static_cast<int>(config.mask.window_right);
  options.softcap = config.softcap;
  options.backend = choice.backend;
  options.num_threads = config.threads;

  result.forward = time_calls(
      [&] {
        forward(tensors.q.view(), tensors.k.view(), tensors.v.view(), tensors.out.view(), tensors.lse.view(), options);
      },
      config.warmup, config.iters);
  if (config.backward) {
    tensors.dout.emplace(dtype, std::initializer_list<std::int64_t>{s.batch, s.seqlen_q, s.heads_q, s.head_dim_v});
    tensors.dout->fill_normal(stream_seed(result.seed, RandomStream::kOutGrad));
    tensors.dq.emplace(dtype, std::initializer_list<std::int64_t>{s.batch, s.seqlen_q, s.heads_q, s.head_dim});
    tensors.dk.emplace(dtype, std::initializer_list<std::int64_t>{s.batch, s.seqlen_k, config.heads_kv, s.head_dim});
    tensors.dv.emplace(dtype, std::initializer_list<std::int64_t>{s.batch, s.seqlen_k, config.heads_kv, s.head_dim_v});
    result.backward = time_calls(
        [&] {
          backward(tensors.q.view(), tensors.k.view(), tensors.v.view(), tensors.out.view(), tensors.dout->view(),
                   tensors.lse.view(), tensors.dq->view(), tensors.dk->view(), tensors.dv->view(), options);
        },
        config.warmup, config.iters);
  }
  result.forward_flops_exact = forward_flops_exact(s, config.mask);
  result.forward_flops_convention = forward_flops_convention(s, config.mask.causal);

  std::mt19937_64 sampler(stream_seed(result.seed, RandomStream::kSampler));
  check_rows(config, tensors, options, sampler, result);
  if (config.backward && config.check_rows > 0) check_gradients(config, tensors, options, sampler, result);
  return result;
}

}  // namespace flashattn::cli
