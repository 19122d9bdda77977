#include "services/capture/validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "absl/time/time.h"
#include "common/status/status_matchers.h"

namespace flywheel::capture {
namespace {

using absl::StatusCode;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);  // 2027-01-15

google::protobuf::Timestamp Ts(absl::Time time) {
  const int64_t nanos = absl::ToUnixNanos(time);  // times in these tests are after 1970
  google::protobuf::Timestamp ts;
  ts.set_seconds(nanos / 1'000'000'000);
  ts.set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  return ts;
}

google::protobuf::Duration Dur(int64_t seconds, int32_t nanos = 0) {
  google::protobuf::Duration duration;
  duration.set_seconds(seconds);
  duration.set_nanos(nanos);
  return duration;
}

ValidationContext Secret() {
  ValidationContext context;
  context.now = kNow;
  return context;
}

ValidationContext Public() {
  ValidationContext context = Secret();
  context.public_key = true;
  return context;
}

MATCHER(Accepted, "is accepted") {
  if (arg.has_value()) {
    *result_listener << "rejected: code " << arg->code << ", field \"" << arg->field << "\" ("
                     << arg->reason << ")";
    return false;
  }
  return true;
}

MATCHER_P2(RejectedWith, code, field,
           "is rejected with " + ::testing::PrintToString(code) + " on field \"" +
               std::string(field) + "\"") {
  if (!arg.has_value()) {
    *result_listener << "accepted";
    return false;
  }
  *result_listener << "code " << arg->code << ", field \"" << arg->field << "\"";
  return arg->code == code && arg->field == field;
}

// Rejected on `field`, whatever the code (for limits whose code the API leaves open).
MATCHER_P(RejectedOn, field, "is rejected on field \"" + std::string(field) + "\"") {
  if (!arg.has_value()) {
    *result_listener << "accepted";
    return false;
  }
  *result_listener << "code " << arg->code << ", field \"" << arg->field << "\"";
  return arg->field == field;
}

v1::Trace ValidTrace() {
  v1::Trace trace;
  trace.set_trace_id("trace-1");
  trace.set_model("gpt-4o");
  trace.mutable_input()->set_prompt("How do I reset my password?");
  trace.set_output("Open Settings, then Security.");
  *trace.mutable_start_time() = Ts(kNow - absl::Minutes(1));
  return trace;
}

v1::Trace FullTrace() {
  v1::Trace trace;
  trace.set_trace_id("Trace_1.a:b-c");
  trace.set_session_id("session-1");
  trace.set_user_id("user-7f3a");
  trace.set_feature_area("email draft");
  trace.set_prompt_template_id("tmpl.reset");
  trace.set_model("gpt-4o");
  trace.set_model_version("2024-08-06");
  trace.set_prompt_version("v12");
  auto* messages = trace.mutable_input()->mutable_messages();
  auto* system = messages->add_messages();
  system->set_role("system");
  system->set_content("You are helpful.");
  auto* user = messages->add_messages();
  user->set_role("user");
  user->set_name("jane");
  user->set_content("Caf\xc3\xa9 menu? \xf0\x9f\x98\x80");
  trace.set_output("Here it is.");
  *trace.mutable_latency() = Dur(1, 500'000'000);
  trace.set_input_tokens(0);
  trace.set_output_tokens(12);
  trace.set_cost_micros(0);
  (*trace.mutable_metadata()->mutable_fields())["region"].set_string_value("eu");
  (*trace.mutable_metadata()->mutable_fields())["score"].set_number_value(0.5);
  *trace.mutable_start_time() = Ts(kNow - absl::Seconds(10));
  *trace.mutable_end_time() = Ts(kNow - absl::Seconds(8));
  return trace;
}

v1::Signal ThumbSignal(v1::Thumb thumb = v1::THUMB_DOWN) {
  v1::Signal signal;
  signal.set_event_id("event-1");
  signal.set_trace_id("trace-1");
  signal.set_user_id("user-1");
  *signal.mutable_occur_time() = Ts(kNow - absl::Seconds(5));
  signal.mutable_explicit_feedback()->set_thumb(thumb);
  return signal;
}

v1::Signal ImplicitBase() {
  v1::Signal signal;
  signal.set_event_id("event-2");
  signal.set_trace_id("trace-1");
  signal.set_user_id("user-1");
  return signal;
}

v1::Signal CopySignal(int copied_chars = 42) {
  v1::Signal signal = ImplicitBase();
  signal.mutable_implicit_signal()->mutable_copy()->set_copied_chars(copied_chars);
  return signal;
}

v1::Signal OutcomeSignal() {
  v1::Signal signal;
  signal.set_event_id("event-3");
  signal.set_trace_id("trace-1");
  signal.mutable_outcome()->set_name("ticket_resolved");
  signal.mutable_outcome()->set_status(v1::OUTCOME_STATUS_SUCCESS);
  return signal;
}

v1::Signal CustomSignal() {
  v1::Signal signal;
  signal.set_event_id("event-4");
  signal.set_session_id("session-1");
  signal.mutable_custom()->set_name("exported_to_crm");
  return signal;
}

// A metadata struct nested `depth` levels deep (depth 1 = {"leaf": "x"}).
google::protobuf::Struct Nested(int depth) {
  google::protobuf::Struct root;
  google::protobuf::Struct* current = &root;
  for (int level = 1; level < depth; ++level) {
    current = (*current->mutable_fields())["child"].mutable_struct_value();
  }
  (*current->mutable_fields())["leaf"].set_string_value("x");
  return root;
}

// ---------------------------------------------------------------------------------------------
// Traces
// ---------------------------------------------------------------------------------------------

TEST(ValidateTraceTest, MinimalPromptTraceIsAccepted) {
  EXPECT_THAT(ValidateTrace(ValidTrace(), Secret()), Accepted());
}

TEST(ValidateTraceTest, FullMessagesTraceWithEveryOptionalFieldIsAccepted) {
  EXPECT_THAT(ValidateTrace(FullTrace(), Secret()), Accepted());
}

TEST(ValidateTraceTest, MissingTraceIdIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  trace.clear_trace_id();
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "trace_id"));
}

