// The check every validation-rule test makes: the call throws the expected exception, for the expected
// argument, with a message that starts with that argument's name and contains the rule's words.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "flashattn/errors.hpp"

namespace flashattn::test {

enum class RejectionKind { kInvalidArgument, kNotSupported };

template <class Call>
void expect_rejected(const Call& call, RejectionKind kind, const char* argument,
                     const std::vector<const char*>& keywords) {
  std::string message;
  try {
    call();
    FAIL() << "the call was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(kind, RejectionKind::kInvalidArgument) << "threw InvalidArgument: " << e.what();
    EXPECT_EQ(e.argument(), argument) << e.what();
    message = e.what();
  } catch (const NotSupported& e) {
    EXPECT_EQ(kind, RejectionKind::kNotSupported) << "threw NotSupported: " << e.what();
    message = e.what();
  }
  EXPECT_EQ(message.rfind(std::string(argument) + ": ", 0), 0u) << "message must start with the argument: " << message;
  for (const char* keyword : keywords) {
    EXPECT_NE(message.find(keyword), std::string::npos) << "'" << keyword << "' missing from: " << message;
  }
}

}  // namespace flashattn::test
