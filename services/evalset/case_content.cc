#include "services/evalset/case_content.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/text/text.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "re2/re2.h"
#include "services/evalset/ids.h"
#include "services/evalset/json.h"
#include "services/evalset/json_schema.h"

namespace flywheel::evalset {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

FieldError Invalid(std::string field, std::string reason) {
  return FieldError{absl::StatusCode::kInvalidArgument, std::move(field), std::move(reason)};
}

FieldError TooBig(std::string field, std::string reason) {
  return FieldError{absl::StatusCode::kResourceExhausted, std::move(field), std::move(reason)};
}

std::string Deterministic(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

// "/input/messages/messages/2/role" -> "input.messages[2].role".
std::string PointerToField(absl::string_view pointer) {
  std::vector<std::string> tokens = absl::StrSplit(pointer, '/', absl::SkipEmpty());
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    // The proto3 JSON form of ChatMessages nests "messages" twice; the API path names it once.
    if (i == 2 && tokens[0] == "input" && tokens[1] == "messages" && tokens[2] == "messages") {
      continue;
    }
    int index;
    if (absl::SimpleAtoi(tokens[i], &index) && !out.empty()) {
      absl::StrAppend(&out, "[", index, "]");
    } else {
      if (!out.empty()) out += '.';
      out += tokens[i];
    }
  }
  return out;
}

Value LlmInputJson(const flywheel::common::v1::LlmInput& input) {
  Struct object;
  if (input.kind_case() == flywheel::common::v1::LlmInput::kPrompt) {
    (*object.mutable_fields())["prompt"] = json::StringValue(input.prompt());
  } else if (input.kind_case() == flywheel::common::v1::LlmInput::kMessages) {
    google::protobuf::ListValue list;
    for (const auto& message : input.messages().messages()) {
      Struct m;
      // proto3 JSON leaves out empty strings; mirror it so schemas see what a client sees.
      if (!message.role().empty())
        (*m.mutable_fields())["role"] = json::StringValue(message.role());
      if (!message.content().empty()) {
        (*m.mutable_fields())["content"] = json::StringValue(message.content());
      }
      if (!message.name().empty())
        (*m.mutable_fields())["name"] = json::StringValue(message.name());
      *list.add_values() = json::StructValue(std::move(m));
    }
    Struct messages;
    *(*messages.mutable_fields())["messages"].mutable_list_value() = std::move(list);
    (*object.mutable_fields())["messages"] = json::StructValue(std::move(messages));
  }
  return json::StructValue(std::move(object));
}

std::optional<FieldError> CheckInput(const v1::Case& in) {
  if (!in.has_input() || in.input().kind_case() == flywheel::common::v1::LlmInput::KIND_NOT_SET) {
    return Invalid("input", "required: a prompt or chat messages");
  }
  if (in.input().has_messages()) {
    const auto& messages = in.input().messages().messages();
    if (messages.empty()) return Invalid("input.messages", "must not be empty");
    if (messages.size() > kMaxMessages) {
      return TooBig("input.messages", absl::StrCat("at most ", kMaxMessages, " messages"));
    }
    for (int i = 0; i < messages.size(); ++i) {
      const size_t role = messages[i].role().size();
      if (role == 0 || role > 32) {
        return Invalid(absl::StrCat("input.messages[", i, "].role"), "must be 1..32 bytes");
      }
    }
  } else if (in.input().prompt().empty()) {
    return Invalid("input.prompt", "must not be empty");
  }
  if (in.input().ByteSizeLong() + in.context().ByteSizeLong() > kMaxInputBytes) {
    return TooBig("input", "input and context exceed 256 KiB");
  }
  return std::nullopt;
}

std::optional<FieldError> CheckAssertion(const v1::Assertion& a, const std::string& field) {
  if (a.type() == v1::ASSERTION_TYPE_UNSPECIFIED || !v1::AssertionType_IsValid(a.type())) {
    return Invalid(field + ".type", "required");
  }
  if (a.value().size() > kMaxAssertionValueBytes) {
    return TooBig(field + ".value", "over 16 KiB");
  }
  if (a.config().ByteSizeLong() > 0 && JsonSize(a.config()) > kMaxAssertionConfigBytes) {
    return TooBig(field + ".config", "over 16 KiB as JSON");
  }
  if (a.description().size() > kMaxAssertionDescriptionBytes) {
    return TooBig(field + ".description", "over 1 KiB");
  }
  switch (a.type()) {
    case v1::ASSERTION_TYPE_CONTAINS:
    case v1::ASSERTION_TYPE_NOT_CONTAINS:
    case v1::ASSERTION_TYPE_LLM_RUBRIC:
      if (a.value().empty()) return Invalid(field + ".value", "must not be empty");
      break;
    case v1::ASSERTION_TYPE_REGEX: {
      RE2 re(a.value(), RE2::Quiet);
      if (!re.ok()) return Invalid(field + ".value", "regex does not compile: " + re.error());
      break;
    }
    case v1::ASSERTION_TYPE_JSON_SCHEMA: {
      auto parsed = json::ParseJson(a.value());
      if (!parsed.ok() || !parsed->has_struct_value()) {
        return Invalid(field + ".value", "must be a JSON object");
      }
      break;
    }
    default:
      break;
  }
  if (a.type() == v1::ASSERTION_TYPE_CUSTOM) {
    if (a.custom_type().empty() || a.custom_type().size() > 64 || !IsValidId(a.custom_type())) {
      return Invalid(field + ".custom_type", "required for CUSTOM: 1..64 bytes of [A-Za-z0-9._:-]");
    }
  } else if (!a.custom_type().empty()) {
    return Invalid(field + ".custom_type", "only for CUSTOM");
  }
  if (a.has_weight() && !(a.weight() > 0 && a.weight() <= 1000)) {
    return Invalid(field + ".weight", "must be in (0, 1000]");
  }
  if (a.has_threshold() && !(a.threshold() >= 0 && a.threshold() <= 1)) {
    return Invalid(field + ".threshold", "must be in [0, 1]");
  }
  return std::nullopt;
}

}  // namespace

