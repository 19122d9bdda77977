#pragma once

// The JSON Schema subset of eval-set schemas (see EvalSet in evalset.proto): type, enum, const,
// properties, required, additionalProperties, items, minItems, maxItems, minLength, maxLength,
// pattern (RE2), minimum, maximum, exclusiveMinimum, exclusiveMaximum, allOf, anyOf, oneOf, not,
// title, description. Anything else is refused when the schema is stored, so a schema never
// silently ignores a rule its author expected to apply.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "google/protobuf/struct.pb.h"

namespace flywheel::evalset {

// INVALID_ARGUMENT "<field>: <problem>" (e.g. "eval_set.input_schema: unsupported keyword
// format") when `schema` is not a valid schema of the subset.
absl::Status CheckJsonSchema(const std::string& field, const google::protobuf::Struct& schema);

struct SchemaViolation {
  // JSON pointer of the failing instance location, e.g. "/input/messages/messages/0/role".
  std::string pointer;
  std::string message;
};

// Validates `instance` against a schema that passed CheckJsonSchema; nullopt when it conforms.
std::optional<SchemaViolation> ValidateJsonSchema(const google::protobuf::Struct& schema,
                                                  const google::protobuf::Value& instance);

}  // namespace flywheel::evalset
