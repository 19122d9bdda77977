#include "services/annotation/promotion.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/annotation/agreement.h"
#include "services/annotation/logic_util.h"
#include "services/annotation/rubric.h"

namespace flywheel::annotation {
namespace {

namespace evalv1 = ::flywheel::evalset::v1;
using google::protobuf::Value;

Value ToValue(const v1::FieldValue& v) {
  Value out;
  switch (v.kind_case()) {
    case v1::FieldValue::kCategorical:
      for (const std::string& s : v.categorical().values()) {
        out.mutable_list_value()->add_values()->set_string_value(s);
      }
      if (v.categorical().values().empty()) out.mutable_list_value();
      break;
    case v1::FieldValue::kNumeric:
      out.set_number_value(v.numeric());
      break;
    case v1::FieldValue::kBoolean:
      out.set_bool_value(v.boolean());
      break;
    case v1::FieldValue::kFreeText:
      out.set_string_value(v.free_text());
      break;
    case v1::FieldValue::kCorrection:
      out.set_string_value(v.correction());
      break;
    case v1::FieldValue::KIND_NOT_SET:
      out.set_null_value(google::protobuf::NULL_VALUE);
      break;
  }
  return out;
}

PromotionRequest MakeRequest(const QueueRecord& queue, const v1::Item& item,
                             const AnnotationRecord& a, v1::PromotionTrigger trigger,
                             const std::string& eval_set_id) {
  PromotionRequest p;
  p.annotation_id = a.annotation.annotation_id();
  p.eval_set_id = eval_set_id;
  p.trigger = trigger;
  p.revision = a.annotation.revision();
  p.payload = BuildCase(queue.queue, item, a.annotation);
  return p;
}

}  // namespace

evalv1::Case BuildCase(const v1::Queue& queue, const v1::Item& item,
                       const v1::Annotation& annotation) {
  evalv1::Case c;
  c.set_case_key(annotation.annotation_id());
  *c.mutable_input() = item.snapshot().input();
  c.set_expected_output(CorrectionValue(queue.rubric(), annotation.values()));
  if (!item.snapshot().cluster_id().empty() && !item.snapshot().cluster_name().empty()) {
    c.mutable_theme()->set_theme_id(item.snapshot().cluster_id());
    c.mutable_theme()->set_name(item.snapshot().cluster_name());
  }
  c.set_source_trace_id(annotation.trace_id());
  c.set_source_annotation_id(annotation.annotation_id());
  auto& fields = *c.mutable_metadata()->mutable_fields();
  fields["queue_id"].set_string_value(annotation.queue_id());
  fields["reviewer_id"].set_string_value(annotation.reviewer_id());
  fields["annotation_revision"].set_number_value(annotation.revision());
  auto& values = *fields["values"].mutable_struct_value()->mutable_fields();
  for (const auto& [key, value] : annotation.values()) values[key] = ToValue(value);
  fields["original_output"].set_string_value(item.snapshot().output());
  return c;
}

PromotionDecider AutomaticPromotion(bool is_submit) {
  return [is_submit](const PromotionContext& context) -> PromotionDecision {
    PromotionDecision decision;
    const v1::Queue& queue = context.queue.queue;
    const std::string& eval_set = queue.default_eval_set_id();
    const AnnotationRecord& changed = context.changed;
    const v1::PromotionMode mode = queue.promotion_policy().mode();
    if (is_submit && !eval_set.empty()) {
      if (changed.promote.value_or(false)) {
        decision.promotions.push_back(MakeRequest(context.queue, context.item, changed,
                                                  v1::PROMOTION_TRIGGER_MANUAL, eval_set));
      } else if (mode == v1::PROMOTION_MODE_ON_SUBMIT && changed.promote.value_or(true)) {
        decision.promotions.push_back(MakeRequest(context.queue, context.item, changed,
                                                  v1::PROMOTION_TRIGGER_ON_SUBMIT, eval_set));
      }
    }
    if (mode == v1::PROMOTION_MODE_ON_AGREEMENT && !eval_set.empty() &&
        context.item.state() == v1::ITEM_STATE_DONE && !context.item.agreement_reached()) {
      std::vector<AgreementCandidate> candidates;
      for (const AnnotationRecord& a : context.annotations) {
        AgreementCandidate c;
        c.annotation_id = a.annotation.annotation_id();
        c.values = a.annotation.values();
        c.submit_time = ToTime(a.annotation.submit_time());
        c.opted_out = a.promote.has_value() && !*a.promote;
        candidates.push_back(std::move(c));
      }
      const std::vector<std::string> configured(
          queue.promotion_policy().agreement_field_keys().begin(),
          queue.promotion_policy().agreement_field_keys().end());
      std::optional<std::string> chosen = ChooseAgreedAnnotation(
          candidates, AgreementFieldKeys(queue.rubric(), configured),
          queue.promotion_policy().agreement_min_share(), queue.reviewers_per_item());
      if (chosen) {
        decision.agreement_reached = true;
        decision.promoted_annotation_id = *chosen;
        for (const AnnotationRecord& a : context.annotations) {
          if (a.annotation.annotation_id() != *chosen) continue;
          if (a.annotation.promotion().state() == v1::PROMOTION_STATE_NOT_PROMOTED) {
            decision.promotions.push_back(MakeRequest(
                context.queue, context.item, a, v1::PROMOTION_TRIGGER_ON_AGREEMENT, eval_set));
          }
        }
      }
    }
    return decision;
  };
}

absl::StatusOr<std::optional<PromotionRequest>> ManualPromotion(const std::string& eval_set_id,
                                                                const QueueRecord& queue,
                                                                const v1::Item& item,
                                                                const AnnotationRecord& current) {
  const std::string target = eval_set_id.empty() ? queue.queue.default_eval_set_id() : eval_set_id;
  if (target.empty()) {
    return absl::FailedPreconditionError(
        "no eval_set_id given and the queue has no default_eval_set_id");
  }
  const v1::PromotionStatus& status = current.annotation.promotion();
  const bool live = status.state() == v1::PROMOTION_STATE_PENDING ||
                    status.state() == v1::PROMOTION_STATE_DELIVERED;
  if (live && status.eval_set_id() != target) {
    return absl::FailedPreconditionError(
        absl::StrCat("already promoted to eval set ", status.eval_set_id()));
  }
  if (live && status.revision() == current.annotation.revision()) {
    return std::optional<PromotionRequest>();
  }
  PromotionRequest p = MakeRequest(queue, item, current, v1::PROMOTION_TRIGGER_MANUAL, target);
  if (status.state() == v1::PROMOTION_STATE_DELIVERED && !status.eval_case_id().empty()) {
    p.update_case_id = status.eval_case_id();
  }
  return std::optional<PromotionRequest>(std::move(p));
}

DeliveryOutcome ClassifyDelivery(const absl::Status& status,
                                 const ::flywheel::common::v1::ItemResult* result,
                                 int32_t attempts_before, absl::Time now,
                                 const BackoffOptions& backoff) {
  DeliveryOutcome out;
  out.next_attempt_time = now;
  auto retry = [&](int code, std::string error) {
    out.state = v1::PROMOTION_STATE_PENDING;
    out.error_code = code;
    out.error = std::move(error);
    const double factor = std::pow(2.0, std::min(attempts_before, 30));
    absl::Duration delay = std::min(backoff.initial * factor, backoff.max);
    thread_local std::mt19937_64 random(std::random_device{}());
    std::uniform_real_distribution<double> jitter(1 - backoff.jitter, 1 + backoff.jitter);
    delay = delay * jitter(random);
    out.next_attempt_time = now + delay;
  };
  if (!status.ok()) {
    switch (status.code()) {
      case absl::StatusCode::kInvalidArgument:
      case absl::StatusCode::kNotFound:
      case absl::StatusCode::kFailedPrecondition:
      case absl::StatusCode::kPermissionDenied:
        out.state = v1::PROMOTION_STATE_FAILED;
        out.error_code = static_cast<int>(status.code());
        out.error = std::string(status.message());
        return out;
      default:
        retry(static_cast<int>(status.code()), std::string(status.message()));
        return out;
    }
  }
  if (result == nullptr) {
    retry(static_cast<int>(absl::StatusCode::kUnavailable), "eval-set returned no result");
    return out;
  }
  switch (result->outcome()) {
    case ::flywheel::common::v1::ITEM_OUTCOME_ACCEPTED:
    case ::flywheel::common::v1::ITEM_OUTCOME_DUPLICATE:
      out.state = v1::PROMOTION_STATE_DELIVERED;
      out.eval_case_id = result->id();
      return out;
    default:
      if (result->code() == static_cast<int>(absl::StatusCode::kUnavailable) ||
          result->code() == static_cast<int>(absl::StatusCode::kAborted)) {
        retry(result->code(), result->reason());
        return out;
      }
      out.state = v1::PROMOTION_STATE_FAILED;
      out.error_code = result->code();
      out.error = result->reason();
      return out;
  }
}

}  // namespace flywheel::annotation
