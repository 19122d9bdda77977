#include "services/capture/redaction.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "common/status/status_matchers.h"

namespace flywheel::capture {
namespace {

using ::flywheel::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

std::map<std::string, int> ByDetector(const v1::RedactionCounts& counts) {
  return std::map<std::string, int>(counts.by_detector().begin(), counts.by_detector().end());
}

v1::RedactionConfig ConfigWith(v1::BuiltinDetector disabled) {
  v1::RedactionConfig config = Redactor::DefaultConfig();
  for (auto& setting : *config.mutable_builtin_detectors()) {
    if (setting.detector() == disabled) setting.set_enabled(false);
  }
  return config;
}

v1::RedactionConfig WithCustom(const std::string& name, const std::string& pattern,
                               bool enabled = true) {
  v1::RedactionConfig config = Redactor::DefaultConfig();
  auto* custom = config.add_custom_patterns();
  custom->set_name(name);
  custom->set_pattern(pattern);
  custom->set_enabled(enabled);
  return config;
}

class RedactionTest : public ::testing::Test {
 protected:
  void SetUp() override { redactor_ = Make(Redactor::DefaultConfig()); }

  static std::unique_ptr<Redactor> Make(const v1::RedactionConfig& config) {
    auto redactor = Redactor::Create(config);
    EXPECT_TRUE(redactor.ok()) << redactor.status();
    return redactor.ok() ? std::move(redactor).value() : nullptr;
  }

  // Redacts `text` with `redactor` (the default one when null); counts land in counts_.
  std::string Redact(std::string text, const Redactor* redactor = nullptr) {
    counts_.Clear();
    (redactor != nullptr ? redactor : redactor_.get())->Redact(&text, &counts_);
    return text;
  }

