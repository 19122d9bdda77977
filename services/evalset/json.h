#pragma once

// JSON text for exports and JSON parsing for validation, on top of google.protobuf.Value.
// Our own writer (instead of protobuf's JSON printer) gives byte-stable output: object keys
// sorted, numbers printed shortest-round-trip, no whitespace.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "google/protobuf/struct.pb.h"

namespace flywheel::evalset::json {

// Appends `text` as a JSON string literal (quotes included).
void AppendString(std::string* out, absl::string_view text);
// Appends a JSON number (integers without a fraction; non-finite values as null).
void AppendNumber(std::string* out, double value);
void AppendValue(std::string* out, const google::protobuf::Value& value);
void AppendStruct(std::string* out, const google::protobuf::Struct& object);
std::string ValueToJson(const google::protobuf::Value& value);

// Parses any JSON text (object, array, string, number, boolean, null) into a Value.
// INVALID_ARGUMENT when it is not JSON.
absl::StatusOr<google::protobuf::Value> ParseJson(absl::string_view text);

// A message in proto3 JSON with proto field names (lossless export format).
absl::StatusOr<std::string> MessageToJson(const google::protobuf::Message& message);

// Builders, for readable construction of export records.
google::protobuf::Value StringValue(absl::string_view text);
google::protobuf::Value NumberValue(double number);
google::protobuf::Value StructValue(google::protobuf::Struct object);

}  // namespace flywheel::evalset::json
