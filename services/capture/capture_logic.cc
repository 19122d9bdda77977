#include "services/capture/capture_logic.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/status/status_macros.h"
#include "common/text/text.h"
#include "services/capture/labeling.h"
#include "services/capture/rules.h"
#include "services/capture/validation.h"

namespace flywheel::capture {
namespace {

constexpr int kMaxReasonBytes = 200;
constexpr int kGetTraceSignalLimit = 1000;
constexpr size_t kSummaryInputBytes = 8 * 1024;
constexpr size_t kSummaryOutputBytes = 2 * 1024;
constexpr int kSummaryComments = 10;

v1::IngestResult Rejected(int index, const std::string& id, v1::IngestItemType type,
                          absl::StatusCode code, const std::string& field,
                          const std::string& reason) {
  v1::IngestResult result;
  result.set_item_type(type);
  auto* item = result.mutable_result();
  item->set_index(index);
  item->set_id(id);
  item->set_outcome(common::v1::ITEM_OUTCOME_REJECTED);
  item->set_code(static_cast<int>(code));
  item->set_field(field);
  item->set_reason(std::string(text::TruncateUtf8(reason, kMaxReasonBytes)));
  return result;
}

// Page tokens: web-safe base64 of "<filter hash>|<position...>". The filter hash ties a token
// to the request it came from (a token used with other filters is INVALID_ARGUMENT).
std::string FilterHash(google::protobuf::Message& request_copy) {
  const std::string hash = ContentHash(request_copy);
  return absl::BytesToHexString(hash.substr(0, 8));
}

std::string MakeToken(const std::string& filter_hash, const std::vector<std::string>& position) {
  std::string raw = filter_hash;
  for (const std::string& part : position) absl::StrAppend(&raw, "|", part);
  return absl::WebSafeBase64Escape(raw);
}

absl::StatusOr<std::vector<std::string>> ParseToken(const std::string& token,
                                                    const std::string& filter_hash, size_t parts) {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) {
    return absl::InvalidArgumentError("page_token: malformed");
  }
  std::vector<std::string> fields = absl::StrSplit(raw, absl::MaxSplits('|', parts));
  if (fields.size() != parts + 1) return absl::InvalidArgumentError("page_token: malformed");
  if (fields[0] != filter_hash) {
    return absl::InvalidArgumentError("page_token: issued for a different request");
  }
  fields.erase(fields.begin());
  return fields;
}

int PageSize(int requested, int default_size, int max_size) {
  if (requested <= 0) return default_size;
  return std::min(requested, max_size);
}

absl::Status CheckKinds(const google::protobuf::RepeatedField<int>& kinds, const char* field,
                        bool allow_derived) {
  for (int kind : kinds) {
    if (!v1::SignalKind_IsValid(kind) || kind == v1::SIGNAL_KIND_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": unknown signal kind"));
    }
    if (!allow_derived && kind >= v1::SIGNAL_KIND_DERIVED_REPHRASE) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": derived kinds are not signals"));
    }
  }
  return absl::OkStatus();
}

// Applies a read mask to a message: fields not named are cleared (`always` is kept).
absl::Status ApplyReadMask(const google::protobuf::FieldMask& mask,
                           google::protobuf::Message* message,
                           const std::set<std::string>& always) {
  if (mask.paths_size() == 0) return absl::OkStatus();
  const auto* descriptor = message->GetDescriptor();
  std::map<std::string, std::vector<std::string>> keep;  // top-level -> sub-paths
  for (const std::string& path : mask.paths()) {
    const size_t dot = path.find('.');
    const std::string head = path.substr(0, dot);
    if (descriptor->FindFieldByName(head) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("read_mask: unknown path \"", path, "\""));
    }
    keep[head].push_back(dot == std::string::npos ? "" : path.substr(dot + 1));
  }
  const auto* reflection = message->GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const auto* field = descriptor->field(i);
    if (always.count(field->name()) > 0) continue;
    auto it = keep.find(field->name());
    if (it == keep.end()) {
      reflection->ClearField(message, field);
      continue;
    }
    const bool whole = std::find(it->second.begin(), it->second.end(), "") != it->second.end();
    if (whole || field->type() != google::protobuf::FieldDescriptor::TYPE_MESSAGE ||
        field->is_repeated() || !reflection->HasField(*message, field)) {
      continue;
    }
    google::protobuf::FieldMask sub;
    for (const std::string& rest : it->second) sub.add_paths(rest);
    std::set<std::string> nested_always;
    if (field->name() == "trace") nested_always.insert("trace_id");
    RETURN_IF_ERROR(ApplyReadMask(sub, reflection->MutableMessage(message, field), nested_always));
  }
  return absl::OkStatus();
}

}  // namespace

std::string ContentHash(const google::protobuf::Message& message) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

CaptureLogic::CaptureLogic(CaptureRepository* repository, CaptureOptions options)
    : repository_(repository), options_(options) {}

absl::StatusOr<std::shared_ptr<const CaptureLogic::ProjectSettings>> CaptureLogic::Settings(
    const std::string& project_id) {
  const absl::Time now = absl::Now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = settings_.find(project_id);
    if (it != settings_.end() && now - it->second->loaded < options_.settings_ttl) {
      return it->second;
    }
  }
  auto settings = std::make_shared<ProjectSettings>();
  ASSIGN_OR_RETURN(std::optional<v1::RedactionConfig> config,
                   repository_->GetRedactionConfig(project_id));
  ASSIGN_OR_RETURN(std::unique_ptr<Redactor> redactor,
                   Redactor::Create(config.value_or(Redactor::DefaultConfig())));
  settings->redactor = std::move(redactor);
  ASSIGN_OR_RETURN(std::optional<v1::LabelRuleSet> rules, repository_->GetRuleSet(project_id, 0));
  settings->rules = rules.has_value() ? *rules : DefaultRuleSet();
  settings->loaded = now;
  std::lock_guard<std::mutex> lock(mu_);
  settings_[project_id] = settings;
  return std::shared_ptr<const ProjectSettings>(settings);
}