  std::unique_ptr<Redactor> redactor_;
  v1::RedactionCounts counts_;
};

// ---------------------------------------------------------------------------------------------
// Built-in detectors
// ---------------------------------------------------------------------------------------------

TEST_F(RedactionTest, DefaultConfigEnablesEveryBuiltinDetector) {
  const v1::RedactionConfig config = Redactor::DefaultConfig();
  std::map<v1::BuiltinDetector, bool> enabled;
  for (const auto& setting : config.builtin_detectors())
    enabled[setting.detector()] = setting.enabled();
  EXPECT_THAT(enabled, UnorderedElementsAre(Pair(v1::BUILTIN_DETECTOR_EMAIL, true),
                                            Pair(v1::BUILTIN_DETECTOR_PHONE, true),
                                            Pair(v1::BUILTIN_DETECTOR_CARD_NUMBER, true),
                                            Pair(v1::BUILTIN_DETECTOR_API_KEY, true),
                                            Pair(v1::BUILTIN_DETECTOR_IP_ADDRESS, true)));
  EXPECT_EQ(config.custom_patterns_size(), 0);
  EXPECT_EQ(config.version(), 0);
}

TEST_F(RedactionTest, OrdinaryTextIsLeftAloneWithNoCounts) {
  const std::string text = "The meeting is at 10:30 in room 42; bring 3 copies of the Q4 report.";
  EXPECT_EQ(Redact(text), text);
  EXPECT_EQ(counts_.total(), 0);
  EXPECT_TRUE(counts_.by_detector().empty());
}

TEST_F(RedactionTest, EmailIsReplacedAndSurroundingTextKept) {
  const std::string out = Redact("Contact me at jane.doe+work@mail.example.co.uk please.");
  EXPECT_THAT(out, Not(HasSubstr("jane.doe")));
  EXPECT_THAT(out, Not(HasSubstr("example.co.uk")));
  EXPECT_THAT(out, HasSubstr("[REDACTED:email]"));
  EXPECT_THAT(out, HasSubstr("Contact me at "));
  EXPECT_THAT(out, HasSubstr(" please."));
  EXPECT_THAT(ByDetector(counts_), UnorderedElementsAre(Pair("email", 1)));
  EXPECT_EQ(counts_.total(), 1);
}

TEST_F(RedactionTest, PhoneNumbersInCommonFormatsAreReplaced) {
  for (const std::string phone : {"+1 415 555 2671", "(415) 555-2671", "415-555-2671",
                                  "415.555.2671", "+44 20 7946 0958", "+49 30 1234567"}) {
    const std::string out = Redact("Call " + phone + " today");
    EXPECT_THAT(out, Not(HasSubstr(phone))) << phone;
    EXPECT_THAT(out, Not(HasSubstr("555"))) << phone;
    EXPECT_THAT(out, HasSubstr("[REDACTED:phone]")) << phone;
    EXPECT_THAT(out, HasSubstr("Call ")) << phone;
    EXPECT_THAT(out, HasSubstr(" today")) << phone;
    EXPECT_THAT(ByDetector(counts_), UnorderedElementsAre(Pair("phone", 1))) << phone;
  }
}

TEST_F(RedactionTest, InternationalPhoneWithoutSeparatorsIsReplaced) {
  for (const std::string phone : {"+14155552671", "+442079460958", "+49301234567"}) {
    const std::string out = Redact("Call " + phone + " today");
    EXPECT_THAT(out, Not(HasSubstr(phone.substr(1)))) << phone;
    EXPECT_THAT(out, HasSubstr("[REDACTED:phone]")) << phone;
    EXPECT_THAT(out, HasSubstr("Call ")) << phone;
    EXPECT_THAT(out, HasSubstr(" today")) << phone;
    EXPECT_THAT(ByDetector(counts_), UnorderedElementsAre(Pair("phone", 1))) << phone;
  }
}

TEST_F(RedactionTest, LuhnValidCardNumbersAreReplaced) {
  for (const std::string card : {"4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111",
                                 "5500 0000 0000 0004", "378282246310005"}) {
    const std::string out = Redact("Card: " + card + ", thanks");
    EXPECT_THAT(out, Not(HasSubstr(card))) << card;
    EXPECT_THAT(out, Not(HasSubstr("1111"))) << card;
    EXPECT_THAT(out, HasSubstr("[REDACTED:card_number]")) << card;
    EXPECT_THAT(out, HasSubstr("Card: ")) << card;
    EXPECT_THAT(out, HasSubstr(", thanks")) << card;
    EXPECT_THAT(ByDetector(counts_), UnorderedElementsAre(Pair("card_number", 1))) << card;
  }
}

TEST_F(RedactionTest, CardNumberNextToOtherDigitGroupsIsStillReplaced) {
  for (const std::string text :
       {"Card 4111111111111111 12/27 cvv 123", "Card 4111 1111 1111 1111 123 is mine",
        "Ref 12 4111-1111-1111-1111 is mine"}) {
    const std::string out = Redact(text);
    EXPECT_THAT(out, Not(HasSubstr("4111"))) << text;
    EXPECT_THAT(out, HasSubstr("[REDACTED:card_number]")) << text;
    EXPECT_THAT(out, ::testing::StartsWith(text.substr(0, 4))) << text;
    EXPECT_EQ(ByDetector(counts_)["card_number"], 1) << text;
  }
  EXPECT_THAT(Redact("Card 4111111111111111 12/27 cvv 123"), HasSubstr(" 12/27 cvv 123"));
}

TEST_F(RedactionTest, LuhnInvalidSixteenDigitNumberIsLeftAlone) {
  const std::string text = "Order number 4111111111111112 shipped.";
  EXPECT_EQ(Redact(text), text);
  EXPECT_EQ(counts_.total(), 0);
}

TEST_F(RedactionTest, KnownApiKeyPrefixesAreReplaced) {
  for (const std::string key :
       {"sk-proj4f9Qa8Zr1LmX0pT7wB2c", "AKIAIOSFODNN7EXAMPLE",
        "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "xoxb-1234567890-abcdefghij"}) {
    const std::string out = Redact("token=" + key + " end");
    EXPECT_THAT(out, Not(HasSubstr(key))) << key;
    EXPECT_THAT(out, HasSubstr("[REDACTED:api_key]")) << key;
    EXPECT_THAT(out, HasSubstr("token=")) << key;
    EXPECT_THAT(out, HasSubstr(" end")) << key;
    EXPECT_THAT(ByDetector(counts_), UnorderedElementsAre(Pair("api_key", 1))) << key;
  }
}

TEST_F(RedactionTest, LongRandomTokenIsReplaced) {
  const std::string token = "Zx8Qw3Lp0Rt7Yv2Nm5Bk9Hc4Jd6Fg1TsUe";
  const std::string out = Redact("secret " + token + " here");
  EXPECT_THAT(out, Not(HasSubstr(token)));
  EXPECT_THAT(out, HasSubstr("[REDACTED:api_key]"));
  EXPECT_THAT(out, HasSubstr("secret "));
  EXPECT_THAT(out, HasSubstr(" here"));
  EXPECT_THAT(ByDetector(counts_), UnorderedElementsAre(Pair("api_key", 1)));
}

TEST_F(RedactionTest, LongOrdinaryWordsAndIdentifiersAreLeftAlone) {
  const std::string text =
      "pneumonoultramicroscopicsilicovolcanoconiosis is a word; "
      "customer_account_settings_page_controller and "
      "internationalization-localization-guidelines are identifiers.";
  EXPECT_EQ(Redact(text), text);
  EXPECT_EQ(counts_.total(), 0);
}

TEST_F(RedactionTest, Ipv4AddressIsReplaced) {
  const std::string out = Redact("Server 192.168.1.20 refused.");
  EXPECT_THAT(out, Not(HasSubstr("192.168")));
  EXPECT_THAT(out, HasSubstr("[REDACTED:ip_address]"));
  EXPECT_THAT(out, HasSubstr("Server "));
  EXPECT_THAT(out, HasSubstr(" refused."));
  EXPECT_THAT(ByDetector(counts_), UnorderedElementsAre(Pair("ip_address", 1)));
}

TEST_F(RedactionTest, Ipv6AddressesFullAndCompressedAreReplaced) {
  for (const std::string ip : {"2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                               "fe80::1ff:fe23:4567:890a", "2001:db8::8a2e:370:7334"}) {
    const std::string out = Redact("from " + ip + " yesterday");
    EXPECT_THAT(out, Not(HasSubstr(ip))) << ip;
    EXPECT_THAT(out, HasSubstr("[REDACTED:ip_address]")) << ip;
    EXPECT_THAT(out, HasSubstr("from ")) << ip;
    EXPECT_THAT(out, HasSubstr(" yesterday")) << ip;
    EXPECT_THAT(ByDetector(counts_), UnorderedElementsAre(Pair("ip_address", 1))) << ip;
  }
}

TEST_F(RedactionTest, CountsArePerDetectorAndTotal) {
  const std::string out =
      Redact("Mail a@example.io or b@example.org, call 415-555-2671, host 10.0.0.7.");
  EXPECT_THAT(out, Not(HasSubstr("@")));
  EXPECT_THAT(ByDetector(counts_),
              UnorderedElementsAre(Pair("email", 2), Pair("phone", 1), Pair("ip_address", 1)));
  EXPECT_EQ(counts_.total(), 4);
}

TEST_F(RedactionTest, CountsAccumulateAcrossCalls) {
  v1::RedactionCounts counts;
  std::string first = "a@example.io";
  std::string second = "b@example.io and 415-555-2671";
  redactor_->Redact(&first, &counts);
  redactor_->Redact(&second, &counts);
  EXPECT_THAT(ByDetector(counts), UnorderedElementsAre(Pair("email", 2), Pair("phone", 1)));
  EXPECT_EQ(counts.total(), 3);
}

TEST_F(RedactionTest, EmptyConfigEnablesEveryBuiltinDetector) {
  auto redactor = Make(v1::RedactionConfig());
  ASSERT_NE(redactor, nullptr);
  const std::string out = Redact(
      "x@example.io 415-555-2671 4111111111111111 AKIAIOSFODNN7EXAMPLE 10.1.2.3", redactor.get());
  EXPECT_THAT(ByDetector(counts_),
              UnorderedElementsAre(Pair("email", 1), Pair("phone", 1), Pair("card_number", 1),
                                   Pair("api_key", 1), Pair("ip_address", 1)));
  EXPECT_EQ(counts_.total(), 5);
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

TEST_F(RedactionTest, DisabledEmailDetectorLeavesEmailsButOthersStillApply) {
  auto redactor = Make(ConfigWith(v1::BUILTIN_DETECTOR_EMAIL));
  ASSERT_NE(redactor, nullptr);
  const std::string out = Redact("Mail jane@example.com or call 415-555-2671", redactor.get());
  EXPECT_THAT(out, HasSubstr("jane@example.com"));
  EXPECT_THAT(out, Not(HasSubstr("555-2671")));
  EXPECT_THAT(ByDetector(counts_), UnorderedElementsAre(Pair("phone", 1)));
  EXPECT_EQ(counts_.total(), 1);
}

TEST_F(RedactionTest, EachDisabledBuiltinLeavesItsKindAlone) {
  const std::map<v1::BuiltinDetector, std::string> samples = {
      {v1::BUILTIN_DETECTOR_EMAIL, "jane@example.com"},
      {v1::BUILTIN_DETECTOR_PHONE, "415-555-2671"},
      {v1::BUILTIN_DETECTOR_CARD_NUMBER, "4111111111111111"},
      {v1::BUILTIN_DETECTOR_API_KEY, "AKIAIOSFODNN7EXAMPLE"},
      {v1::BUILTIN_DETECTOR_IP_ADDRESS, "10.20.30.40"},
  };
  for (const auto& [detector, sample] : samples) {
    auto redactor = Make(ConfigWith(detector));
    ASSERT_NE(redactor, nullptr);
    const std::string text = "value " + sample + " end";
    EXPECT_EQ(Redact(text, redactor.get()), text) << sample;
    EXPECT_EQ(counts_.total(), 0) << sample;
    // The default redactor does replace it.
    EXPECT_NE(Redact(text), text) << sample;
  }
}

TEST_F(RedactionTest, CustomPatternIsReportedAsCustomName) {
  auto redactor = Make(WithCustom("ticket", R"((?i)\bACME-\d{6}\b)"));
  ASSERT_NE(redactor, nullptr);
  const std::string out = Redact("See acme-123456 and ACME-654321, not ACME-12.", redactor.get());
  EXPECT_THAT(out, Not(HasSubstr("123456")));
  EXPECT_THAT(out, Not(HasSubstr("654321")));
  EXPECT_THAT(out, HasSubstr("[REDACTED:custom:ticket]"));
  EXPECT_THAT(out, HasSubstr("See "));
  EXPECT_THAT(out, HasSubstr("ACME-12."));
  EXPECT_THAT(ByDetector(counts_), UnorderedElementsAre(Pair("custom:ticket", 2)));
  EXPECT_EQ(counts_.total(), 2);
}

TEST_F(RedactionTest, CustomPatternAppliesAlongsideBuiltins) {
  auto redactor = Make(WithCustom("employee_id", R"(\bEMP\d{5}\b)"));
  ASSERT_NE(redactor, nullptr);
  const std::string out = Redact("EMP12345 wrote from jane@example.com", redactor.get());
  EXPECT_THAT(out, Not(HasSubstr("EMP12345")));
  EXPECT_THAT(out, Not(HasSubstr("jane@")));
  EXPECT_THAT(ByDetector(counts_),
              UnorderedElementsAre(Pair("custom:employee_id", 1), Pair("email", 1)));
  EXPECT_EQ(counts_.total(), 2);
}

TEST_F(RedactionTest, EachDetectorAloneInLongTextIsFoundByTheOnePassCheckAndReplaced) {
  // Long plain text (no detector matches: the one-pass check skips the per-detector searches)
  // with one kind of personal data at the end: that detector, and only it, still replaces it.
  auto redactor = Make(WithCustom("ticket", R"(\bACME-\d{6}\b)"));
  ASSERT_NE(redactor, nullptr);
  std::string filler;
  for (int i = 0; i < 40; ++i) filler += "plain words about the weather and a report, ";
  EXPECT_EQ(Redact(filler, redactor.get()), filler);
  EXPECT_EQ(counts_.total(), 0);
  const std::pair<std::string, std::string> cases[] = {
      {"jane@example.com", "email"},          {"+14155550123", "phone"},
      {"4111 1111 1111 1111", "card_number"}, {"sk_live_4eC39HqLyjWDarjtT1zdp7dc", "api_key"},
      {"192.168.10.20", "ip_address"},        {"ACME-123456", "custom:ticket"}};
  for (const auto& [secret, detector] : cases) {
    const std::string out = Redact(filler + secret + " end", redactor.get());
    EXPECT_EQ(out, filler + "[REDACTED:" + detector + "] end") << detector;
    EXPECT_THAT(ByDetector(counts_), UnorderedElementsAre(Pair(detector, 1))) << detector;
  }
}

TEST_F(RedactionTest, LaterDetectorsSeeTheTextEarlierOnesReplaced) {
  // Detectors run in order on the text as replaced so far; a custom pattern matching only the
  // replacement marker of a built-in still applies after it.
  auto redactor = Make(WithCustom("marker", R"(REDACTED:email)"));
  ASSERT_NE(redactor, nullptr);
  EXPECT_EQ(Redact("REDACTED:phone stays", redactor.get()), "REDACTED:phone stays");
  EXPECT_EQ(Redact("mail jane@example.com", redactor.get()), "mail [[REDACTED:custom:marker]]");
  EXPECT_THAT(ByDetector(counts_),
              UnorderedElementsAre(Pair("email", 1), Pair("custom:marker", 1)));
}

TEST_F(RedactionTest, DisabledCustomPatternIsNotApplied) {
  auto redactor = Make(WithCustom("ticket", R"(\bACME-\d{6}\b)", /*enabled=*/false));
  ASSERT_NE(redactor, nullptr);
  const std::string text = "See ACME-123456.";
  EXPECT_EQ(Redact(text, redactor.get()), text);
  EXPECT_EQ(counts_.total(), 0);
}

TEST_F(RedactionTest, CustomPatternThatDoesNotCompileIsInvalidArgument) {
  EXPECT_THAT(Redactor::Create(WithCustom("broken", "(unclosed")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  v1::RedactionConfig config = WithCustom("good", R"(\bOK\d+\b)");
  auto* bad = config.add_custom_patterns();
  bad->set_name("bad");
  bad->set_pattern("[a-");
  bad->set_enabled(true);
  EXPECT_THAT(Redactor::Create(config), StatusIs(absl::StatusCode::kInvalidArgument));
}

// ---------------------------------------------------------------------------------------------
// Traces and signals
// ---------------------------------------------------------------------------------------------

TEST_F(RedactionTest, RedactTraceCoversPromptOutputAndNestedMetadataStrings) {
  v1::Trace trace;
  trace.set_trace_id("trace-1");
  trace.set_user_id("user-7");
  trace.set_model("gpt-4o");
  trace.mutable_input()->set_prompt("Write to jane@example.com about the refund");
  trace.set_output("Sure. I will call +1 415 555 2671 first.");
  auto& fields = *trace.mutable_metadata()->mutable_fields();
  fields["contact"].set_string_value("owner bob@example.org");
  fields["owner@example.org"].set_string_value("key kept");
  fields["count"].set_number_value(4111111111111111.0);
  auto& nested = *fields["nested"].mutable_struct_value()->mutable_fields();
  nested["client_ip"].set_string_value("10.0.0.7");
  auto* list = nested["list"].mutable_list_value();
  list->add_values()->set_string_value("card 4111 1111 1111 1111");
  list->add_values()->set_bool_value(true);
  list->add_values()->mutable_struct_value()->mutable_fields()->operator[]("deep").set_string_value(
      "AKIAIOSFODNN7EXAMPLE");

  redactor_->RedactTrace(&trace);

  EXPECT_THAT(trace.input().prompt(), Not(HasSubstr("jane@")));
  EXPECT_THAT(trace.input().prompt(), HasSubstr("[REDACTED:email]"));
  EXPECT_THAT(trace.input().prompt(), HasSubstr("about the refund"));
  EXPECT_THAT(trace.output(), Not(HasSubstr("2671")));
  EXPECT_THAT(trace.output(), HasSubstr("[REDACTED:phone]"));
  EXPECT_THAT(trace.output(), HasSubstr("Sure. I will call "));

  const auto& out = trace.metadata().fields();
  EXPECT_THAT(out.at("contact").string_value(), Not(HasSubstr("bob@")));
  EXPECT_THAT(out.at("contact").string_value(), HasSubstr("owner "));
  ASSERT_EQ(out.count("owner@example.org"), 1u);  // keys are not redacted
  EXPECT_EQ(out.at("owner@example.org").string_value(), "key kept");
  EXPECT_EQ(out.at("count").number_value(), 4111111111111111.0);
  const auto& nested_out = out.at("nested").struct_value().fields();
  EXPECT_THAT(nested_out.at("client_ip").string_value(), HasSubstr("[REDACTED:ip_address]"));
  EXPECT_THAT(nested_out.at("client_ip").string_value(), Not(HasSubstr("10.0.0.7")));
  const auto& list_out = nested_out.at("list").list_value();
  ASSERT_EQ(list_out.values_size(), 3);
  EXPECT_THAT(list_out.values(0).string_value(), Not(HasSubstr("1111")));
  EXPECT_THAT(list_out.values(0).string_value(), HasSubstr("[REDACTED:card_number]"));
  EXPECT_TRUE(list_out.values(1).bool_value());
  EXPECT_THAT(list_out.values(2).struct_value().fields().at("deep").string_value(),
              HasSubstr("[REDACTED:api_key]"));

  EXPECT_EQ(trace.trace_id(), "trace-1");
  EXPECT_EQ(trace.user_id(), "user-7");
  EXPECT_THAT(ByDetector(trace.redactions()),
              UnorderedElementsAre(Pair("email", 2), Pair("phone", 1), Pair("ip_address", 1),
                                   Pair("card_number", 1), Pair("api_key", 1)));
  EXPECT_EQ(trace.redactions().total(), 6);
}

TEST_F(RedactionTest, RedactTraceCoversEveryMessageContent) {
  v1::Trace trace;
  auto* messages = trace.mutable_input()->mutable_messages();
  auto* system = messages->add_messages();
  system->set_role("system");
  system->set_content("Support agent for acme. Escalate to ops@acme.example.");
  auto* user = messages->add_messages();
  user->set_role("user");
  user->set_name("jane");
  user->set_content("My card 4111-1111-1111-1111 was charged twice.");

  redactor_->RedactTrace(&trace);

  const auto& out = trace.input().messages().messages();
  ASSERT_EQ(out.size(), 2);
  EXPECT_THAT(out[0].content(), Not(HasSubstr("ops@")));
  EXPECT_THAT(out[0].content(), HasSubstr("Support agent for acme. Escalate to "));
  EXPECT_THAT(out[1].content(), Not(HasSubstr("4111")));
  EXPECT_THAT(out[1].content(), HasSubstr(" was charged twice."));
  EXPECT_EQ(out[0].role(), "system");
  EXPECT_EQ(out[1].role(), "user");
  EXPECT_EQ(out[1].name(), "jane");
  EXPECT_THAT(ByDetector(trace.redactions()),
              UnorderedElementsAre(Pair("email", 1), Pair("card_number", 1)));
  EXPECT_EQ(trace.redactions().total(), 2);
}

TEST_F(RedactionTest, RedactTraceWithoutMetadataDoesNotAddMetadata) {
  v1::Trace trace;
  trace.mutable_input()->set_prompt("hello");
  trace.set_output("hi");
  redactor_->RedactTrace(&trace);
  EXPECT_FALSE(trace.has_metadata());
  EXPECT_EQ(trace.input().prompt(), "hello");
  EXPECT_EQ(trace.output(), "hi");
  EXPECT_EQ(trace.redactions().total(), 0);
}

TEST_F(RedactionTest, RedactSignalCoversComment) {
  v1::Signal signal;
  signal.set_event_id("event-1");
  signal.set_user_id("user-1");
  signal.mutable_explicit_feedback()->set_thumb(v1::THUMB_DOWN);
  signal.mutable_explicit_feedback()->set_comment("Wrong. Reach me at jane@example.com instead.");
  redactor_->RedactSignal(&signal);
  const std::string& comment = signal.explicit_feedback().comment();
  EXPECT_THAT(comment, Not(HasSubstr("jane@")));
  EXPECT_THAT(comment, HasSubstr("[REDACTED:email]"));
  EXPECT_THAT(comment, HasSubstr("Wrong. Reach me at "));
  EXPECT_THAT(comment, HasSubstr(" instead."));
  EXPECT_EQ(signal.explicit_feedback().thumb(), v1::THUMB_DOWN);
  EXPECT_EQ(signal.user_id(), "user-1");
  EXPECT_THAT(ByDetector(signal.redactions()), UnorderedElementsAre(Pair("email", 1)));
  EXPECT_EQ(signal.redactions().total(), 1);
}

TEST_F(RedactionTest, RedactSignalCoversEditFinalText) {
  v1::Signal signal;
  signal.mutable_implicit_signal()->mutable_edit()->set_final_text(
      "Dear team, my IP is 172.16.0.4 and key sk-live9Qa8Zr1LmX0pT7wB2cYz.");
  redactor_->RedactSignal(&signal);
  const std::string& text = signal.implicit_signal().edit().final_text();
  EXPECT_THAT(text, Not(HasSubstr("172.16")));
  EXPECT_THAT(text, Not(HasSubstr("sk-live")));
  EXPECT_THAT(text, HasSubstr("Dear team, my IP is "));
  EXPECT_THAT(ByDetector(signal.redactions()),
              UnorderedElementsAre(Pair("ip_address", 1), Pair("api_key", 1)));
  EXPECT_EQ(signal.redactions().total(), 2);
}

TEST_F(RedactionTest, RedactSignalLeavesClientEditRatioAlone) {
  v1::Signal signal;
  signal.mutable_implicit_signal()->mutable_edit()->set_edit_ratio(0.25);
  redactor_->RedactSignal(&signal);
  EXPECT_EQ(signal.implicit_signal().edit().edit_case(), v1::EditSignal::kEditRatio);
  EXPECT_EQ(signal.implicit_signal().edit().edit_ratio(), 0.25);
  EXPECT_EQ(signal.redactions().total(), 0);
}

TEST_F(RedactionTest, RedactSignalCoversRephraseText) {
  v1::Signal signal;
  signal.mutable_implicit_signal()->mutable_rephrase()->set_new_input_text(
      "Try again: my number is (415) 555-2671");
  signal.mutable_implicit_signal()->mutable_rephrase()->set_new_trace_id("trace-2");
  redactor_->RedactSignal(&signal);
  const auto& rephrase = signal.implicit_signal().rephrase();
  EXPECT_THAT(rephrase.new_input_text(), Not(HasSubstr("555")));
  EXPECT_THAT(rephrase.new_input_text(), HasSubstr("Try again: my number is "));
  EXPECT_THAT(rephrase.new_input_text(), HasSubstr("[REDACTED:phone]"));
  EXPECT_EQ(rephrase.new_trace_id(), "trace-2");
  EXPECT_THAT(ByDetector(signal.redactions()), UnorderedElementsAre(Pair("phone", 1)));
}

TEST_F(RedactionTest, RedactSignalCoversNestedCustomValueStrings) {
  v1::Signal signal;
  signal.mutable_custom()->set_name("handoff");
  auto& fields = *signal.mutable_custom()->mutable_value()->mutable_fields();
  fields["agent"].set_string_value("agent carol@example.net");
  fields["amount"].set_number_value(12);
  auto* list = fields["history"].mutable_list_value();
  list->add_values()->set_string_value("from 192.168.7.1");
  (*list->add_values()->mutable_struct_value()->mutable_fields())["note"].set_string_value(
      "callback 415-555-2671");

  redactor_->RedactSignal(&signal);

  const auto& out = signal.custom().value().fields();
  EXPECT_THAT(out.at("agent").string_value(), Not(HasSubstr("carol@")));
  EXPECT_THAT(out.at("agent").string_value(), HasSubstr("agent "));
  EXPECT_EQ(out.at("amount").number_value(), 12);
  const auto& history = out.at("history").list_value();
  ASSERT_EQ(history.values_size(), 2);
  EXPECT_THAT(history.values(0).string_value(), HasSubstr("[REDACTED:ip_address]"));
  EXPECT_THAT(history.values(1).struct_value().fields().at("note").string_value(),
              HasSubstr("[REDACTED:phone]"));
  EXPECT_EQ(signal.custom().name(), "handoff");
  EXPECT_THAT(ByDetector(signal.redactions()),
              UnorderedElementsAre(Pair("email", 1), Pair("ip_address", 1), Pair("phone", 1)));
  EXPECT_EQ(signal.redactions().total(), 3);
}

TEST_F(RedactionTest, RedactSignalWithoutCustomValueDoesNotAddOne) {
  v1::Signal signal;
  signal.mutable_custom()->set_name("handoff");
  redactor_->RedactSignal(&signal);
  EXPECT_FALSE(signal.custom().has_value());
  EXPECT_EQ(signal.redactions().total(), 0);
}

// ---------------------------------------------------------------------------------------------
// MatchesEntirely (user ids)
// ---------------------------------------------------------------------------------------------

TEST_F(RedactionTest, MatchesEntirelyFlagsAnEmailUserId) {
  EXPECT_TRUE(redactor_->MatchesEntirely("jane.doe@example.com"));
}

TEST_F(RedactionTest, MatchesEntirelyFlagsOtherBuiltinKindsInFull) {
  EXPECT_TRUE(redactor_->MatchesEntirely("+1 415 555 2671"));
  EXPECT_TRUE(redactor_->MatchesEntirely("+14155552671"));
  EXPECT_TRUE(redactor_->MatchesEntirely("192.168.0.1"));
  EXPECT_TRUE(redactor_->MatchesEntirely("4111111111111111"));
}

TEST_F(RedactionTest, MatchesEntirelyAcceptsPseudonymousAndPartialIds) {
  EXPECT_FALSE(redactor_->MatchesEntirely("user-8f3a2c"));
  EXPECT_FALSE(redactor_->MatchesEntirely("u_12345"));
  EXPECT_FALSE(redactor_->MatchesEntirely("id jane@example.com"));
  EXPECT_FALSE(redactor_->MatchesEntirely("4111111111111112"));
}

TEST_F(RedactionTest, MatchesEntirelyIgnoresDisabledAndCustomDetectors) {
  auto no_email = Make(ConfigWith(v1::BUILTIN_DETECTOR_EMAIL));
  ASSERT_NE(no_email, nullptr);
  EXPECT_FALSE(no_email->MatchesEntirely("jane.doe@example.com"));
  auto custom = Make(WithCustom("user", R"(user-\d+)"));
  ASSERT_NE(custom, nullptr);
  EXPECT_FALSE(custom->MatchesEntirely("user-123"));
}

}  // namespace
}  // namespace flywheel::capture
