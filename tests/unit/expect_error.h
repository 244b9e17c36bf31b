// expect_error(fn, {"part", ...}): fn must throw exatrain::Error whose message contains every part.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

#include "trainer/core/error.h"

namespace exatrain {

template <class Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << *parts.begin() << "'";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "message: " << e.what() << "\nmissing: " << p;
  }
}

}  // namespace exatrain