absl::StatusOr<CaptureLogic::IngestOutcome> CaptureLogic::Ingest(
    const Writer& writer, const std::vector<ItemRef>& items) {
  if (items.empty()) return absl::InvalidArgumentError("items: at least one item is required");
  if (items.size() > static_cast<size_t>(kMaxBatchItems)) {
    return absl::ResourceExhaustedError("items: at most 1000 per request");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const ProjectSettings> settings, Settings(writer.project_id));
  const ValidationContext context{absl::Now(), options_.retention, writer.public_key};
  std::set<std::string> categories;
  for (const auto& category : settings->rules.reason_categories()) categories.insert(category.id());

  IngestOutcome outcome;
  std::vector<v1::IngestResult>& results = outcome.results;
  results.resize(items.size());
  outcome.receive_times.assign(items.size(), absl::InfinitePast());
  outcome.trace_received.assign(items.size(), false);
  std::vector<PreparedItem> prepared;
  std::vector<int> prepared_index;                       // item index of each prepared entry
  std::vector<std::pair<int, int>> repeats;              // (item index, prepared entry it repeats)
  std::vector<int> charged;                              // items that took a rate-limit token
  std::map<std::string, int> first_trace, first_signal;  // id -> prepared entry
  for (int i = 0; i < static_cast<int>(items.size()); ++i) {
    const ItemRef& ref = items[i];
    if (ref.trace != nullptr) {
      const v1::Trace& trace = *ref.trace;
      if (writer.public_key) {
        results[i] = Rejected(i, trace.trace_id(), v1::INGEST_ITEM_TYPE_TRACE,
                              absl::StatusCode::kPermissionDenied, "trace",
                              "public keys may only write signals");
        continue;
      }
      if (auto error = ValidateTrace(trace, context)) {
        results[i] = Rejected(i, trace.trace_id(), v1::INGEST_ITEM_TYPE_TRACE, error->code,
                              error->field, error->reason);
        continue;
      }
      if (!trace.user_id().empty() && settings->redactor->MatchesEntirely(trace.user_id())) {
        results[i] = Rejected(i, trace.trace_id(), v1::INGEST_ITEM_TYPE_TRACE,
                              absl::StatusCode::kInvalidArgument, "user_id",
                              "looks like personal data: send a pseudonymous id");
        continue;
      }
      PreparedItem item;
      item.type = PreparedItem::Type::kTrace;
      item.trace = trace;
      item.trace.clear_receive_time();
      item.trace.clear_redactions();
      item.trace.clear_label();
      item.content_sha256 = ContentHash(item.trace);
      auto [it, fresh] = first_trace.emplace(trace.trace_id(), static_cast<int>(prepared.size()));
      if (!fresh) {
        repeats.emplace_back(i, it->second);
        continue;
      }
      // Defaults, after hashing: the hash covers the item as received.
      if (!item.trace.has_end_time()) {
        *item.trace.mutable_end_time() =
            item.trace.has_latency()
                ? ToProto(ToTime(item.trace.start_time()) + ToDuration(item.trace.latency()))
                : item.trace.start_time();
      }
      if (!item.trace.has_latency()) {
        *item.trace.mutable_latency() =
            ToProto(ToTime(item.trace.end_time()) - ToTime(item.trace.start_time()));
      }
      settings->redactor->RedactTrace(&item.trace);
      prepared_index.push_back(i);
      prepared.push_back(std::move(item));
    } else if (ref.signal != nullptr) {
      const v1::Signal& signal = *ref.signal;
      if (auto error = ValidateSignal(signal, context)) {
        results[i] = Rejected(i, signal.event_id(), v1::INGEST_ITEM_TYPE_SIGNAL, error->code,
                              error->field, error->reason);
        continue;
      }
      const bool limited =
          (signal.has_explicit_feedback() || writer.public_key) && !signal.user_id().empty();
      if (limited && !AllowUserSignal(writer.project_id, signal.user_id(), context.now)) {
        results[i] = Rejected(i, signal.event_id(), v1::INGEST_ITEM_TYPE_SIGNAL,
                              absl::StatusCode::kResourceExhausted, "user_id",
                              "this user's signal rate limit is exceeded; retry later");
        continue;
      }
      if (limited) charged.push_back(i);
      if (!signal.user_id().empty() && settings->redactor->MatchesEntirely(signal.user_id())) {
        results[i] = Rejected(i, signal.event_id(), v1::INGEST_ITEM_TYPE_SIGNAL,
                              absl::StatusCode::kInvalidArgument, "user_id",
                              "looks like personal data: send a pseudonymous id");
        continue;
      }
      if (signal.has_explicit_feedback()) {
        const auto& reasons = signal.explicit_feedback().reason_categories();
        bool rejected = false;
        for (int k = 0; k < reasons.size() && !rejected; ++k) {
          if (categories.count(reasons[k]) == 0) {
            results[i] = Rejected(i, signal.event_id(), v1::INGEST_ITEM_TYPE_SIGNAL,
                                  absl::StatusCode::kInvalidArgument,
                                  absl::StrCat("explicit_feedback.reason_categories[", k, "]"),
                                  "not one of the project's reason categories");
            rejected = true;
          }
        }
        if (rejected) continue;
      }
      PreparedItem item;
      item.type = PreparedItem::Type::kSignal;
      item.signal = signal;
      item.signal.clear_signal_kind();
      item.signal.clear_receive_time();
      item.signal.clear_redactions();
      item.signal.clear_trace_received();
      item.content_sha256 = ContentHash(item.signal);
      auto [it, fresh] = first_signal.emplace(signal.event_id(), static_cast<int>(prepared.size()));
      if (!fresh) {
        repeats.emplace_back(i, it->second);
        continue;
      }
      item.signal.set_signal_kind(KindOf(signal));
      if (!item.signal.has_occur_time()) *item.signal.mutable_occur_time() = ToProto(context.now);
      settings->redactor->RedactSignal(&item.signal);
      prepared_index.push_back(i);
      prepared.push_back(std::move(item));
    } else {
      results[i] =
          Rejected(i, "", v1::INGEST_ITEM_TYPE_UNSPECIFIED, absl::StatusCode::kInvalidArgument,
                   "item", "exactly one of trace or signal is required");
    }
  }

  std::vector<WriteResult> written;
  if (!prepared.empty()) {
    absl::StatusOr<std::vector<WriteResult>> write =
        repository_->Write(writer.project_id, prepared);
    if (!write.ok()) {
      for (int i : charged) RefundUserSignal(writer.project_id, items[i].signal->user_id());
      return write.status();
    }
    written = std::move(*write);
  }
  std::vector<absl::Time>& receive_times = outcome.receive_times;
  std::vector<bool>& trace_received = outcome.trace_received;
  auto fill = [&](int i, const PreparedItem& item, const WriteResult& write,
                  bool repeat_of_batch_item) {
    v1::IngestResult& result = results[i];
    const bool is_trace = item.type == PreparedItem::Type::kTrace;
    result.set_item_type(is_trace ? v1::INGEST_ITEM_TYPE_TRACE : v1::INGEST_ITEM_TYPE_SIGNAL);
    auto* outcome = result.mutable_result();
    outcome->set_index(i);
    outcome->set_id(item.id());
    if (write.outcome == WriteOutcome::kConflict) {
      result =
          Rejected(i, item.id(), result.item_type(), absl::StatusCode::kAlreadyExists,
                   is_trace ? "trace_id" : "event_id", "already stored with different content");
      return;
    }
    outcome->set_outcome(write.outcome == WriteOutcome::kAccepted && !repeat_of_batch_item
                             ? common::v1::ITEM_OUTCOME_ACCEPTED
                             : common::v1::ITEM_OUTCOME_DUPLICATE);
    *result.mutable_redactions() = write.redactions;
    receive_times[i] = write.receive_time;
    trace_received[i] = write.trace_received;
  };
  for (size_t k = 0; k < prepared.size(); ++k)
    fill(prepared_index[k], prepared[k], written[k], false);
  for (const auto& [i, k] : repeats) {
    const ItemRef& ref = items[i];
    PreparedItem repeat;
    repeat.type = prepared[k].type;
    if (ref.trace != nullptr) {
      repeat.trace = *ref.trace;
      repeat.trace.clear_receive_time();
      repeat.trace.clear_redactions();
      repeat.trace.clear_label();
      repeat.content_sha256 = ContentHash(repeat.trace);
    } else {
      repeat.signal = *ref.signal;
      repeat.signal.clear_signal_kind();
      repeat.signal.clear_receive_time();
      repeat.signal.clear_redactions();
      repeat.signal.clear_trace_received();
      repeat.content_sha256 = ContentHash(repeat.signal);
    }
    WriteResult write = written[k];
    if (write.outcome != WriteOutcome::kConflict &&
        repeat.content_sha256 != prepared[k].content_sha256) {
      write.outcome = WriteOutcome::kConflict;
    }
    fill(i, repeat, write, true);
  }
  for (int i : charged) {
    if (results[i].result().outcome() != common::v1::ITEM_OUTCOME_ACCEPTED) {
      RefundUserSignal(writer.project_id, items[i].signal->user_id());
    }
  }
  v1::IngestCounts* counts = &outcome.counts;
  for (const v1::IngestResult& result : results) {
    switch (result.result().outcome()) {
      case common::v1::ITEM_OUTCOME_ACCEPTED:
        counts->set_accepted(counts->accepted() + 1);
        counts->set_redactions(counts->redactions() + result.redactions().total());
        break;
      case common::v1::ITEM_OUTCOME_DUPLICATE:
        counts->set_duplicate(counts->duplicate() + 1);
        break;
      default:
        counts->set_rejected(counts->rejected() + 1);
    }
  }
  return outcome;
}

