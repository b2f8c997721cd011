// A small command-line flag parser for the flashattn tool: `--name value`, `--name=value` and switches.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flashattn::cli {

// Exit codes of the tool.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // a library error, or a result that failed its check
inline constexpr int kExitUsage = 2;    // bad command line

// A malformed command line (unknown flag, missing or malformed value). main() prints it and exits with
// kExitUsage, which keeps it apart from library errors.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The flags of one subcommand. Declare them, call parse(), then read them with the typed getters, which
// return the fallback when the flag was not given and throw UsageError when its value does not parse.
class FlagParser {
 public:
  explicit FlagParser(std::string command) : command_(std::move(command)) {}

  // A flag without a value, e.g. --causal.
  void add_switch(const std::string& name, std::string help);
  // A flag with a value, e.g. --batch N; `value_name` is the placeholder shown in the help.
  void add_value(const std::string& name, std::string value_name, std::string help);

  // Parses the arguments that follow the subcommand. `--help` / `-h` only sets help_requested().
  void parse(std::span<char* const> args);

  bool help_requested() const { return help_requested_; }
  bool given(std::string_view name) const;

  std::string string_or(std::string_view name, const std::string& fallback) const;
  std::int64_t int_or(std::string_view name, std::int64_t fallback, std::int64_t min_value,
                      std::int64_t max_value) const;
  double number_or(std::string_view name, double fallback) const;
  // The value, which must be one of `choices`.
  std::string choice_or(std::string_view name, const std::string& fallback,
                        std::initializer_list<std::string_view> choices) const;
  // A pair of integers written "A,B", e.g. --window 128,0.
  std::pair<std::int64_t, std::int64_t> int_pair_or(std::string_view name,
                                                    std::pair<std::int64_t, std::int64_t> fallback) const;

  // One line per flag, aligned, for the subcommand's --help.
  std::string flags_help() const;

 private:
  struct Flag {
    bool takes_value = false;
    std::string value_name;
    std::string help;
  };

  const Flag& declared(std::string_view name) const;
  // The raw value of a flag that was given; throws UsageError naming the flag otherwise.
  const std::string& raw_value(std::string_view name) const;
  [[noreturn]] void bad_value(std::string_view name, std::string_view expected) const;

  std::string command_;
  std::map<std::string, Flag, std::less<>> flags_;
  std::vector<std::string> declaration_order_;              // --help lists flags in the order they were declared
  std::map<std::string, std::string, std::less<>> values_;  // given flags; switches map to ""
  bool help_requested_ = false;
};

// Parses a whole decimal integer; false if `text` is not one or does not fit.
bool parse_int(std::string_view text, std::int64_t& value);

}  // namespace flashattn::cli
