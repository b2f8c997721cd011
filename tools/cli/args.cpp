#include "args.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <sstream>

namespace flashattn::cli {
namespace {

constexpr std::string_view kFlagPrefix = "--";
constexpr std::size_t kHelpColumn = 28;  // where a flag's description starts in --help

}  // namespace

bool parse_int(std::string_view text, std::int64_t& value) {
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  return !text.empty() && error == std::errc{} && ptr == end;
}

void FlagParser::add_switch(const std::string& name, std::string help) {
  flags_[name] = Flag{false, "", std::move(help)};
  declaration_order_.push_back(name);
}

void FlagParser::add_value(const std::string& name, std::string value_name, std::string help) {
  flags_[name] = Flag{true, std::move(value_name), std::move(help)};
  declaration_order_.push_back(name);
}

void FlagParser::parse(std::span<char* const> args) {
  for (std::size_t index = 0; index < args.size(); ++index) {
    std::string_view arg = args[index];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      continue;
    }
    if (!arg.starts_with(kFlagPrefix) || arg.size() == kFlagPrefix.size()) {
      throw UsageError("unexpected argument '" + std::string(arg) + "' for '" + command_ + "' (see " + command_ +
                       " --help)");
    }
    std::string_view body = arg.substr(kFlagPrefix.size());
    std::string_view name = body;
    std::optional<std::string_view> inline_value;
    if (auto equals = body.find('='); equals != std::string_view::npos) {
      name = body.substr(0, equals);
      inline_value = body.substr(equals + 1);
    }
    auto flag = flags_.find(name);
    if (flag == flags_.end()) {
      throw UsageError("unknown flag --" + std::string(name) + " for '" + command_ + "' (see " + command_ + " --help)");
    }
    if (values_.contains(name)) throw UsageError("--" + std::string(name) + " is given more than once");
    std::string value;
    if (flag->second.takes_value) {
      if (inline_value) {
        value = *inline_value;
      } else if (index + 1 < args.size()) {
        value = args[++index];
      } else {
        throw UsageError("--" + std::string(name) + " needs a value (" + flag->second.value_name + ")");
      }
    } else if (inline_value) {
      throw UsageError("--" + std::string(name) + " takes no value");
    }
    values_.emplace(std::string(name), std::move(value));
  }
}

bool FlagParser::given(std::string_view name) const {
  declared(name);
  return values_.contains(name);
}

const FlagParser::Flag& FlagParser::declared(std::string_view name) const {
  auto flag = flags_.find(name);
  if (flag == flags_.end()) throw std::logic_error("flag --" + std::string(name) + " was never declared");
  return flag->second;
}

const std::string& FlagParser::raw_value(std::string_view name) const {
  declared(name);
  auto value = values_.find(name);
  if (value == values_.end()) throw std::logic_error("flag --" + std::string(name) + " was not given");
  return value->second;
}

void FlagParser::bad_value(std::string_view name, std::string_view expected) const {
  throw UsageError("--" + std::string(name) + " expects " + std::string(expected) + ", got '" + raw_value(name) + "'");
}

std::string FlagParser::string_or(std::string_view name, const std::string& fallback) const {
  return given(name) ? raw_value(name) : fallback;
}

std::int64_t FlagParser::int_or(std::string_view name, std::int64_t fallback, std::int64_t min_value,
                                std::int64_t max_value) const {
  if (!given(name)) return fallback;
  std::int64_t value = 0;
  if (!parse_int(raw_value(name), value) || value < min_value || value > max_value) {
    bad_value(name, "an integer in [" + std::to_string(min_value) + ", " + std::to_string(max_value) + "]");
  }
  return value;
}

double FlagParser::number_or(std::string_view name, double fallback) const {
  if (!given(name)) return fallback;
  const std::string& text = raw_value(name);
  std::istringstream stream(text);
  double value = 0.0;
  char rest = 0;
  if (!(stream >> value) || stream >> rest || !std::isfinite(value)) bad_value(name, "a finite number");
  return value;
}

std::string FlagParser::choice_or(std::string_view name, const std::string& fallback,
                                  std::initializer_list<std::string_view> choices) const {
  if (!given(name)) return fallback;
  const std::string& value = raw_value(name);
  if (std::find(choices.begin(), choices.end(), value) != choices.end()) return value;
  std::string expected = "one of";
  for (std::string_view choice : choices) {
    expected += ' ';
    expected += choice;
  }
  bad_value(name, expected);
}

std::pair<std::int64_t, std::int64_t> FlagParser::int_pair_or(std::string_view name,
                                                              std::pair<std::int64_t, std::int64_t> fallback) const {
  if (!given(name)) return fallback;
  std::string_view text = raw_value(name);
  auto comma = text.find(',');
  std::pair<std::int64_t, std::int64_t> value;
  if (comma == std::string_view::npos || !parse_int(text.substr(0, comma), value.first) ||
      !parse_int(text.substr(comma + 1), value.second)) {
    bad_value(name, "two integers written A,B");
  }
  return value;
}

std::string FlagParser::flags_help() const {
  std::string text;
  for (const std::string& name : declaration_order_) {
    const Flag& flag = flags_.at(name);
    std::string left = "  --" + name + (flag.takes_value ? " " + flag.value_name : "");
    left.resize(std::max(kHelpColumn, left.size() + 1), ' ');
    text += left + flag.help + "\n";
  }
  return text;
}

}  // namespace flashattn::cli