absl::StatusOr<v1::GetTraceResponse> CaptureLogic::GetTrace(const std::string& project_id,
                                                            const v1::GetTraceRequest& request) {
  if (!IsValidId(request.trace_id())) {
    return absl::InvalidArgumentError("trace_id: 1..128 bytes of A-Z a-z 0-9 . _ : -");
  }
  ASSIGN_OR_RETURN(std::optional<StoredTrace> stored,
                   repository_->GetTrace(project_id, request.trace_id()));
  if (!stored.has_value()) return absl::NotFoundError("trace_id: no such trace");
  v1::GetTraceResponse response;
  *response.mutable_trace() = std::move(stored->trace);
  ASSIGN_OR_RETURN(
      std::vector<v1::Signal> signals,
      repository_->TraceSignals(project_id, request.trace_id(), response.trace().session_id(),
                                kGetTraceSignalLimit + 1));
  if (signals.size() > static_cast<size_t>(kGetTraceSignalLimit)) {
    response.set_signals_truncated(true);
    signals.erase(signals.begin());
  }
  for (v1::Signal& signal : signals) {
    signal.set_trace_received(!signal.trace_id().empty());
    *response.add_signals() = std::move(signal);
  }
  ASSIGN_OR_RETURN(std::vector<v1::DerivedSignal> derived,
                   repository_->DerivedSignals(project_id, request.trace_id()));
  for (v1::DerivedSignal& signal : derived) *response.add_derived_signals() = std::move(signal);
  if (request.has_read_mask()) {
    RETURN_IF_ERROR(ApplyReadMask(request.read_mask(), &response, {}));
    response.mutable_trace()->set_trace_id(request.trace_id());
  }
  return response;
}

