#include "services/evalset/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log/logger.h"
#include "google/protobuf/util/json_util.h"

namespace flywheel::evalset::json {

void AppendString(std::string* out, absl::string_view text) {
  // Shared with the structured logger; UTF-8 passes through (validated on input).
  out->push_back('"');
  AppendJsonEscaped(text, out);
  out->push_back('"');
}

void AppendNumber(std::string* out, double value) {
  if (!std::isfinite(value)) {
    out->append("null");
    return;
  }
  if (value == std::trunc(value) && std::fabs(value) < 1e15) {
    absl::StrAppend(out, static_cast<int64_t>(value));
    return;
  }
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  out->append(buffer, end);
}

void AppendStruct(std::string* out, const google::protobuf::Struct& object) {
  std::vector<const std::string*> keys;
  keys.reserve(object.fields_size());
  for (const auto& [key, unused] : object.fields()) keys.push_back(&key);
  std::sort(keys.begin(), keys.end(),
            [](const std::string* a, const std::string* b) { return *a < *b; });
  out->push_back('{');
  bool first = true;
  for (const std::string* key : keys) {
    if (!first) out->push_back(',');
    first = false;
    AppendString(out, *key);
    out->push_back(':');
    AppendValue(out, object.fields().at(*key));
  }
  out->push_back('}');
}

void AppendValue(std::string* out, const google::protobuf::Value& value) {
  switch (value.kind_case()) {
    case google::protobuf::Value::kNumberValue:
      AppendNumber(out, value.number_value());
      break;
    case google::protobuf::Value::kStringValue:
      AppendString(out, value.string_value());
      break;
    case google::protobuf::Value::kBoolValue:
      out->append(value.bool_value() ? "true" : "false");
      break;
    case google::protobuf::Value::kStructValue:
      AppendStruct(out, value.struct_value());
      break;
    case google::protobuf::Value::kListValue: {
      out->push_back('[');
      bool first = true;
      for (const auto& item : value.list_value().values()) {
        if (!first) out->push_back(',');
        first = false;
        AppendValue(out, item);
      }
      out->push_back(']');
      break;
    }
    default:
      out->append("null");
  }
}

std::string ValueToJson(const google::protobuf::Value& value) {
  std::string out;
  AppendValue(&out, value);
  return out;
}

absl::StatusOr<google::protobuf::Value> ParseJson(absl::string_view text) {
  google::protobuf::Value value;
  // Wrapping in an array lets protobuf's parser accept any top-level JSON value.
  google::protobuf::ListValue list;
  const std::string wrapped = absl::StrCat("[", text, "]");
  auto status = google::protobuf::util::JsonStringToMessage(wrapped, &list);
  if (!status.ok() || list.values_size() != 1) {
    return absl::InvalidArgumentError("not valid JSON");
  }
  return list.values(0);
}

absl::StatusOr<std::string> MessageToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) return absl::InternalError("cannot print message as JSON");
  return out;
}

google::protobuf::Value StringValue(absl::string_view text) {
  google::protobuf::Value value;
  value.set_string_value(std::string(text));
  return value;
}

google::protobuf::Value NumberValue(double number) {
  google::protobuf::Value value;
  value.set_number_value(number);
  return value;
}

google::protobuf::Value StructValue(google::protobuf::Struct object) {
  google::protobuf::Value value;
  *value.mutable_struct_value() = std::move(object);
  return value;
}

}  // namespace flywheel::evalset::json