TEST(ValidateTraceTest, TraceIdOutsideCharsetIsInvalidArgument) {
  for (const std::string id : {"has space", "slash/id", "caf\xc3\xa9", "semi;colon", "tab\tid"}) {
    v1::Trace trace = ValidTrace();
    trace.set_trace_id(id);
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "trace_id"))
        << id;
  }
}

TEST(ValidateTraceTest, TraceIdOf128BytesIsAcceptedAnd129IsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  trace.set_trace_id(std::string(128, 'a'));
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
  trace.set_trace_id(std::string(129, 'a'));
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "trace_id"));
}

TEST(ValidateTraceTest, OptionalIdsOutsideCharsetNameTheirField) {
  {
    v1::Trace trace = ValidTrace();
    trace.set_session_id("session 1");
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "session_id"));
  }
  {
    v1::Trace trace = ValidTrace();
    trace.set_user_id("jane@example.com");
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "user_id"));
  }
  {
    v1::Trace trace = ValidTrace();
    trace.set_prompt_template_id(std::string(129, 't'));
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "prompt_template_id"));
  }
}

TEST(ValidateTraceTest, MissingModelIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  trace.clear_model();
  EXPECT_THAT(ValidateTrace(trace, Secret()), RejectedWith(StatusCode::kInvalidArgument, "model"));
}

TEST(ValidateTraceTest, NamesWithControlCharactersAreInvalidArgument) {
  {
    v1::Trace trace = ValidTrace();
    trace.set_model("gpt\n4o");
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "model"));
  }
  {
    v1::Trace trace = ValidTrace();
    trace.set_feature_area("search\x7f");
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "feature_area"));
  }
  {
    v1::Trace trace = ValidTrace();
    trace.set_prompt_version(std::string("v1\0", 3));
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "prompt_version"));
  }
}

TEST(ValidateTraceTest, NamesOver128BytesAreRejectedOnTheirField) {
  v1::Trace trace = ValidTrace();
  trace.set_model_version(std::string(128, 'v'));
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
  trace.set_model_version(std::string(129, 'v'));
  EXPECT_THAT(ValidateTrace(trace, Secret()), RejectedOn("model_version"));
}

TEST(ValidateTraceTest, MissingInputIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  trace.clear_input();
  EXPECT_THAT(ValidateTrace(trace, Secret()), RejectedWith(StatusCode::kInvalidArgument, "input"));
}

TEST(ValidateTraceTest, EmptyPromptIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  trace.mutable_input()->set_prompt("");
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "input.prompt"));
}

TEST(ValidateTraceTest, EmptyMessageListIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  trace.mutable_input()->mutable_messages();
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "input.messages"));
}

TEST(ValidateTraceTest, PromptAtLimitIsAcceptedAndOverLimitIsResourceExhausted) {
  v1::Trace trace = ValidTrace();
  trace.mutable_input()->set_prompt(std::string(kMaxInputBytes, 'p'));
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
  trace.mutable_input()->set_prompt(std::string(kMaxInputBytes + 1, 'p'));
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kResourceExhausted, "input.prompt"));
}

TEST(ValidateTraceTest, MoreThan1000MessagesIsResourceExhausted) {
  v1::Trace trace = ValidTrace();
  auto* messages = trace.mutable_input()->mutable_messages();
  for (int i = 0; i < 1000; ++i) {
    auto* message = messages->add_messages();
    message->set_role("user");
    message->set_content("hi");
  }
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
  auto* message = messages->add_messages();
  message->set_role("user");
  message->set_content("hi");
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kResourceExhausted, "input.messages"));
}

TEST(ValidateTraceTest, MessageTextOver256KiBInTotalIsResourceExhaustedOnInput) {
  v1::Trace trace = ValidTrace();
  auto* messages = trace.mutable_input()->mutable_messages();
  for (int i = 0; i < 2; ++i) {
    auto* message = messages->add_messages();
    message->set_role("user");
    message->set_content(std::string(kMaxInputBytes / 2, 'm'));
  }
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
  messages->mutable_messages(1)->mutable_content()->push_back('m');
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kResourceExhausted, "input"));
}

TEST(ValidateTraceTest, SingleMessageOverLimitIsResourceExhaustedOnItsContent) {
  v1::Trace trace = FullTrace();
  trace.mutable_input()->mutable_messages()->mutable_messages(1)->set_content(
      std::string(kMaxInputBytes + 1, 'm'));
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kResourceExhausted, "input.messages[1].content"));
}

