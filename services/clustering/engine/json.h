#pragma once

// A minimal JSON reader/writer for the OpenAI-compatible clients (no JSON library in the image).

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flywheel::clustering::engine::json {

struct Value {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;

  // Member `key` of an object, or nullptr (also for non-objects).
  const Value* Find(absl::string_view key) const;
};

// INVALID_ARGUMENT on malformed input, trailing garbage, or nesting deeper than 64.
absl::StatusOr<Value> Parse(absl::string_view text);

// `text` as a JSON string literal (with quotes); non-ASCII UTF-8 passes through.
std::string Quote(absl::string_view text);

}  // namespace flywheel::clustering::engine::json
