// Printing and JSON output of `flashattn bench`.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench.hpp"
#include "flashattn/errors.hpp"

namespace flashattn::cli {
namespace {

constexpr double kGiga = 1e9;
constexpr double kTera = 1e12;
constexpr double kMillisecondsPerSecond = 1e3;
constexpr int kLabelWidth = 11;  // column where the values of the printed report start

std::string format(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof text, pattern, value);
  return text;
}

std::string dtype_flag(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "fp32";
    case DType::kFloat16:
      return "fp16";
    default:
      return "bf16";
  }
}

std::string mask_description(const BenchConfig& config) {
  const MaskSpec& mask = config.mask;
  const char* alignment = mask.alignment == CausalAlignment::kTopLeft ? "top-left" : "bottom-right";
  std::string text = mask.causal ? std::string("causal (") + alignment + ")" : "non-causal";
  if (mask.window_left >= 0 || mask.window_right >= 0) {
    text += ", window (" + std::to_string(mask.window_left) + ", " + std::to_string(mask.window_right) + ")";
    if (!mask.causal) text += std::string(" aligned ") + alignment;
  }
  if (config.softcap != 0.0f) text += ", softcap " + format("%g", config.softcap);
  return text;
}

// GFLOP/s on the CPU, TFLOP/s on a GPU, as each is usually quoted.
std::string throughput(double flops, double milliseconds, Backend backend) {
  const double per_second = flops / (milliseconds / kMillisecondsPerSecond);
  if (backend == Backend::kCUDA) return format("%.1f TFLOP/s", per_second / kTera);
  return format("%.1f GFLOP/s", per_second / kGiga);
}

void print_timing(std::ostream& stream, const char* label, const Timing& timing, double flops_exact,
                  double flops_convention, const BenchResult& result) {
  std::string padded = label;
  padded.resize(kLabelWidth, ' ');
  stream << padded << format("median %.3f ms", timing.median_ms) << format(", min %.3f ms", timing.min_ms) << " ("
         << result.config.iters << (result.config.iters == 1 ? " call" : " calls") << " after " << result.config.warmup
         << " warm-up)\n"
         << std::string(kLabelWidth, ' ') << throughput(flops_exact, timing.median_ms, result.backend)
         << " counting the visible pairs (" << format("%.2f", flops_exact / kGiga) << " GFLOP a call); "
         << throughput(flops_convention, timing.median_ms, result.backend) << " by the FlashAttention convention\n";
}

std::string error_text(const ErrorStat& stat) {
  return stat.name + format(" %.3g", stat.max_abs_error) + format(" (|ref| up to %.3g)", stat.max_abs_reference) +
         (stat.within_sanity_bound ? "" : " ABOVE THE SANITY BOUND");
}

// A minimal writer for one flat-ish JSON object.
class JsonObject {
 public:
  JsonObject& add(const std::string& key, const std::string& value) { return raw(key, quote(value)); }
  JsonObject& add(const std::string& key, const char* value) { return raw(key, quote(value)); }
  JsonObject& add(const std::string& key, bool value) { return raw(key, value ? "true" : "false"); }
  JsonObject& add(const std::string& key, std::int64_t value) { return raw(key, std::to_string(value)); }
  JsonObject& add(const std::string& key, int value) { return raw(key, std::to_string(value)); }
  JsonObject& add(const std::string& key, std::uint64_t value) { return raw(key, std::to_string(value)); }
  // JSON has no NaN or infinity: those become null.
  JsonObject& add(const std::string& key, double value) {
    return raw(key, std::isfinite(value) ? format("%.9g", value) : "null");
  }
  JsonObject& add(const std::string& key, const JsonObject& value) { return raw(key, value.str()); }
  std::string str() const { return "{" + body_ + "}"; }

 private:
  JsonObject& raw(const std::string& key, const std::string& value) {
    if (!body_.empty()) body_ += ", ";
    body_ += quote(key) + ": " + value;
    return *this;
  }
  static std::string quote(const std::string& text) {
    std::string quoted = "\"";
    for (char c : text) {
      if (c == '"' || c == '\\') {
        quoted += '\\';
        quoted += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        char escaped[8];
        std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
        quoted += escaped;
      } else {
        quoted += c;
      }
    }
    return quoted + "\"";
  }

  std::string body_;
};

JsonObject timing_json(const Timing& timing, double flops_exact, double flops_convention) {
  const double seconds = timing.median_ms / kMillisecondsPerSecond;
  JsonObject json;
  json.add("median_ms", timing.median_ms)
      .add("min_ms", timing.min_ms)
      .add("flops", flops_exact)
      .add("flops_convention", flops_convention)
      .add("gflops", flops_exact / seconds / kGiga)
      .add("gflops_convention", flops_convention / seconds / kGiga);
  return json;
}