TEST(ValidateTraceTest, MessageWithoutRoleIsInvalidArgumentOnItsRole) {
  v1::Trace trace = FullTrace();
  trace.mutable_input()->mutable_messages()->mutable_messages(1)->clear_role();
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "input.messages[1].role"));
}

TEST(ValidateTraceTest, MessageRoleOver32BytesIsRejectedOnItsRole) {
  v1::Trace trace = FullTrace();
  trace.mutable_input()->mutable_messages()->mutable_messages(0)->set_role(std::string(32, 'r'));
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
  trace.mutable_input()->mutable_messages()->mutable_messages(0)->set_role(std::string(33, 'r'));
  EXPECT_THAT(ValidateTrace(trace, Secret()), RejectedOn("input.messages[0].role"));
}

TEST(ValidateTraceTest, MessageNameOver128BytesIsRejectedOnItsName) {
  v1::Trace trace = FullTrace();
  trace.mutable_input()->mutable_messages()->mutable_messages(1)->set_name(std::string(129, 'n'));
  EXPECT_THAT(ValidateTrace(trace, Secret()), RejectedOn("input.messages[1].name"));
}

TEST(ValidateTraceTest, OutputAtLimitIsAcceptedAndOverLimitIsResourceExhausted) {
  v1::Trace trace = ValidTrace();
  trace.set_output(std::string(kMaxOutputBytes, 'o'));
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
  trace.set_output(std::string(kMaxOutputBytes + 1, 'o'));
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kResourceExhausted, "output"));
}

TEST(ValidateTraceTest, MalformedUtf8IsInvalidArgumentOnTheField) {
  {
    v1::Trace trace = ValidTrace();
    trace.set_output("truncated \xc3");
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "output"));
  }
  {
    v1::Trace trace = ValidTrace();
    trace.mutable_input()->set_prompt("overlong \xc0\xaf");
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "input.prompt"));
  }
  {
    v1::Trace trace = FullTrace();
    trace.mutable_input()->mutable_messages()->mutable_messages(0)->set_content("\xed\xa0\x80");
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "input.messages[0].content"));
  }
}

TEST(ValidateTraceTest, NegativeLatencyIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  *trace.mutable_latency() = Dur(-1);
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "latency"));
  *trace.mutable_latency() = Dur(0, -1);
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "latency"));
  *trace.mutable_latency() = Dur(0);
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
}

TEST(ValidateTraceTest, LatencyOutsideDurationRangeIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  *trace.mutable_latency() = Dur(1, 1'000'000'000);
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "latency"));
  *trace.mutable_latency() = Dur(315'576'000'001);
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "latency"));
}

TEST(ValidateTraceTest, NegativeCountsAreInvalidArgument) {
  {
    v1::Trace trace = ValidTrace();
    trace.set_input_tokens(-1);
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "input_tokens"));
  }
  {
    v1::Trace trace = ValidTrace();
    trace.set_output_tokens(-5);
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "output_tokens"));
  }
  {
    v1::Trace trace = ValidTrace();
    trace.set_cost_micros(-1);
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "cost_micros"));
  }
}

TEST(ValidateTraceTest, MissingStartTimeIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  trace.clear_start_time();
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "start_time"));
}

TEST(ValidateTraceTest, StartTimeMoreThanFiveMinutesInTheFutureIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  *trace.mutable_start_time() = Ts(kNow + absl::Minutes(4));
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
  *trace.mutable_start_time() = Ts(kNow + absl::Minutes(5));
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
  *trace.mutable_start_time() = Ts(kNow + absl::Minutes(5) + absl::Seconds(1));
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "start_time"));
}

TEST(ValidateTraceTest, StartTimeOlderThanRetentionIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  *trace.mutable_start_time() = Ts(kNow - absl::Hours(24 * 89));
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
  *trace.mutable_start_time() = Ts(kNow - absl::Hours(24 * 91));
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "start_time"));
}

TEST(ValidateTraceTest, RetentionComesFromTheContext) {
  v1::Trace trace = ValidTrace();
  *trace.mutable_start_time() = Ts(kNow - absl::Hours(24 * 8));
  ValidationContext context = Secret();
  context.retention = absl::Hours(24 * 7);
  EXPECT_THAT(ValidateTrace(trace, context),
              RejectedWith(StatusCode::kInvalidArgument, "start_time"));
  context.retention = absl::Hours(24 * 365);
  *trace.mutable_start_time() = Ts(kNow - absl::Hours(24 * 200));
  EXPECT_THAT(ValidateTrace(trace, context), Accepted());
}

TEST(ValidateTraceTest, TimestampOutsideValidRangeIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  trace.mutable_start_time()->set_nanos(1'000'000'000);
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "start_time"));
  trace.mutable_start_time()->set_nanos(-1);
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "start_time"));
}

TEST(ValidateTraceTest, EndTimeBeforeStartTimeIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  *trace.mutable_end_time() = Ts(kNow - absl::Minutes(1) - absl::Milliseconds(1));
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "end_time"));
  *trace.mutable_end_time() = trace.start_time();
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
}

TEST(ValidateTraceTest, EndTimeFarInTheFutureIsInvalidArgument) {
  v1::Trace trace = ValidTrace();
  *trace.mutable_end_time() = Ts(kNow + absl::Minutes(6));
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "end_time"));
}