absl::StatusOr<v1::ListTracesResponse> CaptureLogic::ListTraces(
    const std::string& project_id, const v1::ListTracesRequest& request) {
  if (request.page_size() < 0) return absl::InvalidArgumentError("page_size: must not be negative");
  RETURN_IF_ERROR(CheckKinds(request.signal_kinds(), "signal_kinds", true));
  TraceFilter filter;
  if (request.time_range().has_start_time()) {
    filter.start_after = ToTime(request.time_range().start_time());
  }
  if (request.time_range().has_end_time()) {
    filter.start_before = ToTime(request.time_range().end_time());
  }
  if (filter.start_after && filter.start_before && *filter.start_before < *filter.start_after) {
    return absl::InvalidArgumentError("time_range: end_time before start_time");
  }
  filter.flagged_only = request.flagged_only();
  filter.feature_area = request.feature_area();
  filter.model = request.model();
  filter.model_version = request.model_version();
  filter.prompt_template_id = request.prompt_template_id();
  filter.prompt_version = request.prompt_version();
  filter.session_id = request.session_id();
  filter.user_id = request.user_id();
  for (int kind : request.signal_kinds()) filter.signal_kinds.push_back(kind);
  if (request.score_range().has_min()) filter.min_score = request.score_range().min();
  if (request.score_range().has_max()) filter.max_score = request.score_range().max();
  v1::ListTracesRequest key = request;
  key.clear_page_token();
  key.clear_page_size();
  const std::string hash = FilterHash(key);
  std::optional<TraceCursor> after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> position, ParseToken(request.page_token(), hash, 2));
    int64_t micros = 0;
    if (!absl::SimpleAtoi(position[0], &micros)) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
    after = TraceCursor{absl::FromUnixMicros(micros), position[1]};
  }
  const int limit = PageSize(request.page_size(), 50, 100);
  ASSIGN_OR_RETURN(std::vector<v1::Trace> traces,
                   repository_->ListTraces(project_id, filter, after, limit + 1));
  v1::ListTracesResponse response;
  const bool more = traces.size() > static_cast<size_t>(limit);
  if (more) {
    traces.pop_back();
    // The cursor is taken before the read mask, which may drop start_time.
    const v1::Trace& last = traces.back();
    response.set_next_page_token(MakeToken(
        hash, {absl::StrCat(absl::ToUnixMicros(ToTime(last.start_time()))), last.trace_id()}));
  }
  for (v1::Trace& trace : traces) {
    if (request.has_read_mask()) {
      RETURN_IF_ERROR(ApplyReadMask(request.read_mask(), &trace, {"trace_id"}));
    }
    *response.add_traces() = std::move(trace);
  }
  return response;
}

absl::StatusOr<v1::ListSignalsResponse> CaptureLogic::ListSignals(
    const std::string& project_id, const v1::ListSignalsRequest& request) {
  std::string trace_id, session_id;
  switch (request.parent_case()) {
    case v1::ListSignalsRequest::kTraceId:
      trace_id = request.trace_id();
      if (!IsValidId(trace_id)) return absl::InvalidArgumentError("trace_id: invalid id");
      break;
    case v1::ListSignalsRequest::kSessionId:
      session_id = request.session_id();
      if (!IsValidId(session_id)) return absl::InvalidArgumentError("session_id: invalid id");
      break;
    default:
      return absl::InvalidArgumentError("parent: trace_id or session_id is required");
  }
  if (request.page_size() < 0) return absl::InvalidArgumentError("page_size: must not be negative");
  RETURN_IF_ERROR(CheckKinds(request.kinds(), "kinds", false));
  v1::ListSignalsRequest key = request;
  key.clear_page_token();
  key.clear_page_size();
  const std::string hash = FilterHash(key);
  std::optional<SignalCursor> after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> position, ParseToken(request.page_token(), hash, 2));
    int64_t micros = 0;
    if (!absl::SimpleAtoi(position[0], &micros)) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
    after = SignalCursor{absl::FromUnixMicros(micros), position[1]};
  }
  const int limit = PageSize(request.page_size(), 100, 1000);
  std::vector<int> kinds(request.kinds().begin(), request.kinds().end());
  ASSIGN_OR_RETURN(
      std::vector<v1::Signal> signals,
      repository_->ListSignals(project_id, trace_id, session_id, kinds, after, limit + 1));
  v1::ListSignalsResponse response;
  const bool more = signals.size() > static_cast<size_t>(limit);
  if (more) signals.pop_back();
  for (v1::Signal& signal : signals) *response.add_signals() = std::move(signal);
  if (more) {
    const v1::Signal& last = response.signals(response.signals_size() - 1);
    response.set_next_page_token(
        MakeToken(hash, {absl::StrCat(absl::ToUnixMicros(OccurTime(last))), last.event_id()}));
  }
  return response;
}

