// The flashattn command-line tool: `flashattn bench` and `flashattn info`.
//
// Exit codes: 0 success; 1 a library error (printed as "error: <message>") or a benchmark whose results fail
// their sanity check; 2 a malformed command line.
#include <fstream>
#include <iostream>
#include <new>
#include <string>
#include <string_view>

#include "args.hpp"
#include "bench.hpp"
#include "flashattn/errors.hpp"
#include "flashattn/info.hpp"
#include "info.hpp"

namespace {

using flashattn::cli::kExitFailure;
using flashattn::cli::kExitOk;
using flashattn::cli::kExitUsage;

const char* kUsage =
    "usage: flashattn <command> [flags]\n"
    "\n"
    "flashattn: exact, IO-aware attention (the FlashAttention algorithm) for CPUs and NVIDIA GPUs.\n"
    "\n"
    "commands:\n"
    "  bench    time attention on one problem (by default batch 1, seqlen 2048, 16 heads, head_dim 128,\n"
    "           bf16, forward) and check it against a float64 reference\n"
    "  info     print the version, the backends compiled in and the CUDA devices found\n"
    "\n"
    "`flashattn <command> --help` lists a command's flags. `flashattn --version` prints the version.\n"
    "Exit codes: 0 success, 1 error (or results failing their check), 2 bad command line.\n";

int run_bench_command(int argc, char* const* argv) {
  const auto config = flashattn::cli::parse_bench_flags(argc, argv);
  if (!config) return kExitOk;
  if (!config->json_path.empty() && !std::ofstream(config->json_path)) {
    // Found out now rather than after a long benchmark.
    throw flashattn::BackendError("--json: cannot write " + config->json_path);
  }
  const flashattn::cli::BenchResult result = flashattn::cli::run_bench(*config);
  flashattn::cli::print_bench_report(result, std::cout);
  if (!config->json_path.empty()) flashattn::cli::write_bench_json(result, config->json_path);
  if (!result.checks_passed()) {
    std::cerr << "error: the results differ from the float64 reference by more than the sanity bound\n";
    return kExitFailure;
  }
  return kExitOk;
}

int dispatch(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  const std::string_view command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return kExitOk;
  }
  if (command == "--version") {
    std::cout << "flashattn " << flashattn::build_info().version << "\n";
    return kExitOk;
  }
  if (command == "bench") return run_bench_command(argc - 2, argv + 2);
  if (command == "info") return flashattn::cli::run_info_command(argc - 2, argv + 2);
  throw flashattn::cli::UsageError("unknown command '" + std::string(command) + "' (see flashattn --help)");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return dispatch(argc, argv);
  } catch (const flashattn::cli::UsageError& error) {
    std::cerr << "error: " << error.what() << "\n";
    return kExitUsage;
  } catch (const flashattn::Error& error) {
    std::cerr << "error: " << error.what() << "\n";
    return kExitFailure;
  } catch (const std::bad_alloc&) {
    std::cerr << "error: out of memory\n";
    return kExitFailure;
  }
}