TEST(ValidateTraceTest, MetadataOver16KiBIsResourceExhausted) {
  v1::Trace trace = ValidTrace();
  (*trace.mutable_metadata()->mutable_fields())["blob"].set_string_value(
      std::string(kMaxStructBytes, 'x'));
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kResourceExhausted, "metadata"));
}

TEST(ValidateTraceTest, MetadataDepthTenIsAcceptedAndElevenIsRejected) {
  v1::Trace trace = ValidTrace();
  *trace.mutable_metadata() = Nested(10);
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
  *trace.mutable_metadata() = Nested(11);
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "metadata"));
}

TEST(ValidateTraceTest, MetadataListsCountTowardsDepth) {
  v1::Trace trace = ValidTrace();
  google::protobuf::Value* value = &(*trace.mutable_metadata()->mutable_fields())["list"];
  for (int level = 1; level < 11; ++level) {  // struct + 10 nested lists = depth 11
    value = value->mutable_list_value()->add_values();
  }
  value->set_string_value("x");
  EXPECT_THAT(ValidateTrace(trace, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "metadata"));
}

TEST(ValidateTraceTest, MetadataNaNOrInfinityIsInvalidArgument) {
  {
    v1::Trace trace = ValidTrace();
    google::protobuf::Struct inner;
    (*inner.mutable_fields())["score"].set_number_value(std::nan(""));
    *(*trace.mutable_metadata()->mutable_fields())["nested"].mutable_struct_value() = inner;
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "metadata"));
  }
  {
    v1::Trace trace = ValidTrace();
    auto* list = (*trace.mutable_metadata()->mutable_fields())["values"].mutable_list_value();
    list->add_values()->set_number_value(1);
    list->add_values()->set_number_value(std::numeric_limits<double>::infinity());
    EXPECT_THAT(ValidateTrace(trace, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "metadata"));
  }
}

TEST(ValidateTraceTest, MetadataKeyOver128BytesIsRejected) {
  v1::Trace trace = ValidTrace();
  (*trace.mutable_metadata()->mutable_fields())[std::string(128, 'k')].set_bool_value(true);
  EXPECT_THAT(ValidateTrace(trace, Secret()), Accepted());
  (*trace.mutable_metadata()->mutable_fields())[std::string(129, 'k')].set_bool_value(true);
  EXPECT_THAT(ValidateTrace(trace, Secret()), RejectedOn("metadata"));
}

// ---------------------------------------------------------------------------------------------
// Signals: common fields
// ---------------------------------------------------------------------------------------------

TEST(ValidateSignalTest, EveryWellFormedKindIsAccepted) {
  std::vector<v1::Signal> signals;
  signals.push_back(ThumbSignal(v1::THUMB_UP));
  signals.push_back(ThumbSignal(v1::THUMB_DOWN));
  {
    v1::Signal signal = ThumbSignal();
    signal.mutable_explicit_feedback()->set_rating(4);
    signal.mutable_explicit_feedback()->set_comment("Close, but wrong date.");
    signal.mutable_explicit_feedback()->add_reason_categories("incorrect");
    signals.push_back(signal);
  }
  {
    v1::Signal signal = ThumbSignal();
    signal.mutable_explicit_feedback()->clear_value();
    signal.mutable_explicit_feedback()->set_comment("Only a comment.");
    signals.push_back(signal);
  }
  {
    v1::Signal signal = ThumbSignal();
    signal.mutable_explicit_feedback()->clear_value();
    signal.mutable_explicit_feedback()->add_reason_categories("too_slow");
    signals.push_back(signal);
  }
  signals.push_back(CopySignal());
  {
    v1::Signal signal = ImplicitBase();
    signal.mutable_implicit_signal()->mutable_regenerate()->set_attempt_number(2);
    signal.mutable_implicit_signal()->mutable_regenerate()->set_new_trace_id("trace-2");
    signals.push_back(signal);
  }
  {
    v1::Signal signal = ImplicitBase();
    signal.mutable_implicit_signal()->mutable_edit()->set_final_text("Edited text.");
    signals.push_back(signal);
  }
  {
    v1::Signal signal = ImplicitBase();
    signal.mutable_implicit_signal()->mutable_edit()->set_edit_ratio(1.0);
    signals.push_back(signal);
  }
  {
    v1::Signal signal = ImplicitBase();
    signal.mutable_implicit_signal()->mutable_rephrase()->set_new_input_text("Try again");
    signals.push_back(signal);
  }
  {
    v1::Signal signal = ImplicitBase();
    signal.mutable_implicit_signal()->mutable_abandonment();
    signals.push_back(signal);
  }
  {
    v1::Signal signal = ImplicitBase();
    *signal.mutable_implicit_signal()->mutable_dwell()->mutable_duration() = Dur(24 * 3600);
    signal.mutable_implicit_signal()->mutable_dwell()->set_next_action("new_query");
    signals.push_back(signal);
  }
  signals.push_back(OutcomeSignal());
  signals.push_back(CustomSignal());
  for (size_t i = 0; i < signals.size(); ++i) {
    EXPECT_THAT(ValidateSignal(signals[i], Secret()), Accepted()) << "signal " << i;
  }
}

