#pragma once

#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flywheel::db {

// PostgreSQL array literals for bulk statements (`unnest($1::text[], ...)`): one parameter per
// column instead of one statement per row. Every element is quoted, so none reads as NULL.

// For text[] (or any type with a text input: ::timestamptz[], ::smallint[] ...).
std::string TextArray(const std::vector<std::string>& values);
// For bytea[]: raw bytes, hex-encoded.
std::string ByteaArray(const std::vector<std::string>& values);

template <typename Number>
std::string NumberArray(const std::vector<Number>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    if constexpr (std::is_floating_point_v<Number>) {
      absl::StrAppendFormat(&out, "%.17g", values[i]);  // exact round trip, not six digits
    } else {
      absl::StrAppend(&out, values[i]);
    }
  }
  return out + "}";
}

}  // namespace flywheel::db
