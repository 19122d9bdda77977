#include "services/capture/validation.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/text/text.h"
#include "google/protobuf/util/time_util.h"  // Timestamp comparison operators

namespace flywheel::capture {
namespace {

FieldError Invalid(std::string field, std::string reason) {
  return FieldError{absl::StatusCode::kInvalidArgument, std::move(field), std::move(reason)};
}
FieldError TooLarge(std::string field, std::string reason) {
  return FieldError{absl::StatusCode::kResourceExhausted, std::move(field), std::move(reason)};
}

bool HasControl(const std::string& text) {
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

std::optional<FieldError> CheckId(const std::string& value, const std::string& field, bool required,
                                  size_t max = kMaxIdBytes) {
  if (value.empty()) {
    if (required) return Invalid(field, "required");
    return std::nullopt;
  }
  if (value.size() > max) return Invalid(field, absl::StrCat("at most ", max, " bytes"));
  if (!IsValidId(value, max)) return Invalid(field, "only A-Z a-z 0-9 . _ : - allowed");
  return std::nullopt;
}

std::optional<FieldError> CheckName(const std::string& value, const std::string& field,
                                    bool required) {
  if (value.empty()) {
    if (required) return Invalid(field, "required");
    return std::nullopt;
  }
  if (value.size() > kMaxNameBytes) return Invalid(field, "at most 128 bytes");
  if (HasControl(value)) return Invalid(field, "control characters are not allowed");
  return std::nullopt;
}

std::optional<FieldError> CheckText(const std::string& value, const std::string& field,
                                    size_t max) {
  if (value.size() > max) return TooLarge(field, absl::StrCat("at most ", max, " bytes"));
  if (!text::IsValidUtf8(value)) return Invalid(field, "malformed UTF-8");
  return std::nullopt;
}

std::optional<FieldError> CheckTimestamp(const google::protobuf::Timestamp& ts,
                                         const std::string& field,
                                         const ValidationContext& context) {
  // The range google.protobuf.Timestamp allows: 0001-01-01 .. 9999-12-31.
  if (ts.seconds() < -62135596800 || ts.seconds() > 253402300799 || ts.nanos() < 0 ||
      ts.nanos() > 999999999) {
    return Invalid(field, "not a valid timestamp");
  }
  const absl::Time time = absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
  if (time > context.now + kMaxFutureSkew) {
    return Invalid(field, "more than 5 minutes in the future");
  }
  if (time < context.now - context.retention) return Invalid(field, "older than retention");
  return std::nullopt;
}

std::optional<FieldError> CheckDuration(const google::protobuf::Duration& duration,
                                        const std::string& field) {
  if (duration.seconds() > 315576000000 || duration.seconds() < -315576000000 ||
      duration.nanos() > 999999999 || duration.nanos() < -999999999) {
    return Invalid(field, "not a valid duration");
  }
  if (duration.seconds() < 0 || duration.nanos() < 0) return Invalid(field, "must not be negative");
  return std::nullopt;
}

int Depth(const google::protobuf::Value& value) {
  int depth = 0;
  if (value.has_struct_value()) {
    for (const auto& [key, field] : value.struct_value().fields()) {
      depth = std::max(depth, Depth(field));
    }
    return depth + 1;
  }
  if (value.has_list_value()) {
    for (const auto& item : value.list_value().values()) depth = std::max(depth, Depth(item));
    return depth + 1;
  }
  return 0;
}

std::optional<FieldError> CheckStructValue(const google::protobuf::Value& value,
                                           const std::string& field) {
  if (value.kind_case() == google::protobuf::Value::kNumberValue &&
      !std::isfinite(value.number_value())) {
    return Invalid(field, "numbers must be finite");
  }
  if (value.has_struct_value()) {
    for (const auto& [key, item] : value.struct_value().fields()) {
      if (key.size() > kMaxNameBytes) return Invalid(field, "keys are at most 128 bytes");
      if (auto error = CheckStructValue(item, field)) return error;
    }
  }
  if (value.has_list_value()) {
    for (const auto& item : value.list_value().values()) {
      if (auto error = CheckStructValue(item, field)) return error;
    }
  }
  return std::nullopt;
}

std::optional<FieldError> CheckStruct(const google::protobuf::Struct& value,
                                      const std::string& field) {
  if (value.ByteSizeLong() > kMaxStructBytes) return TooLarge(field, "at most 16 KiB serialized");
  google::protobuf::Value wrapper;
  *wrapper.mutable_struct_value() = value;
  if (Depth(wrapper) > kMaxStructDepth) return Invalid(field, "nesting depth at most 10");
  return CheckStructValue(wrapper, field);
}

}  // namespace

bool IsValidId(const std::string& id, size_t max_bytes) {
  if (id.empty() || id.size() > max_bytes) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

v1::SignalKind KindOf(const v1::Signal& signal) {
  switch (signal.kind_case()) {
    case v1::Signal::kExplicitFeedback: {
      const auto& feedback = signal.explicit_feedback();
      if (feedback.value_case() == v1::ExplicitFeedback::kThumb) {
        return feedback.thumb() == v1::THUMB_UP     ? v1::SIGNAL_KIND_THUMBS_UP
               : feedback.thumb() == v1::THUMB_DOWN ? v1::SIGNAL_KIND_THUMBS_DOWN
                                                    : v1::SIGNAL_KIND_UNSPECIFIED;
      }
      if (feedback.value_case() == v1::ExplicitFeedback::kRating) return v1::SIGNAL_KIND_RATING;
      return v1::SIGNAL_KIND_COMMENT;
    }
    case v1::Signal::kImplicitSignal:
      switch (signal.implicit_signal().action_case()) {
        case v1::ImplicitSignal::kCopy:
          return v1::SIGNAL_KIND_COPY;
        case v1::ImplicitSignal::kRegenerate:
          return v1::SIGNAL_KIND_REGENERATE;
        case v1::ImplicitSignal::kEdit:
          return v1::SIGNAL_KIND_EDIT;
        case v1::ImplicitSignal::kRephrase:
          return v1::SIGNAL_KIND_REPHRASE;
        case v1::ImplicitSignal::kAbandonment:
          return v1::SIGNAL_KIND_ABANDONMENT;
        case v1::ImplicitSignal::kDwell:
          return v1::SIGNAL_KIND_DWELL;
        default:
          return v1::SIGNAL_KIND_UNSPECIFIED;
      }
    case v1::Signal::kOutcome:
      return v1::SIGNAL_KIND_OUTCOME;
    case v1::Signal::kCustom:
      return v1::SIGNAL_KIND_CUSTOM;
    default:
      return v1::SIGNAL_KIND_UNSPECIFIED;
  }
}

std::optional<FieldError> ValidateTrace(const v1::Trace& trace, const ValidationContext& context) {
  if (auto e = CheckId(trace.trace_id(), "trace_id", true)) return e;
  if (auto e = CheckId(trace.session_id(), "session_id", false)) return e;
  if (auto e = CheckId(trace.user_id(), "user_id", false)) return e;
  if (auto e = CheckId(trace.prompt_template_id(), "prompt_template_id", false)) return e;
  if (auto e = CheckName(trace.feature_area(), "feature_area", false)) return e;
  if (auto e = CheckName(trace.model(), "model", true)) return e;
  if (auto e = CheckName(trace.model_version(), "model_version", false)) return e;
  if (auto e = CheckName(trace.prompt_version(), "prompt_version", false)) return e;
  const auto& input = trace.input();
  if (input.kind_case() == common::v1::LlmInput::kPrompt) {
    if (input.prompt().empty()) return Invalid("input.prompt", "required");
    if (auto e = CheckText(input.prompt(), "input.prompt", kMaxInputBytes)) return e;
  } else if (input.kind_case() == common::v1::LlmInput::kMessages) {
    const auto& messages = input.messages().messages();
    if (messages.empty()) return Invalid("input.messages", "at least one message");
    if (messages.size() > kMaxInputMessages) {
      return TooLarge("input.messages", "at most 1000 messages");
    }
    size_t total = 0;
    for (int i = 0; i < messages.size(); ++i) {
      const std::string prefix = absl::StrCat("input.messages[", i, "]");
      const auto& message = messages[i];
      if (message.role().empty() || message.role().size() > 32 || HasControl(message.role())) {
        return Invalid(prefix + ".role", "1..32 bytes, no control characters");
      }
      if (message.name().size() > kMaxNameBytes)
        return Invalid(prefix + ".name", "at most 128 bytes");
      if (auto e = CheckText(message.content(), prefix + ".content", kMaxInputBytes)) return e;
      total += message.content().size();
    }
    if (total > kMaxInputBytes) return TooLarge("input", "at most 256 KiB of text in total");
  } else {
    return Invalid("input", "required: a prompt or at least one message");
  }
  if (auto e = CheckText(trace.output(), "output", kMaxOutputBytes)) return e;
  if (trace.has_latency()) {
    if (auto e = CheckDuration(trace.latency(), "latency")) return e;
  }
  if (trace.has_input_tokens() && trace.input_tokens() < 0) {
    return Invalid("input_tokens", "must not be negative");
  }
  if (trace.has_output_tokens() && trace.output_tokens() < 0) {
    return Invalid("output_tokens", "must not be negative");
  }
  if (trace.has_cost_micros() && trace.cost_micros() < 0) {
    return Invalid("cost_micros", "must not be negative");
  }
  if (trace.has_metadata()) {
    if (auto e = CheckStruct(trace.metadata(), "metadata")) return e;
  }
  if (!trace.has_start_time()) return Invalid("start_time", "required");
  if (auto e = CheckTimestamp(trace.start_time(), "start_time", context)) return e;
  if (trace.has_end_time()) {
    if (auto e = CheckTimestamp(trace.end_time(), "end_time", context)) return e;
    if (trace.end_time() < trace.start_time()) {
      return Invalid("end_time", "must not be before start_time");
    }
  }
  return std::nullopt;
}

std::optional<FieldError> ValidateSignal(const v1::Signal& signal,
                                         const ValidationContext& context) {
  if (auto e = CheckId(signal.event_id(), "event_id", true)) return e;
  switch (signal.subject_case()) {
    case v1::Signal::kTraceId:
      if (auto e = CheckId(signal.trace_id(), "trace_id", true)) return e;
      break;
    case v1::Signal::kSessionId:
      if (auto e = CheckId(signal.session_id(), "session_id", true)) return e;
      break;
    default:
      return Invalid("subject", "required: trace_id or session_id");
  }
  if (auto e = CheckId(signal.user_id(), "user_id", false)) return e;
  if (signal.has_occur_time()) {
    if (auto e = CheckTimestamp(signal.occur_time(), "occur_time", context)) return e;
  }
  if (!common::v1::Actor_IsValid(signal.actor())) return Invalid("actor", "unknown value");
  if (signal.actor() == common::v1::ACTOR_FLYWHEEL) {
    return Invalid("actor", "FLYWHEEL is reserved for derived signals");
  }
  switch (signal.kind_case()) {
    case v1::Signal::kExplicitFeedback: {
      const auto& feedback = signal.explicit_feedback();
      if (signal.user_id().empty()) return Invalid("user_id", "required for explicit feedback");
      if (feedback.value_case() == v1::ExplicitFeedback::kThumb &&
          (feedback.thumb() != v1::THUMB_UP && feedback.thumb() != v1::THUMB_DOWN)) {
        return Invalid("explicit_feedback.thumb", "THUMB_UP or THUMB_DOWN");
      }
      if (feedback.value_case() == v1::ExplicitFeedback::kRating &&
          (feedback.rating() < 1 || feedback.rating() > 5)) {
        return Invalid("explicit_feedback.rating", "1..5");
      }
      if (feedback.value_case() == v1::ExplicitFeedback::VALUE_NOT_SET &&
          feedback.comment().empty() && feedback.reason_categories().empty()) {
        return Invalid("explicit_feedback", "a thumb, rating, comment or reason category");
      }
      if (auto e = CheckText(feedback.comment(), "explicit_feedback.comment", kMaxCommentBytes)) {
        return e;
      }
      if (feedback.reason_categories_size() > kMaxReasonCategories) {
        return TooLarge("explicit_feedback.reason_categories", "at most 10");
      }
      for (int i = 0; i < feedback.reason_categories_size(); ++i) {
        const std::string field = absl::StrCat("explicit_feedback.reason_categories[", i, "]");
        if (auto e = CheckId(feedback.reason_categories(i), field, true, kMaxShortNameBytes)) {
          return e;
        }
        for (int j = 0; j < i; ++j) {
          if (feedback.reason_categories(j) == feedback.reason_categories(i)) {
            return Invalid(field, "reason categories must be unique");
          }
        }
      }
      break;
    }
    case v1::Signal::kImplicitSignal: {
      const auto& implicit = signal.implicit_signal();
      switch (implicit.action_case()) {
        case v1::ImplicitSignal::kCopy:
          if (implicit.copy().copied_chars() < 1 || implicit.copy().copied_chars() > 262144) {
            return Invalid("implicit_signal.copy.copied_chars", "1..262144");
          }
          if (implicit.copy().has_output_offset() && implicit.copy().output_offset() < 0) {
            return Invalid("implicit_signal.copy.output_offset", "must not be negative");
          }
          if (!v1::CopyScope_IsValid(implicit.copy().scope())) {
            return Invalid("implicit_signal.copy.scope", "unknown value");
          }
          break;
        case v1::ImplicitSignal::kRegenerate:
          if (implicit.regenerate().attempt_number() < 0 ||
              implicit.regenerate().attempt_number() == 1) {
            return Invalid("implicit_signal.regenerate.attempt_number", "0 (unknown) or >= 2");
          }
          if (auto e = CheckId(implicit.regenerate().new_trace_id(),
                               "implicit_signal.regenerate.new_trace_id", false)) {
            return e;
          }
          break;
        case v1::ImplicitSignal::kEdit:
          if (implicit.edit().edit_case() == v1::EditSignal::kFinalText) {
            if (auto e = CheckText(implicit.edit().final_text(), "implicit_signal.edit.final_text",
                                   kMaxOutputBytes)) {
              return e;
            }
          } else if (implicit.edit().edit_case() == v1::EditSignal::kEditRatio) {
            const double ratio = implicit.edit().edit_ratio();
            if (!std::isfinite(ratio) || ratio < 0 || ratio > 1) {
              return Invalid("implicit_signal.edit.edit_ratio", "in [0, 1]");
            }
          } else {
            return Invalid("implicit_signal.edit", "final_text or edit_ratio required");
          }
          break;
        case v1::ImplicitSignal::kRephrase:
          if (auto e = CheckText(implicit.rephrase().new_input_text(),
                                 "implicit_signal.rephrase.new_input_text", kMaxInputBytes)) {
            return e;
          }
          if (auto e = CheckId(implicit.rephrase().new_trace_id(),
                               "implicit_signal.rephrase.new_trace_id", false)) {
            return e;
          }
          break;
        case v1::ImplicitSignal::kAbandonment:
          break;
        case v1::ImplicitSignal::kDwell:
          if (!implicit.dwell().has_duration()) {
            return Invalid("implicit_signal.dwell.duration", "required");
          }
          if (auto e =
                  CheckDuration(implicit.dwell().duration(), "implicit_signal.dwell.duration")) {
            return e;
          }
          if (implicit.dwell().duration().seconds() > 24 * 3600 ||
              (implicit.dwell().duration().seconds() == 24 * 3600 &&
               implicit.dwell().duration().nanos() > 0)) {
            return Invalid("implicit_signal.dwell.duration", "at most 24 h");
          }
          if (implicit.dwell().next_action().size() > kMaxShortNameBytes) {
            return Invalid("implicit_signal.dwell.next_action", "at most 64 bytes");
          }
          break;
        default:
          return Invalid("implicit_signal", "exactly one action required");
      }
      break;
    }
    case v1::Signal::kOutcome: {
      const auto& outcome = signal.outcome();
      if (auto e = CheckId(outcome.name(), "outcome.name", true, kMaxShortNameBytes)) return e;
      if (outcome.status() != v1::OUTCOME_STATUS_SUCCESS &&
          outcome.status() != v1::OUTCOME_STATUS_FAILURE) {
        return Invalid("outcome.status", "SUCCESS or FAILURE");
      }
      if (outcome.has_value() && !std::isfinite(outcome.value())) {
        return Invalid("outcome.value", "must be finite");
      }
      break;
    }
    case v1::Signal::kCustom:
      if (auto e = CheckId(signal.custom().name(), "custom.name", true, kMaxShortNameBytes)) {
        return e;
      }
      if (signal.custom().has_value()) {
        if (auto e = CheckStruct(signal.custom().value(), "custom.value")) return e;
      }
      break;
    default:
      return Invalid("kind", "required: explicit_feedback, implicit_signal, outcome or custom");
  }
  if (context.public_key) {
    const auto denied = [](std::string field, std::string reason) {
      return FieldError{absl::StatusCode::kPermissionDenied, std::move(field), std::move(reason)};
    };
    if (signal.subject_case() != v1::Signal::kTraceId) {
      return denied("session_id", "public keys may only write trace signals");
    }
    if (signal.user_id().empty()) return denied("user_id", "required with a public key");
    if (signal.actor() != common::v1::ACTOR_UNSPECIFIED &&
        signal.actor() != common::v1::ACTOR_USER) {
      return denied("actor", "public keys may only write USER signals");
    }
    if (signal.kind_case() == v1::Signal::kOutcome) {
      return denied("outcome", "outcome signals need a secret key");
    }
  }
  return std::nullopt;
}

}  // namespace flywheel::capture