TEST(ValidateSignalTest, MissingEventIdIsInvalidArgument) {
  v1::Signal signal = ThumbSignal();
  signal.clear_event_id();
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "event_id"));
  signal.set_event_id(std::string(129, 'e'));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "event_id"));
  signal.set_event_id("event#1");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "event_id"));
}

TEST(ValidateSignalTest, MissingSubjectIsInvalidArgument) {
  v1::Signal signal = ThumbSignal();
  signal.clear_subject();
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "subject"));
}

TEST(ValidateSignalTest, EmptyOrMalformedSubjectIdNamesTheSetField) {
  v1::Signal signal = ThumbSignal();
  signal.set_trace_id("");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "trace_id"));
  signal.set_session_id("session one");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "session_id"));
  signal.set_session_id("session-1");
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
}

TEST(ValidateSignalTest, MalformedUserIdIsInvalidArgument) {
  v1::Signal signal = CopySignal();
  signal.set_user_id("jane doe");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "user_id"));
}

TEST(ValidateSignalTest, MissingKindIsInvalidArgument) {
  v1::Signal signal = ThumbSignal();
  signal.clear_kind();
  EXPECT_THAT(ValidateSignal(signal, Secret()), RejectedWith(StatusCode::kInvalidArgument, "kind"));
}

TEST(ValidateSignalTest, OccurTimeInTheFutureOrBeyondRetentionIsInvalidArgument) {
  v1::Signal signal = ThumbSignal();
  *signal.mutable_occur_time() = Ts(kNow + absl::Minutes(6));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "occur_time"));
  *signal.mutable_occur_time() = Ts(kNow - absl::Hours(24 * 91));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "occur_time"));
  signal.clear_occur_time();  // defaults to receive time
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
}

TEST(ValidateSignalTest, FlywheelActorIsReservedAndInvalidArgument) {
  v1::Signal signal = CopySignal();
  signal.set_actor(common::v1::ACTOR_FLYWHEEL);
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "actor"));
}

TEST(ValidateSignalTest, UndefinedActorValueIsInvalidArgument) {
  v1::Signal signal = CopySignal();
  signal.set_actor(static_cast<common::v1::Actor>(9));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "actor"));
  signal.set_actor(common::v1::ACTOR_REVIEWER);
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
}

// ---------------------------------------------------------------------------------------------
// Signals: explicit feedback
// ---------------------------------------------------------------------------------------------

TEST(ValidateSignalTest, ExplicitFeedbackWithoutUserIdIsInvalidArgument) {
  v1::Signal signal = ThumbSignal();
  signal.clear_user_id();
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "user_id"));
}

TEST(ValidateSignalTest, ImplicitSignalWithoutUserIdIsAcceptedWithSecretKey) {
  v1::Signal signal = CopySignal();
  signal.clear_user_id();
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
}

TEST(ValidateSignalTest, UndefinedThumbValueIsInvalidArgument) {
  v1::Signal signal = ThumbSignal();
  signal.mutable_explicit_feedback()->set_thumb(static_cast<v1::Thumb>(7));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "explicit_feedback.thumb"));
}

TEST(ValidateSignalTest, ExplicitlySetUnspecifiedThumbIsInvalidArgument) {
  v1::Signal signal = ThumbSignal(v1::THUMB_UNSPECIFIED);
  ASSERT_EQ(signal.explicit_feedback().value_case(), v1::ExplicitFeedback::kThumb);
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "explicit_feedback.thumb"));
}

TEST(ValidateSignalTest, RatingOutsideOneToFiveIsInvalidArgument) {
  v1::Signal signal = ThumbSignal();
  for (int rating : {0, 6, -1}) {
    signal.mutable_explicit_feedback()->set_rating(rating);
    EXPECT_THAT(ValidateSignal(signal, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "explicit_feedback.rating"))
        << rating;
  }
  for (int rating : {1, 5}) {
    signal.mutable_explicit_feedback()->set_rating(rating);
    EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted()) << rating;
  }
}

TEST(ValidateSignalTest, EmptyExplicitFeedbackIsInvalidArgument) {
  v1::Signal signal = ThumbSignal();
  signal.mutable_explicit_feedback()->clear_value();
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "explicit_feedback"));
}

TEST(ValidateSignalTest, CommentOver8KiBIsResourceExhausted) {
  v1::Signal signal = ThumbSignal();
  signal.mutable_explicit_feedback()->set_comment(std::string(kMaxCommentBytes, 'c'));
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
  signal.mutable_explicit_feedback()->set_comment(std::string(kMaxCommentBytes + 1, 'c'));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kResourceExhausted, "explicit_feedback.comment"));
}

TEST(ValidateSignalTest, CommentWithMalformedUtf8IsInvalidArgument) {
  v1::Signal signal = ThumbSignal();
  signal.mutable_explicit_feedback()->set_comment("bad \xff byte");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "explicit_feedback.comment"));
}

TEST(ValidateSignalTest, MoreThanTenReasonCategoriesIsResourceExhausted) {
  v1::Signal signal = ThumbSignal();
  for (int i = 0; i < 10; ++i) {
    signal.mutable_explicit_feedback()->add_reason_categories("category_" + std::to_string(i));
  }
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
  signal.mutable_explicit_feedback()->add_reason_categories("category_10");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kResourceExhausted, "explicit_feedback.reason_categories"));
}