v1::TraceSummary CaptureLogic::Summarize(const v1::Trace& trace,
                                         const std::vector<std::string>& comments_newest_first) {
  v1::TraceSummary summary;
  summary.set_trace_id(trace.trace_id());
  summary.set_session_id(trace.session_id());
  summary.set_user_id(trace.user_id());
  summary.set_feature_area(trace.feature_area());
  summary.set_model(trace.model());
  summary.set_model_version(trace.model_version());
  summary.set_prompt_template_id(trace.prompt_template_id());
  summary.set_prompt_version(trace.prompt_version());
  const std::string input = UserText(trace.input());
  const absl::string_view input_head = text::TruncateUtf8(input, kSummaryInputBytes);
  summary.set_input_text(std::string(input_head));
  summary.set_input_truncated(input_head.size() < input.size());
  const absl::string_view output_head = text::TruncateUtf8(trace.output(), kSummaryOutputBytes);
  summary.set_output_head(std::string(output_head));
  summary.set_output_truncated(output_head.size() < trace.output().size());
  for (size_t i = 0; i < comments_newest_first.size() && i < kSummaryComments; ++i) {
    summary.add_comments(comments_newest_first[i]);
  }
  *summary.mutable_start_time() = trace.start_time();
  return summary;
}

absl::StatusOr<v1::ReadFlaggedFeedResponse> CaptureLogic::ReadFlaggedFeed(
    const std::string& project_id, const v1::ReadFlaggedFeedRequest& request) {
  if (request.after_sequence() < 0) {
    return absl::InvalidArgumentError("after_sequence: must not be negative");
  }
  if (request.max_items() < 0 || request.max_items() > 1000) {
    return absl::InvalidArgumentError("max_items: 1..1000 (0 = default 100)");
  }
  const int max_items = request.max_items() == 0 ? 100 : request.max_items();
  ASSIGN_OR_RETURN(FeedPage page,
                   repository_->ReadFeed(project_id, request.after_sequence(), max_items));
  v1::ReadFlaggedFeedResponse response;
  response.set_high_water_mark(page.high_water_mark);
  response.set_oldest_sequence(page.oldest_sequence);
  response.set_next_after_sequence(request.after_sequence());
  size_t bytes = 0;
  for (FeedRow& row : page.rows) {
    if (row.trace.has_value()) *row.entry.mutable_trace() = Summarize(*row.trace, row.comments);
    bytes += row.entry.ByteSizeLong();
    // Stay well under the 4 MiB message limit; at least one entry is always returned.
    if (response.entries_size() > 0 && bytes > (3u << 20)) break;
    response.set_next_after_sequence(row.entry.sequence());
    *response.add_entries() = std::move(row.entry);
  }
  return response;
}

absl::StatusOr<v1::LabelRuleSet> CaptureLogic::GetLabelRuleSet(const std::string& project_id,
                                                               int64_t version) {
  if (version < 0) return absl::InvalidArgumentError("version: must not be negative");
  if (version == 1) {
    ASSIGN_OR_RETURN(std::optional<v1::LabelRuleSet> stored,
                     repository_->GetRuleSet(project_id, 1));
    return stored.has_value() ? *stored : DefaultRuleSet();
  }
  ASSIGN_OR_RETURN(std::optional<v1::LabelRuleSet> stored,
                   repository_->GetRuleSet(project_id, version));
  if (stored.has_value()) return *stored;
  if (version == 0) return DefaultRuleSet();
  return absl::NotFoundError("version: no such rule set version");
}

absl::StatusOr<v1::RedactionConfig> CaptureLogic::GetRedactionConfig(
    const std::string& project_id) {
  ASSIGN_OR_RETURN(std::optional<v1::RedactionConfig> stored,
                   repository_->GetRedactionConfig(project_id));
  if (!stored.has_value()) return Redactor::DefaultConfig();
  // Report every built-in detector, including ones the stored config does not mention.
  v1::RedactionConfig config = Redactor::DefaultConfig();
  for (auto& setting : *config.mutable_builtin_detectors()) {
    for (const auto& stored_setting : stored->builtin_detectors()) {
      if (stored_setting.detector() == setting.detector())
        setting.set_enabled(stored_setting.enabled());
    }
  }
  *config.mutable_custom_patterns() = stored->custom_patterns();
  config.set_version(stored->version());
  *config.mutable_update_time() = stored->update_time();
  return config;
}

}  // namespace flywheel::capture