JsonObject error_json(const ErrorStat& stat) {
  JsonObject json;
  json.add("max_abs_error", stat.max_abs_error)
      .add("max_abs_reference", stat.max_abs_reference)
      .add("compared", stat.compared)
      .add("within_sanity_bound", stat.within_sanity_bound);
  return json;
}

}  // namespace

void print_bench_report(const BenchResult& result, std::ostream& stream) {
  const BenchConfig& config = result.config;
  const AttentionShape& shape = config.shape;
  auto line = [&](std::string label, const std::string& value) {
    label.resize(kLabelWidth, ' ');
    stream << label << value << "\n";
  };
  stream << "flashattn bench " << result.version << "\n";
  line("problem", "batch " + std::to_string(shape.batch) + ", seqlen_q " + std::to_string(shape.seqlen_q) +
                      ", seqlen_k " + std::to_string(shape.seqlen_k) + ", heads " + std::to_string(shape.heads_q) +
                      " (kv " + std::to_string(config.heads_kv) + "), head_dim " + std::to_string(shape.head_dim) +
                      " (v " + std::to_string(shape.head_dim_v) + "), " + dtype_flag(config.dtype) + ", " +
                      mask_description(config));
  line("passes", config.backward ? "forward, backward" : "forward");
  std::string backend = std::string(backend_name(result.backend)) + " (" + result.backend_reason + ")";
  if (result.backend == Backend::kCPU) {
    backend += "; ISA " + result.cpu_isa + ", " + std::to_string(result.threads) +
               (result.threads == 1 ? " thread" : " threads") + (config.threads > 0 ? "" : " (OpenMP default)");
  }
  line("backend", backend);
  line("seed", std::to_string(result.seed));
  print_timing(stream, "forward", result.forward, result.forward_flops_exact, result.forward_flops_convention, result);
  if (result.backward) {
    print_timing(stream, "backward", *result.backward, kBackwardFlopsFactor * result.forward_flops_exact,
                 kBackwardFlopsFactor * result.forward_flops_convention, result);
  }
  if (result.out_error) {
    line("check", std::to_string(result.rows_checked) + " sampled rows against the float64 reference, max abs error: " +
                      error_text(*result.out_error) + "; " + error_text(*result.lse_error));
  } else {
    line("check", "off (--check-rows 0)");
  }
  if (config.backward && config.check_rows > 0) {
    std::string gradients = result.gradient_note;
    if (result.dq_error) {
      gradients += " against the float64 reference, max abs error: " + error_text(*result.dq_error) + "; " +
                   error_text(*result.dk_error) + "; " + error_text(*result.dv_error);
    }
    line("gradients", gradients);
  }
}

void write_bench_json(const BenchResult& result, const std::string& path) {
  const BenchConfig& config = result.config;
  const AttentionShape& shape = config.shape;
  JsonObject problem;
  problem.add("batch", shape.batch)
      .add("seqlen_q", shape.seqlen_q)
      .add("seqlen_k", shape.seqlen_k)
      .add("heads", shape.heads_q)
      .add("heads_kv", config.heads_kv)
      .add("head_dim", shape.head_dim)
      .add("head_dim_v", shape.head_dim_v)
      .add("dtype", dtype_flag(config.dtype))
      .add("causal", config.mask.causal)
      .add("alignment", config.mask.alignment == CausalAlignment::kTopLeft ? "top-left" : "bottom-right")
      .add("window_left", config.mask.window_left)
      .add("window_right", config.mask.window_right)
      .add("softcap", static_cast<double>(config.softcap));
  JsonObject json;
  json.add("tool", "flashattn bench")
      .add("version", result.version)
      .add("problem", problem)
      .add("backend", backend_name(result.backend))
      .add("backend_reason", result.backend_reason)
      .add("cpu_isa", result.cpu_isa)
      .add("threads", result.threads)
      .add("warmup", config.warmup)
      .add("iters", config.iters)
      .add("seed", result.seed)
      .add("forward", timing_json(result.forward, result.forward_flops_exact, result.forward_flops_convention));
  if (result.backward) {
    json.add("backward", timing_json(*result.backward, kBackwardFlopsFactor * result.forward_flops_exact,
                                     kBackwardFlopsFactor * result.forward_flops_convention));
  }
  JsonObject check;
  check.add("rows", result.rows_checked);
  for (const auto* stat :
       {&result.out_error, &result.lse_error, &result.dq_error, &result.dk_error, &result.dv_error}) {
    if (stat->has_value()) check.add((*stat)->name, error_json(**stat));
  }
  if (!result.gradient_note.empty()) check.add("gradients", result.gradient_note);
  check.add("passed", result.checks_passed());
  json.add("check", check);

  std::ofstream file(path);
  file << json.str() << "\n";
  file.close();
  if (!file) throw BackendError("--json: cannot write " + path);
}

}  // namespace flashattn::cli