TEST(ValidateSignalTest, MalformedReasonCategoryIsInvalidArgumentWithItsIndex) {
  v1::Signal signal = ThumbSignal();
  signal.mutable_explicit_feedback()->add_reason_categories("incorrect");
  signal.mutable_explicit_feedback()->add_reason_categories("not ok");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "explicit_feedback.reason_categories[1]"));
  signal.mutable_explicit_feedback()->set_reason_categories(1, std::string(65, 'r'));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "explicit_feedback.reason_categories[1]"));
  signal.mutable_explicit_feedback()->set_reason_categories(1, "");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "explicit_feedback.reason_categories[1]"));
}

TEST(ValidateSignalTest, DuplicateReasonCategoryIsInvalidArgumentOnTheRepeat) {
  v1::Signal signal = ThumbSignal();
  signal.mutable_explicit_feedback()->add_reason_categories("incorrect");
  signal.mutable_explicit_feedback()->add_reason_categories("formatting");
  signal.mutable_explicit_feedback()->add_reason_categories("incorrect");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "explicit_feedback.reason_categories[2]"));
}

// ---------------------------------------------------------------------------------------------
// Signals: implicit
// ---------------------------------------------------------------------------------------------

TEST(ValidateSignalTest, ImplicitSignalWithoutActionIsInvalidArgument) {
  v1::Signal signal = ImplicitBase();
  signal.mutable_implicit_signal();
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "implicit_signal"));
}

TEST(ValidateSignalTest, CopiedCharsOutsideRangeIsInvalidArgument) {
  for (int chars : {0, -3, 262145}) {
    EXPECT_THAT(ValidateSignal(CopySignal(chars), Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.copy.copied_chars"))
        << chars;
  }
  EXPECT_THAT(ValidateSignal(CopySignal(1), Secret()), Accepted());
  EXPECT_THAT(ValidateSignal(CopySignal(262144), Secret()), Accepted());
}

TEST(ValidateSignalTest, NegativeCopyOffsetIsInvalidArgument) {
  v1::Signal signal = CopySignal();
  signal.mutable_implicit_signal()->mutable_copy()->set_output_offset(-1);
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.copy.output_offset"));
  signal.mutable_implicit_signal()->mutable_copy()->set_output_offset(0);
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
}

TEST(ValidateSignalTest, UndefinedCopyScopeIsInvalidArgument) {
  v1::Signal signal = CopySignal();
  signal.mutable_implicit_signal()->mutable_copy()->set_scope(static_cast<v1::CopyScope>(9));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.copy.scope"));
}

TEST(ValidateSignalTest, RegenerateAttemptNumberOneOrNegativeIsInvalidArgument) {
  v1::Signal signal = ImplicitBase();
  for (int attempt : {1, -2}) {
    signal.mutable_implicit_signal()->mutable_regenerate()->set_attempt_number(attempt);
    EXPECT_THAT(
        ValidateSignal(signal, Secret()),
        RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.regenerate.attempt_number"))
        << attempt;
  }
  signal.mutable_implicit_signal()->mutable_regenerate()->set_attempt_number(0);
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
}

TEST(ValidateSignalTest, MalformedNewTraceIdsAreInvalidArgument) {
  v1::Signal signal = ImplicitBase();
  signal.mutable_implicit_signal()->mutable_regenerate()->set_new_trace_id("trace 2");
  EXPECT_THAT(
      ValidateSignal(signal, Secret()),
      RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.regenerate.new_trace_id"));
  signal.mutable_implicit_signal()->mutable_rephrase()->set_new_trace_id("trace/2");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.rephrase.new_trace_id"));
}

TEST(ValidateSignalTest, EditWithoutTextOrRatioIsInvalidArgument) {
  v1::Signal signal = ImplicitBase();
  signal.mutable_implicit_signal()->mutable_edit();
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.edit"));
}

TEST(ValidateSignalTest, EditRatioOutsideUnitIntervalOrNaNIsInvalidArgument) {
  v1::Signal signal = ImplicitBase();
  for (double ratio : {-0.01, 1.01, std::nan(""), std::numeric_limits<double>::infinity()}) {
    signal.mutable_implicit_signal()->mutable_edit()->set_edit_ratio(ratio);
    EXPECT_THAT(ValidateSignal(signal, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.edit.edit_ratio"))
        << ratio;
  }
  signal.mutable_implicit_signal()->mutable_edit()->set_edit_ratio(0);
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
}

TEST(ValidateSignalTest, EditFinalTextOver256KiBIsResourceExhausted) {
  v1::Signal signal = ImplicitBase();
  signal.mutable_implicit_signal()->mutable_edit()->set_final_text(
      std::string(kMaxOutputBytes, 'f'));
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
  signal.mutable_implicit_signal()->mutable_edit()->set_final_text(
      std::string(kMaxOutputBytes + 1, 'f'));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kResourceExhausted, "implicit_signal.edit.final_text"));
}

TEST(ValidateSignalTest, EditFinalTextWithMalformedUtf8IsInvalidArgument) {
  v1::Signal signal = ImplicitBase();
  signal.mutable_implicit_signal()->mutable_edit()->set_final_text("\xf4\x90\x80\x80");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.edit.final_text"));
}

TEST(ValidateSignalTest, RephraseTextOver256KiBIsResourceExhausted) {
  v1::Signal signal = ImplicitBase();
  signal.mutable_implicit_signal()->mutable_rephrase()->set_new_input_text(
      std::string(256 * 1024 + 1, 'r'));
  EXPECT_THAT(
      ValidateSignal(signal, Secret()),
      RejectedWith(StatusCode::kResourceExhausted, "implicit_signal.rephrase.new_input_text"));
}

TEST(ValidateSignalTest, DwellWithoutDurationIsInvalidArgument) {
  v1::Signal signal = ImplicitBase();
  signal.mutable_implicit_signal()->mutable_dwell()->set_next_action("new_query");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.dwell.duration"));
}

TEST(ValidateSignalTest, NegativeDwellIsInvalidArgument) {
  v1::Signal signal = ImplicitBase();
  *signal.mutable_implicit_signal()->mutable_dwell()->mutable_duration() = Dur(-30);
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.dwell.duration"));
}

TEST(ValidateSignalTest, DwellOver24HoursIsInvalidArgument) {
  v1::Signal signal = ImplicitBase();
  *signal.mutable_implicit_signal()->mutable_dwell()->mutable_duration() = Dur(24 * 3600 + 1);
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.dwell.duration"));
}

TEST(ValidateSignalTest, DwellOneNanosecondOver24HoursIsInvalidArgument) {
  v1::Signal signal = ImplicitBase();
  *signal.mutable_implicit_signal()->mutable_dwell()->mutable_duration() = Dur(24 * 3600, 1);
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.dwell.duration"));
}

TEST(ValidateSignalTest, DwellNextActionOver64BytesIsRejected) {
  v1::Signal signal = ImplicitBase();
  *signal.mutable_implicit_signal()->mutable_dwell()->mutable_duration() = Dur(5);
  signal.mutable_implicit_signal()->mutable_dwell()->set_next_action(std::string(64, 'n'));
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
  signal.mutable_implicit_signal()->mutable_dwell()->set_next_action(std::string(65, 'n'));
  EXPECT_THAT(ValidateSignal(signal, Secret()), RejectedOn("implicit_signal.dwell.next_action"));
}

// ---------------------------------------------------------------------------------------------
// Signals: outcome and custom
// ---------------------------------------------------------------------------------------------

TEST(ValidateSignalTest, OutcomeNameMissingOrOutsideCharsetIsInvalidArgument) {
  v1::Signal signal = OutcomeSignal();
  signal.mutable_outcome()->clear_name();
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "outcome.name"));
  signal.mutable_outcome()->set_name("ticket resolved");
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "outcome.name"));
  signal.mutable_outcome()->set_name(std::string(65, 'o'));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "outcome.name"));
}