namespace flywheel::capture {
namespace {

v1::CohortStats Cohort(const std::vector<const AuditUser*>& users, absl::Time window_end) {
  v1::CohortStats stats;
  stats.set_users(static_cast<int64_t>(users.size()));
  if (users.empty()) return stats;
  std::vector<double> tenure;
  int64_t traces = 0, sessions = 0;
  std::map<std::string, int64_t> areas;
  for (const AuditUser* user : users) {
    traces += user->traces;
    sessions += user->sessions;
    tenure.push_back(std::max(0.0, absl::ToDoubleHours(window_end - user->first_trace) / 24));
    for (const auto& [area, count] : user->traces_by_area) areas[area] += count;
  }
  std::sort(tenure.begin(), tenure.end());
  const size_t n = tenure.size();
  stats.set_traces(traces);
  stats.set_median_tenure_days(n % 2 ? tenure[n / 2] : (tenure[n / 2 - 1] + tenure[n / 2]) / 2);
  double sum = 0;
  for (double days : tenure) sum += days;
  stats.set_mean_tenure_days(sum / static_cast<double>(n));
  stats.set_sessions_per_user(static_cast<double>(sessions) / static_cast<double>(n));
  stats.set_turns_per_session(
      sessions > 0 ? static_cast<double>(traces) / static_cast<double>(sessions) : 0);
  std::vector<std::pair<int64_t, std::string>> ordered;
  for (const auto& [area, count] : areas) ordered.emplace_back(count, area);
  std::sort(ordered.rbegin(), ordered.rend());
  for (const auto& [count, area] : ordered) {
    auto* share = stats.add_feature_area_mix();
    share->set_feature_area(area);
    share->set_traces(count);
    share->set_share(static_cast<double>(count) / static_cast<double>(traces));
  }
  return stats;
}

v1::CaptureMaturity Maturity(double rate) {
  if (rate > 0.5) return v1::CAPTURE_MATURITY_MATURE;
  if (rate >= 0.25) return v1::CAPTURE_MATURITY_HEALTHY;
  if (rate >= 0.10) return v1::CAPTURE_MATURITY_BUILDING;
  return v1::CAPTURE_MATURITY_CAPTURE_ONLY;
}

}  // namespace

absl::StatusOr<v1::LabelRuleSet> CaptureLogic::UpdateLabelRuleSet(
    const std::string& project_id, const v1::UpdateLabelRuleSetRequest& request) {
  if (request.base_version() <= 0) return absl::InvalidArgumentError("base_version: required");
  ASSIGN_OR_RETURN(std::optional<v1::LabelRuleSet> stored, repository_->GetRuleSet(project_id, 0));
  const v1::LabelRuleSet current = stored.has_value() ? *stored : DefaultRuleSet();
  if (request.base_version() > current.version()) {
    return absl::NotFoundError("base_version: no such version");
  }
  // Retry safety: the update already went through.
  if (request.base_version() == current.base_version() && current.version() > 1) {
    ASSIGN_OR_RETURN(v1::LabelRuleSet base, GetLabelRuleSet(project_id, current.base_version()));
    absl::StatusOr<v1::LabelRuleSet> replay =
        MergeRuleSet(base, request.rule_set(), request.update_mask());
    if (replay.ok() && SameRuleContent(*replay, current)) return current;
  }
  if (request.base_version() != current.version()) {
    return absl::AbortedError("base_version: not the current version; re-read and retry");
  }
  ASSIGN_OR_RETURN(v1::LabelRuleSet merged,
                   MergeRuleSet(current, request.rule_set(), request.update_mask()));
  RETURN_IF_ERROR(ValidateRuleSet(merged, current));
  merged.set_version(current.version() + 1);
  merged.set_base_version(current.version());
  *merged.mutable_create_time() = ToProto(absl::Now());
  RETURN_IF_ERROR(repository_->StoreRuleSet(project_id, merged));
  ForgetSettings(project_id);
  return merged;
}

absl::StatusOr<v1::ListLabelRuleSetVersionsResponse> CaptureLogic::ListLabelRuleSetVersions(
    const std::string& project_id, const v1::ListLabelRuleSetVersionsRequest& request) {
  if (request.page_size() < 0) return absl::InvalidArgumentError("page_size: must not be negative");
  ASSIGN_OR_RETURN(std::vector<v1::LabelRuleSet> stored, repository_->ListRuleSets(project_id));
  stored.push_back(DefaultRuleSet());  // version 1 always exists
  const int64_t current = stored.front().version();
  int64_t after = INT64_MAX;  // versions below this
  const std::string hash = "rules";
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> position, ParseToken(request.page_token(), hash, 1));
    if (!absl::SimpleAtoi(position[0], &after)) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
  }
  const int limit = PageSize(request.page_size(), 50, 1000);
  v1::ListLabelRuleSetVersionsResponse response;
  for (const v1::LabelRuleSet& set : stored) {
    if (set.version() >= after) continue;
    if (response.versions_size() == limit) {
      response.set_next_page_token(MakeToken(
          hash, {absl::StrCat(response.versions(response.versions_size() - 1).version())}));
      break;
    }
    auto* version = response.add_versions();
    version->set_version(set.version());
    version->set_base_version(set.base_version());
    version->set_rule_count(set.rules_size());
    version->set_change_note(set.change_note());
    *version->mutable_create_time() = set.create_time();
    version->set_current(set.version() == current);
  }
  return response;
}

absl::StatusOr<v1::RedactionConfig> CaptureLogic::UpdateRedactionConfig(
    const std::string& project_id, const v1::UpdateRedactionConfigRequest& request) {
  ASSIGN_OR_RETURN(v1::RedactionConfig current, GetRedactionConfig(project_id));
  if (request.has_expected_version() && request.expected_version() != current.version()) {
    return absl::AbortedError("expected_version: not the current version");
  }
  ASSIGN_OR_RETURN(v1::RedactionConfig merged,
                   MergeRedactionConfig(current, request.config(), request.update_mask()));
  merged.set_version(current.version() + 1);
  *merged.mutable_update_time() = ToProto(absl::Now());
  RETURN_IF_ERROR(repository_->StoreRedactionConfig(project_id, merged, current.version()));
  ForgetSettings(project_id);
  return merged;
}

absl::StatusOr<v1::RelabelJob> CaptureLogic::Relabel(const std::string& project_id,
                                                     const v1::RelabelRequest& request) {
  if (!IsValidId(request.request_id())) {
    return absl::InvalidArgumentError("request_id: 1..128 bytes of A-Z a-z 0-9 . _ : -");
  }
  if (!request.time_range().has_start_time()) {
    return absl::InvalidArgumentError("time_range.start_time: required");
  }
  const absl::Time now = absl::Now();
  const absl::Time start = ToTime(request.time_range().start_time());
  const absl::Time end =
      request.time_range().has_end_time() ? ToTime(request.time_range().end_time()) : now;
  if (end <= start)
    return absl::InvalidArgumentError("time_range: end_time must be after start_time");
  if (end - start > absl::Hours(24 * 400)) {
    return absl::InvalidArgumentError("time_range: at most 400 days");
  }
  if (request.rule_set_version() < 0) {
    return absl::InvalidArgumentError("rule_set_version: must not be negative");
  }
  ASSIGN_OR_RETURN(v1::LabelRuleSet rules, GetLabelRuleSet(project_id, request.rule_set_version()));
  StoredRelabelJob job;
  job.project_id = project_id;
  job.request_sha256 = ContentHash(request);
  unsigned char random[12];
  RAND_bytes(random, sizeof(random));
  job.job.set_job_id("rj_" + absl::BytesToHexString(absl::string_view(
                                 reinterpret_cast<char*>(random), sizeof(random))));
  job.job.set_request_id(request.request_id());
  job.job.set_rule_set_version(rules.version());
  *job.job.mutable_time_range()->mutable_start_time() = ToProto(start);
  *job.job.mutable_time_range()->mutable_end_time() = ToProto(end);
  job.job.set_dry_run(request.dry_run());
  ASSIGN_OR_RETURN(StoredRelabelJob stored, repository_->CreateRelabelJob(job));
  return stored.job;
}