size_t JsonSize(const Struct& object) {
  std::string out;
  json::AppendStruct(&out, object);
  return out.size();
}

std::optional<FieldError> PrepareCaseContent(const v1::Case& in, const SetSchemas& schemas,
                                             v1::Case* content) {
  content->Clear();
  if (auto e = CheckInput(in)) return e;
  if (in.expected_output().size() > kMaxExpectedOutputBytes) {
    return TooBig("expected_output", "over 64 KiB");
  }
  if (in.assertions_size() > kMaxAssertions) {
    return TooBig("assertions", absl::StrCat("at most ", kMaxAssertions, " assertions"));
  }
  for (int i = 0; i < in.assertions_size(); ++i) {
    if (auto e = CheckAssertion(in.assertions(i), absl::StrCat("assertions[", i, "]"))) return e;
  }
  const bool has_theme_id = !in.theme().theme_id().empty();
  const bool has_theme_name = !in.theme().name().empty();
  if (has_theme_id != has_theme_name) {
    return Invalid(has_theme_id ? "theme.name" : "theme.theme_id", "set both or neither");
  }
  if (has_theme_id) {
    if (!IsValidId(in.theme().theme_id())) {
      return Invalid("theme.theme_id", "must be 1..128 bytes of [A-Za-z0-9._:-]");
    }
    if (in.theme().name().size() > 256) return TooBig("theme.name", "over 256 bytes");
  }
  std::vector<std::string> tags(in.tags().begin(), in.tags().end());
  std::sort(tags.begin(), tags.end());
  tags.erase(std::unique(tags.begin(), tags.end()), tags.end());
  if (tags.size() > static_cast<size_t>(kMaxTags)) {
    return TooBig("tags", absl::StrCat("at most ", kMaxTags, " tags"));
  }
  for (int i = 0; i < in.tags_size(); ++i) {
    if (!IsValidCaseTag(in.tags(i))) {
      return Invalid(absl::StrCat("tags[", i, "]"), "must be 1..64 bytes of [A-Za-z0-9._:/-]");
    }
  }
  if (!in.source_trace_id().empty() && !IsValidId(in.source_trace_id())) {
    return Invalid("source_trace_id", "must be 1..128 bytes of [A-Za-z0-9._:-]");
  }
  if (!in.source_annotation_id().empty() && !IsValidId(in.source_annotation_id())) {
    return Invalid("source_annotation_id", "must be 1..128 bytes of [A-Za-z0-9._:-]");
  }
  if (in.has_metadata() && JsonSize(in.metadata()) > kMaxMetadataJsonBytes) {
    return TooBig("metadata", "over 16 KiB as JSON");
  }

  if (schemas.input.has_value()) {
    Struct instance;
    (*instance.mutable_fields())["input"] = LlmInputJson(in.input());
    *(*instance.mutable_fields())["context"].mutable_struct_value() = in.context();
    if (auto violation = ValidateJsonSchema(*schemas.input, json::StructValue(instance))) {
      const std::string field = PointerToField(violation->pointer);
      return Invalid(
          field.empty() ? "input" : field,
          absl::StrCat("input_schema: ", violation->message, " (at ", violation->pointer, ")"));
    }
  }
  if (schemas.expected_output.has_value()) {
    if (in.expected_output().empty()) {
      return Invalid("expected_output", "required by the set's expected_output_schema");
    }
    auto parsed = json::ParseJson(in.expected_output());
    if (!parsed.ok()) {
      return Invalid("expected_output", "must be JSON text (the set has expected_output_schema)");
    }
    if (auto violation = ValidateJsonSchema(*schemas.expected_output, *parsed)) {
      return Invalid("expected_output", absl::StrCat("expected_output_schema: ", violation->message,
                                                     " (at ", violation->pointer, ")"));
    }
  }

  *content->mutable_input() = in.input();
  if (in.has_context()) *content->mutable_context() = in.context();
  content->set_expected_output(in.expected_output());
  *content->mutable_assertions() = in.assertions();
  if (has_theme_id) *content->mutable_theme() = in.theme();
  for (std::string& tag : tags) content->add_tags(std::move(tag));
  content->set_source_trace_id(in.source_trace_id());
  content->set_source_annotation_id(in.source_annotation_id());
  if (in.has_metadata()) *content->mutable_metadata() = in.metadata();
  return std::nullopt;
}