TEST(ValidateSignalTest, OutcomeStatusUnspecifiedOrUndefinedIsInvalidArgument) {
  v1::Signal signal = OutcomeSignal();
  signal.mutable_outcome()->set_status(v1::OUTCOME_STATUS_UNSPECIFIED);
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "outcome.status"));
  signal.mutable_outcome()->set_status(static_cast<v1::OutcomeStatus>(5));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "outcome.status"));
}

TEST(ValidateSignalTest, OutcomeValueNaNOrInfiniteIsInvalidArgument) {
  v1::Signal signal = OutcomeSignal();
  for (double value : {std::nan(""), -std::numeric_limits<double>::infinity()}) {
    signal.mutable_outcome()->set_value(value);
    EXPECT_THAT(ValidateSignal(signal, Secret()),
                RejectedWith(StatusCode::kInvalidArgument, "outcome.value"));
  }
  signal.mutable_outcome()->set_value(-12.5);
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
}

TEST(ValidateSignalTest, CustomNameMissingIsInvalidArgument) {
  v1::Signal signal = CustomSignal();
  signal.mutable_custom()->clear_name();
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "custom.name"));
}

TEST(ValidateSignalTest, CustomValueOver16KiBIsResourceExhausted) {
  v1::Signal signal = CustomSignal();
  (*signal.mutable_custom()->mutable_value()->mutable_fields())["payload"].set_string_value(
      std::string(kMaxStructBytes, 'v'));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kResourceExhausted, "custom.value"));
}

TEST(ValidateSignalTest, CustomValueTooDeepOrNaNIsInvalidArgument) {
  v1::Signal signal = CustomSignal();
  *signal.mutable_custom()->mutable_value() = Nested(11);
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "custom.value"));
  signal.mutable_custom()->mutable_value()->Clear();
  (*signal.mutable_custom()->mutable_value()->mutable_fields())["x"].set_number_value(std::nan(""));
  EXPECT_THAT(ValidateSignal(signal, Secret()),
              RejectedWith(StatusCode::kInvalidArgument, "custom.value"));
}

// ---------------------------------------------------------------------------------------------
// Public keys
// ---------------------------------------------------------------------------------------------

TEST(ValidateSignalPublicKeyTest, UserTraceSignalsAreAccepted) {
  EXPECT_THAT(ValidateSignal(ThumbSignal(), Public()), Accepted());
  EXPECT_THAT(ValidateSignal(CopySignal(), Public()), Accepted());
  v1::Signal signal = CopySignal();
  signal.set_actor(common::v1::ACTOR_USER);
  EXPECT_THAT(ValidateSignal(signal, Public()), Accepted());
}