absl::StatusOr<v1::RelabelJob> CaptureLogic::GetRelabelJob(const std::string& project_id,
                                                           const std::string& job_id) {
  if (!IsValidId(job_id)) return absl::InvalidArgumentError("job_id: invalid id");
  ASSIGN_OR_RETURN(std::optional<v1::RelabelJob> job,
                   repository_->GetRelabelJob(project_id, job_id));
  if (!job.has_value()) return absl::NotFoundError("job_id: no such job");
  return *job;
}

absl::StatusOr<v1::ListPreferencePairsResponse> CaptureLogic::ListPreferencePairs(
    const std::string& project_id, const v1::ListPreferencePairsRequest& request) {
  if (request.page_size() < 0) return absl::InvalidArgumentError("page_size: must not be negative");
  PairFilter filter;
  if (request.time_range().has_start_time()) {
    filter.created_after = ToTime(request.time_range().start_time());
  }
  if (request.time_range().has_end_time()) {
    filter.created_before = ToTime(request.time_range().end_time());
  }
  if (filter.created_after && filter.created_before &&
      *filter.created_before < *filter.created_after) {
    return absl::InvalidArgumentError("time_range: end_time before start_time");
  }
  filter.feature_area = request.feature_area();
  v1::ListPreferencePairsRequest key = request;
  key.clear_page_token();
  key.clear_page_size();
  const std::string hash = FilterHash(key);
  std::optional<PairCursor> after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(std::vector<std::string> position, ParseToken(request.page_token(), hash, 2));
    int64_t micros = 0;
    if (!absl::SimpleAtoi(position[0], &micros)) {
      return absl::InvalidArgumentError("page_token: malformed");
    }
    after = PairCursor{absl::FromUnixMicros(micros), position[1]};
  }
  const int limit = PageSize(request.page_size(), 50, 500);
  ASSIGN_OR_RETURN(std::vector<v1::PreferencePair> pairs,
                   repository_->ListPreferencePairs(project_id, filter, after, limit + 1));
  v1::ListPreferencePairsResponse response;
  const bool more = pairs.size() > static_cast<size_t>(limit);
  if (more) pairs.pop_back();
  for (v1::PreferencePair& pair : pairs) *response.add_pairs() = std::move(pair);
  if (more) {
    const v1::PreferencePair& last = response.pairs(response.pairs_size() - 1);
    response.set_next_page_token(MakeToken(
        hash, {absl::StrCat(absl::ToUnixMicros(ToTime(last.create_time()))), last.pair_id()}));
  }
  return response;
}

absl::StatusOr<v1::SurvivorshipAudit> CaptureLogic::GetSurvivorshipAudit(
    const std::string& project_id, const v1::GetSurvivorshipAuditRequest& request) {
  if (!request.time_range().has_start_time() || !request.time_range().has_end_time()) {
    return absl::InvalidArgumentError("time_range: both bounds are required");
  }
  const absl::Time start = ToTime(request.time_range().start_time());
  const absl::Time end = ToTime(request.time_range().end_time());
  if (end <= start)
    return absl::InvalidArgumentError("time_range: end_time must be after start_time");
  if (end - start > absl::Hours(24 * 90)) {
    return absl::InvalidArgumentError("time_range: at most 90 days");
  }
  if (request.feature_area().size() > kMaxNameBytes) {
    return absl::InvalidArgumentError("feature_area: at most 128 bytes");
  }
  ASSIGN_OR_RETURN(AuditData data,
                   repository_->AuditWindow(project_id, start, end, request.feature_area()));
  v1::SurvivorshipAudit audit;
  *audit.mutable_time_range() = request.time_range();
  audit.set_feature_area(request.feature_area());
  audit.set_traces(data.traces);
  audit.set_sessions(data.sessions);
  audit.set_users(data.users);
  audit.set_traces_with_explicit_feedback(data.traces_with_explicit);
  audit.set_explicit_feedback_rate(
      data.traces > 0 ? static_cast<double>(data.traces_with_explicit) / data.traces : 0);
  audit.set_thumbs_up(data.thumbs_up);
  audit.set_thumbs_down(data.thumbs_down);
  audit.set_ratings(data.ratings);
  audit.set_comments_only(data.comments_only);
  audit.set_sessions_with_implicit_signal(data.sessions_with_implicit);
  const double rate =
      data.sessions > 0 ? static_cast<double>(data.sessions_with_implicit) / data.sessions : 0;
  audit.set_implicit_capture_rate(rate);
  audit.set_maturity(Maturity(rate));
  std::vector<const AuditUser*> raters, everyone;
  for (const AuditUser& user : data.per_user) {
    everyone.push_back(&user);
    if (user.rater) raters.push_back(&user);
  }
  *audit.mutable_raters() = Cohort(raters, end);
  *audit.mutable_all_users() = Cohort(everyone, end);
  DescribeSkew(&audit);
  *audit.mutable_compute_time() = ToProto(absl::Now());
  return audit;
}