std::string CaseContentDigest(const v1::Case& content) {
  return Sha256Digest(Deterministic(content));
}

std::string CaseInputText(const v1::Case& content) {
  if (content.input().kind_case() == flywheel::common::v1::LlmInput::kPrompt) {
    return content.input().prompt();
  }
  std::vector<absl::string_view> user;
  std::vector<absl::string_view> all;
  for (const auto& message : content.input().messages().messages()) {
    all.push_back(message.content());
    if (message.role() == "user") user.push_back(message.content());
  }
  return absl::StrJoin(user.empty() ? all : user, "\n");
}

std::string Snippet(absl::string_view text, size_t max_code_points) {
  size_t count = 0;
  size_t i = 0;
  while (i < text.size() && count < max_code_points) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t length = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    i = std::min(text.size(), i + length);
    ++count;
  }
  if (i >= text.size()) return std::string(text);
  return absl::StrCat(text.substr(0, i), "…");
}

std::optional<FieldError> PrepareResultContent(const v1::CaseResult& in, v1::CaseResult* content) {
  content->Clear();
  if (in.case_id().empty() || !IsValidId(in.case_id())) {
    return Invalid("case_id", "must be 1..128 bytes of [A-Za-z0-9._:-]");
  }
  if (in.verdict() == v1::VERDICT_UNSPECIFIED || !v1::Verdict_IsValid(in.verdict())) {
    return Invalid("verdict", "required");
  }
  if (in.has_score() && !(in.score() >= 0 && in.score() <= 1)) {
    return Invalid("score", "must be in [0, 1]");
  }
  if (in.verdict() == v1::VERDICT_ERROR && in.error().empty()) {
    return Invalid("error", "required for VERDICT_ERROR");
  }
  if (in.has_latency() && (in.latency().seconds() < 0 || in.latency().nanos() < 0)) {
    return Invalid("latency", "must not be negative");
  }
  if (in.has_cost_micros() && in.cost_micros() < 0) return Invalid("cost_micros", "negative");
  if (in.has_input_tokens() && in.input_tokens() < 0) return Invalid("input_tokens", "negative");
  if (in.has_output_tokens() && in.output_tokens() < 0) {
    return Invalid("output_tokens", "negative");
  }
  if (in.output_text().size() > kMaxOutputTextBytes) return TooBig("output_text", "over 256 KiB");
  if (in.error().size() > kMaxErrorBytes) return TooBig("error", "over 4 KiB");
  if (in.has_metadata() && JsonSize(in.metadata()) > kMaxMetadataJsonBytes) {
    return TooBig("metadata", "over 16 KiB as JSON");
  }
  content->set_case_id(in.case_id());
  content->set_verdict(in.verdict());
  if (in.has_score()) content->set_score(in.score());
  content->set_output_text(in.output_text());
  if (in.has_latency()) *content->mutable_latency() = in.latency();
  if (in.has_cost_micros()) content->set_cost_micros(in.cost_micros());
  if (in.has_input_tokens()) content->set_input_tokens(in.input_tokens());
  if (in.has_output_tokens()) content->set_output_tokens(in.output_tokens());
  content->set_error(in.error());
  if (in.has_metadata()) *content->mutable_metadata() = in.metadata();
  return std::nullopt;
}

std::string ResultContentDigest(const v1::CaseResult& content) {
  return Sha256Digest(Deterministic(content));
}

}  // namespace flywheel::evalset
