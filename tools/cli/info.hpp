// `flashattn info`: the version, the backends compiled in and the devices found.
#pragma once

namespace flashattn::cli {

// Runs the subcommand on the arguments that follow `info`; returns the exit code.
int run_info_command(int argc, char* const* argv);

}  // namespace flashattn::cli
