#include "services/evalset/export_formats.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "services/evalset/json.h"

namespace flywheel::evalset {
namespace {

using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

void Put(Struct* object, const std::string& key, Value value) {
  (*object->mutable_fields())[key] = std::move(value);
}

Value FlywheelMetadata(const ExportSource& source, const v1::Case& c,
                       const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  Struct flywheel;
  Put(&flywheel, "eval_set_id", json::StringValue(source.eval_set_id));
  Put(&flywheel, "version", json::NumberValue(static_cast<double>(source.version)));
  Put(&flywheel, "content_digest", json::StringValue(source.content_digest));
  Put(&flywheel, "case_id", json::StringValue(c.case_id()));
  Put(&flywheel, "theme_id", json::StringValue(c.theme().theme_id()));
  Put(&flywheel, "theme_name", json::StringValue(c.theme().name()));
  Value tags;
  tags.mutable_list_value();
  for (const std::string& tag : c.tags())
    *tags.mutable_list_value()->add_values() = json::StringValue(tag);
  Put(&flywheel, "tags", std::move(tags));
  for (const auto& [key, value] : extra) Put(&flywheel, key, json::StringValue(value));
  Struct metadata;
  Put(&metadata, "flywheel", json::StructValue(std::move(flywheel)));
  return json::StructValue(std::move(metadata));
}

// Chat messages as [{"role", "content"}] (plus "name" when set); a prompt is one user message.
Value MessagesArray(const flywheel::common::v1::LlmInput& input) {
  Value list;
  list.mutable_list_value();
  if (input.kind_case() == flywheel::common::v1::LlmInput::kPrompt) {
    Struct m;
    Put(&m, "role", json::StringValue("user"));
    Put(&m, "content", json::StringValue(input.prompt()));
    *list.mutable_list_value()->add_values() = json::StructValue(std::move(m));
    return list;
  }
  for (const auto& message : input.messages().messages()) {
    Struct m;
    Put(&m, "role", json::StringValue(message.role()));
    Put(&m, "content", json::StringValue(message.content()));
    if (!message.name().empty()) Put(&m, "name", json::StringValue(message.name()));
    *list.mutable_list_value()->add_values() = json::StructValue(std::move(m));
  }
  return list;
}

// A prompt as text, chat messages as an array value.
Value PromptValue(const flywheel::common::v1::LlmInput& input) {
  if (input.kind_case() == flywheel::common::v1::LlmInput::kPrompt) {
    return json::StringValue(input.prompt());
  }
  return MessagesArray(input);
}

void AppendLine(const Struct& record, std::string* out) {
  json::AppendStruct(out, record);
  out->push_back('\n');
}

Value PromptfooAssertion(const v1::Assertion& a) {
  Struct out;
  std::string type;
  switch (a.type()) {
    case v1::ASSERTION_TYPE_CONTAINS:
      type = a.ignore_case() ? "icontains" : "contains";
      break;
    case v1::ASSERTION_TYPE_NOT_CONTAINS:
      type = a.ignore_case() ? "not-icontains" : "not-contains";
      break;
    case v1::ASSERTION_TYPE_REGEX:
      type = "regex";
      break;
    case v1::ASSERTION_TYPE_EQUALS:
      type = "equals";
      break;
    case v1::ASSERTION_TYPE_JSON_SCHEMA:
      type = "is-json";
      break;
    case v1::ASSERTION_TYPE_LLM_RUBRIC:
      type = "llm-rubric";
      break;
    default:
      type = a.custom_type();
      break;
  }
  // Config keys first so the documented fields below win on a clash.
  for (const auto& [key, value] : a.config().fields()) Put(&out, key, value);
  Put(&out, "type", json::StringValue(type));
  if (a.type() == v1::ASSERTION_TYPE_JSON_SCHEMA) {
    auto schema = json::ParseJson(a.value());  // validated as an object when stored
    Put(&out, "value", schema.ok() ? *schema : json::StringValue(a.value()));
  } else {
    Put(&out, "value", json::StringValue(a.value()));
  }
  if (a.has_weight()) Put(&out, "weight", json::NumberValue(a.weight()));
  if (a.has_threshold()) Put(&out, "threshold", json::NumberValue(a.threshold()));
  return json::StructValue(std::move(out));
}

std::string FormatSuffix(v1::ExportFormat format) {
  switch (format) {
    case v1::EXPORT_FORMAT_FLYWHEEL_JSONL:
      return "flywheel";
    case v1::EXPORT_FORMAT_OPENAI_EVALS:
      return "openai-evals";
    case v1::EXPORT_FORMAT_PROMPTFOO:
      return "promptfoo";
    case v1::EXPORT_FORMAT_DPO_PAIRS:
      return "dpo";
    default:
      return "export";
  }
}

}  // namespace

std::string FlywheelHeaderLine(const ExportSource& source, int64_t case_count,
                               absl::Time export_time) {
  Struct header;
  Put(&header, "record_type", json::StringValue("header"));
  Put(&header, "format", json::StringValue("FLYWHEEL_JSONL"));
  Put(&header, "format_version", json::NumberValue(1));
  Put(&header, "eval_set_id", json::StringValue(source.eval_set_id));
  Put(&header, "version", json::NumberValue(static_cast<double>(source.version)));
  Put(&header, "content_digest", json::StringValue(source.content_digest));
  Put(&header, "case_count", json::NumberValue(static_cast<double>(case_count)));
  Put(&header, "export_time",
      json::StringValue(
          absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", export_time, absl::UTCTimeZone())));
  std::string out;
  AppendLine(header, &out);
  return out;
}

absl::StatusOr<int> AppendFlywheelRecord(const v1::Case& c, std::string* out) {
  auto case_json = json::MessageToJson(c);
  if (!case_json.ok()) return case_json.status();
  // The case is proto3 JSON from protobuf's printer (lossless); the envelope is ours.
  absl::StrAppend(out, "{\"record_type\":\"case\",\"case\":", *case_json, "}\n");
  return 1;
}

int AppendOpenAiEvalsRecord(const ExportSource& source, const v1::Case& c, std::string* out) {
  if (c.expected_output().empty()) return 0;
  Struct record;
  Put(&record, "input", MessagesArray(c.input()));
  Put(&record, "ideal", json::StringValue(c.expected_output()));
  Put(&record, "metadata", FlywheelMetadata(source, c));
  AppendLine(record, out);
  return 1;
}

int AppendPromptfooRecord(const ExportSource& source, const v1::Case& c, std::string* out) {
  Struct record;
  Put(&record, "description",
      json::StringValue(c.theme().name().empty()
                            ? c.case_id()
                            : absl::StrCat(c.case_id(), ": ", c.theme().name())));
  Struct vars;
  for (const auto& [key, value] : c.context().fields()) {
    if (key != "input" && key != "expected_output") Put(&vars, key, value);
  }
  if (c.input().kind_case() == flywheel::common::v1::LlmInput::kPrompt) {
    Put(&vars, "input", json::StringValue(c.input().prompt()));
  } else {
    Put(&vars, "input", json::StringValue(json::ValueToJson(MessagesArray(c.input()))));
  }
  if (!c.expected_output().empty()) {
    Put(&vars, "expected_output", json::StringValue(c.expected_output()));
  }
  Put(&record, "vars", json::StructValue(std::move(vars)));
  Value asserts;
  asserts.mutable_list_value();
  for (const v1::Assertion& a : c.assertions()) {
    *asserts.mutable_list_value()->add_values() = PromptfooAssertion(a);
  }
  Put(&record, "assert", std::move(asserts));
  Put(&record, "metadata", FlywheelMetadata(source, c));
  AppendLine(record, out);
  return 1;
}

int AppendDpoRecords(const ExportSource& source, const v1::Case& c,
                     const std::vector<const flywheel::capture::v1::PreferencePair*>& pairs,
                     std::string* out) {
  int written = 0;
  for (const auto* pair : pairs) {
    Struct record;
    const bool pair_has_prompt =
        pair->prompt().kind_case() != flywheel::common::v1::LlmInput::KIND_NOT_SET;
    Put(&record, "prompt", PromptValue(pair_has_prompt ? pair->prompt() : c.input()));
    Put(&record, "chosen", json::StringValue(pair->chosen_output()));
    Put(&record, "rejected", json::StringValue(pair->rejected_output()));
    Put(&record, "metadata",
        FlywheelMetadata(source, c,
                         {{"pair_id", pair->pair_id()}, {"source_trace_id", c.source_trace_id()}}));
    AppendLine(record, out);
    ++written;
  }
  return written;
}

std::string ExportFileName(const std::string& eval_set_id, int64_t version,
                           v1::ExportFormat format) {
  return absl::StrCat(eval_set_id, "@v", version, ".", FormatSuffix(format), ".jsonl");
}

}  // namespace flywheel::evalset