TEST(ValidateSignalPublicKeyTest, SessionSignalIsPermissionDeniedOnSessionId) {
  v1::Signal signal = CopySignal();
  signal.set_session_id("session-1");
  EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
  EXPECT_THAT(ValidateSignal(signal, Public()),
              RejectedWith(StatusCode::kPermissionDenied, "session_id"));
}

TEST(ValidateSignalPublicKeyTest, MissingUserIdIsPermissionDeniedOnUserId) {
  v1::Signal signal = CopySignal();
  signal.clear_user_id();
  EXPECT_THAT(ValidateSignal(signal, Public()),
              RejectedWith(StatusCode::kPermissionDenied, "user_id"));
}

TEST(ValidateSignalPublicKeyTest, NonUserActorIsPermissionDeniedOnActor) {
  for (auto actor : {common::v1::ACTOR_SYSTEM, common::v1::ACTOR_REVIEWER}) {
    v1::Signal signal = CopySignal();
    signal.set_actor(actor);
    EXPECT_THAT(ValidateSignal(signal, Secret()), Accepted());
    EXPECT_THAT(ValidateSignal(signal, Public()),
                RejectedWith(StatusCode::kPermissionDenied, "actor"))
        << actor;
  }
}

TEST(ValidateSignalPublicKeyTest, OutcomeSignalIsPermissionDeniedOnOutcome) {
  v1::Signal signal = OutcomeSignal();
  signal.set_user_id("user-1");
  EXPECT_THAT(ValidateSignal(signal, Public()),
              RejectedWith(StatusCode::kPermissionDenied, "outcome"));
}

TEST(ValidateSignalPublicKeyTest, MalformedSignalIsStillInvalidArgument) {
  v1::Signal signal = CopySignal(0);
  EXPECT_THAT(ValidateSignal(signal, Public()),
              RejectedWith(StatusCode::kInvalidArgument, "implicit_signal.copy.copied_chars"));
}

// ---------------------------------------------------------------------------------------------
// IsValidId and KindOf
// ---------------------------------------------------------------------------------------------

TEST(IsValidIdTest, AcceptsTheIdCharsetWithinLength) {
  EXPECT_TRUE(IsValidId("AZaz09._:-"));
  EXPECT_TRUE(IsValidId(std::string(128, 'x')));
  EXPECT_FALSE(IsValidId(""));
  EXPECT_FALSE(IsValidId(std::string(129, 'x')));
  EXPECT_FALSE(IsValidId("a+b"));
  EXPECT_FALSE(IsValidId("abcd", 3));
}

TEST(KindOfTest, MapsEveryOneofToItsKind) {
  EXPECT_EQ(KindOf(ThumbSignal(v1::THUMB_UP)), v1::SIGNAL_KIND_THUMBS_UP);
  EXPECT_EQ(KindOf(ThumbSignal(v1::THUMB_DOWN)), v1::SIGNAL_KIND_THUMBS_DOWN);
  EXPECT_EQ(KindOf(ThumbSignal(v1::THUMB_UNSPECIFIED)), v1::SIGNAL_KIND_UNSPECIFIED);
  v1::Signal signal = ThumbSignal();
  signal.mutable_explicit_feedback()->set_rating(3);
  EXPECT_EQ(KindOf(signal), v1::SIGNAL_KIND_RATING);
  signal.mutable_explicit_feedback()->clear_value();
  signal.mutable_explicit_feedback()->set_comment("why");
  EXPECT_EQ(KindOf(signal), v1::SIGNAL_KIND_COMMENT);

  signal = ImplicitBase();
  signal.mutable_implicit_signal()->mutable_copy()->set_copied_chars(3);
  EXPECT_EQ(KindOf(signal), v1::SIGNAL_KIND_COPY);
  signal.mutable_implicit_signal()->mutable_regenerate();
  EXPECT_EQ(KindOf(signal), v1::SIGNAL_KIND_REGENERATE);
  signal.mutable_implicit_signal()->mutable_edit()->set_edit_ratio(0.5);
  EXPECT_EQ(KindOf(signal), v1::SIGNAL_KIND_EDIT);
  signal.mutable_implicit_signal()->mutable_rephrase();
  EXPECT_EQ(KindOf(signal), v1::SIGNAL_KIND_REPHRASE);
  signal.mutable_implicit_signal()->mutable_abandonment();
  EXPECT_EQ(KindOf(signal), v1::SIGNAL_KIND_ABANDONMENT);
  signal.mutable_implicit_signal()->mutable_dwell();
  EXPECT_EQ(KindOf(signal), v1::SIGNAL_KIND_DWELL);
  signal.mutable_implicit_signal()->Clear();
  EXPECT_EQ(KindOf(signal), v1::SIGNAL_KIND_UNSPECIFIED);

  EXPECT_EQ(KindOf(OutcomeSignal()), v1::SIGNAL_KIND_OUTCOME);
  EXPECT_EQ(KindOf(CustomSignal()), v1::SIGNAL_KIND_CUSTOM);
  signal.clear_kind();
  EXPECT_EQ(KindOf(signal), v1::SIGNAL_KIND_UNSPECIFIED);
}

}  // namespace
}  // namespace flywheel::capture
