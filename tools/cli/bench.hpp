// `flashattn bench`: the problem it runs, what it measured, and how that is reported.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

#include "flashattn/options.hpp"
#include "flashattn/tensor.hpp"
#include "flops.hpp"

namespace flashattn::cli {

// The built-in default problem is the CPU row of the project's baseline table:
// batch 1, seqlen 2048, 16 heads, head_dim 128, bf16, non-causal, forward.
struct BenchConfig {
  AttentionShape shape{1, 16, 2048, 2048, 128, 128};
  std::int64_t heads_kv = 16;
  DType dtype = DType::kBFloat16;
  MaskSpec mask;
  float softcap = 0.0f;
  bool backward = false;
  Backend backend = Backend::kAuto;
  int threads = 0;  // 0: OpenMP's default
  int warmup = 2;
  int iters = 10;
  int check_rows = 8;
  std::uint64_t seed = 0;
  bool seed_given = false;
  std::string json_path;  // empty: no JSON
};

// Median and minimum wall time of one call, over `iters` calls after the warm-up.
struct Timing {
  double median_ms = 0.0;
  double min_ms = 0.0;
};

// Largest error of one output against the float64 reference, and the largest reference magnitude
// (the scale that the error is read against).
struct ErrorStat {
  std::string name;
  double max_abs_error = 0.0;  // NaN when the output had a NaN where the reference did not
  double max_abs_reference = 0.0;
  std::int64_t compared = 0;  // values compared
  bool within_sanity_bound = true;
};

struct BenchResult {
  BenchConfig config;
  std::string version;
  Backend backend = Backend::kCPU;
  std::string backend_reason;  // why this backend ran
  std::string cpu_isa;
  int threads = 0;  // threads the CPU backend used
  std::uint64_t seed = 0;
  double forward_flops_exact = 0.0;
  double forward_flops_convention = 0.0;
  Timing forward;
  std::optional<Timing> backward;
  int rows_checked = 0;
  std::optional<ErrorStat> out_error, lse_error;
  // Gradients of one (batch, KV head) slice; empty when not checked, with the reason in gradient_note.
  std::optional<ErrorStat> dq_error, dk_error, dv_error;
  std::string gradient_note;

  bool checks_passed() const;
};

// Parses the flags that follow `flashattn bench`; prints the help and returns nullopt for --help.
std::optional<BenchConfig> parse_bench_flags(int argc, char* const* argv);
BenchResult run_bench(const BenchConfig& config);

void print_bench_report(const BenchResult& result, std::ostream& stream);
// Writes the result as one line of JSON (so that several runs concatenate into a JSON-lines file).
void write_bench_json(const BenchResult& result, const std::string& path);

const char* backend_name(Backend backend);

}  // namespace flashattn::cli
