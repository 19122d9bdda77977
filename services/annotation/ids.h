#pragma once

// Server-generated ids: 26 lowercase characters, time-ordered (48 bits of milliseconds then 80
// random bits, Crockford base32), as in the other Flywheel APIs. Header-only so that every layer
// may mint ids.

#include <cstdint>
#include <random>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace flywheel::annotation {

inline std::string GenerateId() {
  static constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
  thread_local std::mt19937_64 random(std::random_device{}());
  const uint64_t millis = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  const uint64_t high = random();
  const uint64_t low = random();
  // 130 bits as 26 groups of 5: time (48 bits) in the first 10 characters (top 2 bits zero),
  // then 80 random bits in the last 16.
  std::string out(26, '0');
  for (int i = 9; i >= 0; --i) out[9 - i] = kAlphabet[(millis >> (5 * i)) & 31];
  for (int i = 0; i < 16; ++i) {
    const uint64_t source = i < 12 ? high >> (5 * i) : low >> (5 * (i - 12));
    out[10 + i] = kAlphabet[source & 31];
  }
  return out;
}

inline bool IsValidId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace flywheel::annotation
