#pragma once

// What a case and a result *are*: their content fields, how they are validated and normalized,
// and their content digests. Used by AddCases/UpdateCase and RecordResults alike.

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "flywheel/evalset/v1/evalset.pb.h"
#include "google/protobuf/struct.pb.h"

namespace flywheel::evalset {

namespace v1 = ::flywheel::evalset::v1;

// Documented limits (evalset.proto).
inline constexpr size_t kMaxInputBytes = 256 * 1024;  // input + context, serialized
inline constexpr int kMaxMessages = 1000;
inline constexpr size_t kMaxExpectedOutputBytes = 64 * 1024;
inline constexpr size_t kMaxMetadataJsonBytes = 16 * 1024;
inline constexpr int kMaxTags = 32;
inline constexpr int kMaxAssertions = 50;
inline constexpr size_t kMaxAssertionValueBytes = 16 * 1024;
inline constexpr size_t kMaxAssertionConfigBytes = 16 * 1024;
inline constexpr size_t kMaxAssertionDescriptionBytes = 1024;
inline constexpr size_t kMaxOutputTextBytes = 256 * 1024;
inline constexpr size_t kMaxErrorBytes = 4 * 1024;
inline constexpr size_t kMaxSchemaJsonBytes = 64 * 1024;

// Why one item of a batch was refused; `field` is relative to the item.
struct FieldError {
  absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  std::string field;
  std::string reason;
};

// The rules a set imposes on its cases' content.
struct SetSchemas {
  std::optional<google::protobuf::Struct> input;
  std::optional<google::protobuf::Struct> expected_output;
};

// Copies the content fields of `in` into `content` (tags sorted and deduplicated), validating
// every limit and the set's schemas. Returns the first problem found.
std::optional<FieldError> PrepareCaseContent(const v1::Case& in, const SetSchemas& schemas,
                                             v1::Case* content);

// "sha256:<hex>" over the deterministic serialization of the content fields.
std::string CaseContentDigest(const v1::Case& content);

// The text that represents a case's input: the prompt, or its user messages joined by "\n"
// (all messages when none has the role "user").
std::string CaseInputText(const v1::Case& content);

// The first `max_code_points` code points of `text`, ending in "…" when cut.
std::string Snippet(absl::string_view text, size_t max_code_points);

// Copies the caller-sent fields of a result (no output-only fields), validating them.
std::optional<FieldError> PrepareResultContent(const v1::CaseResult& in, v1::CaseResult* content);
std::string ResultContentDigest(const v1::CaseResult& content);

// Size of a Struct as JSON text, for limits stated "as JSON".
size_t JsonSize(const google::protobuf::Struct& object);

}  // namespace flywheel::evalset