void CaptureLogic::DescribeSkew(v1::SurvivorshipAudit* audit) {
  const v1::CohortStats& raters = audit->raters();
  const v1::CohortStats& all = audit->all_users();
  struct Candidate {
    v1::SkewFinding finding;
    double deviation;
  };
  std::vector<Candidate> candidates;
  auto ratio_finding = [&](const std::string& dimension, double raters_value, double all_value,
                           const std::string& what) {
    const double ratio = all_value > 0 ? raters_value / all_value : 0;
    if (all_value <= 0 || (ratio < 1.5 && ratio > 0.67)) return;
    Candidate candidate;
    candidate.finding.set_dimension(dimension);
    candidate.finding.set_raters_value(raters_value);
    candidate.finding.set_all_users_value(all_value);
    candidate.finding.set_ratio(ratio);
    candidate.finding.set_description(
        absl::StrFormat("raters have %.1fx the %s of all users", ratio, what));
    candidate.deviation = std::fabs(std::log(std::max(ratio, 1e-9)));
    candidates.push_back(std::move(candidate));
  };
  if (raters.users() > 0) {
    ratio_finding("median_tenure_days", raters.median_tenure_days(), all.median_tenure_days(),
                  "median tenure");
    ratio_finding("sessions_per_user", raters.sessions_per_user(), all.sessions_per_user(),
                  "sessions per user");
    ratio_finding("turns_per_session", raters.turns_per_session(), all.turns_per_session(),
                  "turns per session");
    std::map<std::string, double> all_share, rater_share;
    for (const auto& share : all.feature_area_mix())
      all_share[share.feature_area()] = share.share();
    for (const auto& share : raters.feature_area_mix()) {
      rater_share[share.feature_area()] = share.share();
    }
    for (const auto& [area, share] : all_share) {
      const double mine = rater_share.count(area) ? rater_share[area] : 0;
      if (std::fabs(mine - share) < 0.10) continue;
      Candidate candidate;
      candidate.finding.set_dimension("feature_area_share:" + area);
      candidate.finding.set_raters_value(mine);
      candidate.finding.set_all_users_value(share);
      candidate.finding.set_ratio(share > 0 ? mine / share : 0);
      candidate.finding.set_description(
          absl::StrFormat("%s is %.0f%% of raters' traces but %.0f%% of all traces",
                          area.empty() ? "(no feature area)" : area, 100 * mine, 100 * share));
      candidate.deviation = std::fabs(mine - share) * 4;  // 10 pts ~ ratio 1.5
      candidates.push_back(std::move(candidate));
    }
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return a.deviation > b.deviation; });
  for (Candidate& candidate : candidates) *audit->add_skew() = std::move(candidate.finding);
  std::string summary = absl::StrFormat(
      "%.1f%% of traces got explicit feedback from %d of %d users; %.0f%% of sessions carry a "
      "usable implicit signal (%s).",
      100 * audit->explicit_feedback_rate(), static_cast<int>(raters.users()),
      static_cast<int>(all.users()), 100 * audit->implicit_capture_rate(),
      audit->maturity() == v1::CAPTURE_MATURITY_MATURE     ? "mature"
      : audit->maturity() == v1::CAPTURE_MATURITY_HEALTHY  ? "healthy"
      : audit->maturity() == v1::CAPTURE_MATURITY_BUILDING ? "building"
                                                           : "capture only");
  if (audit->skew_size() == 0) {
    absl::StrAppend(&summary,
                    " Raters look like the rest of the users on tenure, activity and "
                    "feature mix.");
  } else {
    absl::StrAppend(&summary, " Raters are not representative: ", audit->skew(0).description(),
                    audit->skew_size() > 1 ? absl::StrCat(", and ", audit->skew(1).description())
                                           : std::string(),
                    ". Weigh explicit feedback accordingly and lean on implicit signals.");
  }
  audit->set_skew_summary(summary);
}

bool CaptureLogic::AllowUserSignal(const std::string& project_id, const std::string& user_id,
                                   absl::Time now) {
  if (options_.user_signals_per_minute <= 0) return true;
  const double capacity = options_.user_signals_per_minute;
  std::lock_guard<std::mutex> lock(buckets_mu_);
  if (buckets_.size() > 100000) {
    // Forget full buckets: they behave like new ones.
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      it = now - it->second.refilled > absl::Minutes(1) ? buckets_.erase(it) : std::next(it);
    }
  }
  auto [it, fresh] = buckets_.try_emplace(project_id + '\x1f' + user_id, Bucket{capacity, now});
  Bucket& bucket = it->second;
  if (!fresh) {
    const double elapsed_minutes = std::max(0.0, absl::ToDoubleMinutes(now - bucket.refilled));
    bucket.tokens = std::min(capacity, bucket.tokens + elapsed_minutes * capacity);
    bucket.refilled = now;
  }
  if (bucket.tokens < 1) return false;
  bucket.tokens -= 1;
  return true;
}

void CaptureLogic::RefundUserSignal(const std::string& project_id, const std::string& user_id) {
  if (options_.user_signals_per_minute <= 0) return;
  std::lock_guard<std::mutex> lock(buckets_mu_);
  auto it = buckets_.find(project_id + '\x1f' + user_id);
  if (it != buckets_.end()) {
    it->second.tokens = std::min<double>(options_.user_signals_per_minute, it->second.tokens + 1);
  }
}

void CaptureLogic::ForgetSettings(const std::string& project_id) {
  std::lock_guard<std::mutex> lock(mu_);
  settings_.erase(project_id);
}

}  // namespace flywheel::capture
