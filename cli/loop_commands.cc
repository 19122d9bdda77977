// `flywheel themes`, `flywheel review` and `flywheel evals`: the loop from a terminal.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "flywheel/annotation/v1/annotation.grpc.pb.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "flywheel/clustering/v1/clustering.grpc.pb.h"
#include "flywheel/evalset/v1/evalset.grpc.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace flywheel::cli {
namespace {

namespace clv1 = ::flywheel::clustering::v1;
namespace av1 = ::flywheel::annotation::v1;
namespace ev1 = ::flywheel::evalset::v1;

// Key and deadline on every call.
struct Caller {
  std::string key;
  void Prepare(grpc::ClientContext& context, absl::Duration timeout = absl::Seconds(30)) const {
    PrepareCall(context, key, timeout);
  }
};

int RpcFail(const std::string& command, const std::string& rpc, const grpc::Status& status) {
  std::fprintf(stderr, "%s: %s: %s (gRPC code %d)\n", command.c_str(), rpc.c_str(),
               status.error_message().c_str(), static_cast<int>(status.error_code()));
  return 1;
}

const char* TrendName(clv1::Trend trend) {
  switch (trend) {
    case clv1::TREND_NEW:
      return "new";
    case clv1::TREND_GROWING:
      return "growing";
    case clv1::TREND_SHRINKING:
      return "shrinking";
    case clv1::TREND_STABLE:
      return "stable";
    default:
      return "-";
  }
}

std::string Shorten(const std::string& text, size_t max) {
  std::string flat = text;
  for (char& c : flat) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  return flat.size() <= max ? flat : flat.substr(0, max - 3) + "...";
}

}  // namespace

int Themes(int argc, char** argv) {
  const std::string name = "flywheel themes";
  std::string address = "127.0.0.1:50052";
  std::string key_file;
  int days = 14;
  bool weekly = false;
  FlagSet flags(name,
                "Lists the latest clustering's failure themes with their size, distinct users, "
                "share of flagged traffic and trend. Themes below the project's privacy threshold "
                "are never listed; they are summed in one line.");
  flags.String("address", &address, "clustering service host:port");
  flags.String("key_file", &key_file, "file with a key with the read scope (required)");
  flags.Int("days", &days, "stats window in days, 1..365");
  flags.Bool("weekly", &weekly, "weekly buckets instead of daily ones");
  if (auto exit = ParseOrExit(flags, argc, argv)) return *exit;
  if (auto exit = Require(name, "key_file", key_file)) return *exit;
  if (days < 1 || days > 365) {
    return Fail(name, absl::InvalidArgumentError("--days: must be in 1..365"));
  }
  absl::StatusOr<std::string> key = ReadKeyFile("key_file", key_file);
  if (!key.ok()) return Fail(name, key.status());
  const Caller caller{*key};
  auto stub = clv1::ClusteringService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));

  std::vector<clv1::Cluster> themes;
  clv1::ListClustersResponse last_page;
  std::string token;
  do {
    clv1::ListClustersRequest request;
    request.set_level(clv1::CLUSTER_LEVEL_THEME);
    request.set_page_size(200);
    request.set_page_token(token);
    grpc::ClientContext context;
    caller.Prepare(context);
    grpc::Status status = stub->ListClusters(&context, request, &last_page);
    if (!status.ok()) return RpcFail(name, "ListClusters", status);
    for (const clv1::Cluster& cluster : last_page.clusters()) themes.push_back(cluster);
    token = last_page.next_page_token();
  } while (!token.empty());
  if (themes.empty() && last_page.clustering_version() == 0) {
    std::printf("No clustering yet: themes appear after the first re-clustering.\n");
    return 0;
  }
  clv1::GetClusterStatsRequest stats_request;
  for (const clv1::Cluster& theme : themes) stats_request.add_cluster_ids(theme.cluster_id());
  *stats_request.mutable_time_range()->mutable_start_time() =
      google::protobuf::util::TimeUtil::SecondsToTimestamp(
          absl::ToUnixSeconds(absl::Now() - absl::Hours(24) * days));
  stats_request.set_granularity(weekly ? clv1::STATS_GRANULARITY_WEEK
                                       : clv1::STATS_GRANULARITY_DAY);
  std::map<std::string, clv1::ClusterSeries> series;
  if (!themes.empty()) {
    clv1::GetClusterStatsResponse stats;
    grpc::ClientContext context;
    caller.Prepare(context);
    grpc::Status status = stub->GetClusterStats(&context, stats_request, &stats);
    if (!status.ok()) return RpcFail(name, "GetClusterStats", status);
    for (const clv1::ClusterSeries& s : stats.series()) series[s.cluster_id()] = s;
  }
  std::printf("clustering v%lld: %zu themes (listed: >= %d distinct users)\n\n",
              static_cast<long long>(last_page.clustering_version()), themes.size(),
              last_page.min_distinct_users());
  std::printf("%-14s %-44s %8s %7s %7s %-9s\n", "ID", "THEME", "TRACES", "USERS", "SHARE", "TREND");
  for (const clv1::Cluster& theme : themes) {
    std::string title = theme.name();
    if (title.empty()) {
      std::vector<std::string> words;
      for (const auto& keyword : theme.keywords()) words.push_back(keyword.term());
      title = absl::StrJoin(words, ", ");
    }
    auto it = series.find(theme.cluster_id());
    std::printf("%-14s %-44s %8lld %7lld %6.1f%% %-9s\n", Shorten(theme.cluster_id(), 14).c_str(),
                Shorten(title, 44).c_str(), static_cast<long long>(theme.member_count()),
                static_cast<long long>(theme.distinct_users()), 100 * theme.member_share(),
                it == series.end() ? "-" : TrendName(it->second.trend()));
  }
  if (last_page.has_small_themes()) {
    std::printf("\n%s\n", last_page.small_themes().ShortDebugString().c_str());
  }
  return 0;
}

int Review(int argc, char** argv) {
  const std::string name = "flywheel review";
  std::string address = "127.0.0.1:50053";
  std::string key_file;
  std::string queue_id;
  std::string reviewer;
  FlagSet flags(name,
                "Interactive reviewer: claims the next item of a queue, shows the trace, its "
                "signals and theme, asks each rubric field (numbers pick options), submits. At any "
                "prompt: 's' skips the item (others will see it, you will not), 'q' releases the "
                "item and quits. Waits up to 30 s for new items when the queue is empty.");
  flags.String("address", &address, "annotation service host:port");
  flags.String("key_file", &key_file, "file with a key with the review scope (required)");
  flags.String("queue", &queue_id, "queue id (required)");
  flags.String("reviewer", &reviewer, "your reviewer id (required)");
  if (auto exit = ParseOrExit(flags, argc, argv)) return *exit;
  if (auto exit = Require(name, "key_file", key_file)) return *exit;
  if (auto exit = Require(name, "queue", queue_id)) return *exit;
  if (auto exit = Require(name, "reviewer", reviewer)) return *exit;
  absl::StatusOr<std::string> key = ReadKeyFile("key_file", key_file);
  if (!key.ok()) return Fail(name, key.status());
  const Caller caller{*key};
  auto stub = av1::AnnotationService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));

  auto ask = [](const std::string& prompt) -> std::optional<std::string> {
    std::printf("%s", prompt.c_str());
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line)) return std::nullopt;
    return std::string(absl::StripAsciiWhitespace(line));
  };
  int submitted = 0;
  while (true) {
    av1::ClaimItemRequest claim;
    claim.set_queue_id(queue_id);
    claim.set_reviewer_id(reviewer);
    claim.mutable_wait_timeout()->set_seconds(30);
    av1::ClaimItemResponse claimed;
    {
      grpc::ClientContext context;
      caller.Prepare(context, absl::Seconds(40));
      grpc::Status status = stub->ClaimItem(&context, claim, &claimed);
      if (!status.ok()) return RpcFail(name, "ClaimItem", status);
    }
    if (!claimed.has_item()) {
      std::printf("Nothing to review right now (%s). Submitted %d.\n",
                  av1::EmptyReason_Name(claimed.empty_reason()).c_str(), submitted);
      return 0;
    }
    const av1::TraceSnapshot& trace = claimed.item().snapshot();
    std::printf("\n=== %s  (theme: %s, feature: %s, score: %.2f)\n", trace.trace_id().c_str(),
                trace.cluster_name().empty() ? "-" : trace.cluster_name().c_str(),
                trace.feature_area().c_str(), trace.label().quality_score());
    const std::string input = trace.input().has_messages()
                                  ? trace.input().messages().ShortDebugString()
                                  : trace.input().prompt();
    std::string signals;
    for (const av1::SignalBrief& signal : trace.signals().signals()) {
      absl::StrAppend(&signals, "  ", signal.kind(), signal.value().empty() ? "" : " ",
                      signal.value(), signal.comment().empty() ? "" : " \"", signal.comment(),
                      signal.comment().empty() ? "" : "\"", "\n");
    }
    std::printf(
        "--- input\n%s\n--- output\n%s\n--- signals (%d explicit, %d implicit, %d outcome)\n%s",
        input.c_str(), trace.output().c_str(), trace.signals().explicit_count(),
        trace.signals().implicit_count(), trace.signals().outcome_count(), signals.c_str());
    av1::SubmitAnnotationRequest submit;
    submit.set_queue_id(queue_id);
    submit.set_lease_id(claimed.lease().lease_id());
    submit.set_reviewer_id(reviewer);
    bool skip = false;
    bool quit = false;
    for (const av1::RubricField& field : claimed.rubric().fields()) {
      av1::FieldValue value;
      while (true) {
        std::string prompt = absl::StrCat(field.label().empty() ? field.key() : field.label(),
                                          field.required() ? " (required)" : " (Enter: none)");
        if (field.has_categorical()) {
          for (int i = 0; i < field.categorical().options_size(); ++i) {
            absl::StrAppend(&prompt, "\n  ", i + 1, ") ",
                            field.categorical().options(i).label().empty()
                                ? field.categorical().options(i).value()
                                : field.categorical().options(i).label());
          }
          absl::StrAppend(&prompt, field.categorical().multi_select() ? "\nnumbers, comma-separated"
                                                                      : "\nnumber");
        } else if (field.has_boolean()) {
          absl::StrAppend(&prompt, " [y/n]");
        } else if (field.has_numeric()) {
          absl::StrAppend(&prompt, " [", field.numeric().min(), "..", field.numeric().max(), "]");
        } else if (field.has_correction()) {
          absl::StrAppend(&prompt, " ('=' keeps the output as is)");
        }
        std::optional<std::string> answer = ask(prompt + "> ");
        if (!answer || *answer == "q") {
          quit = true;
          break;
        }
        if (*answer == "s") {
          skip = true;
          break;
        }
        if (answer->empty()) {
          if (!field.required()) break;
          std::printf("required\n");
          continue;
        }
        bool ok = true;
        if (field.has_categorical()) {
          for (absl::string_view part : absl::StrSplit(*answer, ',')) {
            int index = 0;
            if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &index) || index < 1 ||
                index > field.categorical().options_size()) {
              ok = false;
              break;
            }
            value.mutable_categorical()->add_values(field.categorical().options(index - 1).value());
          }
        } else if (field.has_boolean()) {
          ok = *answer == "y" || *answer == "n";
          value.set_boolean(*answer == "y");
        } else if (field.has_numeric()) {
          double number = 0;
          ok = absl::SimpleAtod(*answer, &number);
          value.set_numeric(number);
        } else if (field.has_correction()) {
          value.set_correction(*answer == "=" ? trace.output() : *answer);
        } else {
          value.set_free_text(*answer);
        }
        if (!ok) {
          std::printf("not understood\n");
          value.Clear();
          continue;
        }
        (*submit.mutable_values())[field.key()] = value;
        break;
      }
      if (skip || quit) break;
    }
    if (quit || skip) {
      grpc::ClientContext context;
      caller.Prepare(context);
      grpc::Status status;
      if (skip) {
        av1::SkipItemRequest request;
        request.set_queue_id(queue_id);
        request.set_lease_id(claimed.lease().lease_id());
        request.set_reviewer_id(reviewer);
        av1::SkipItemResponse response;
        status = stub->SkipItem(&context, request, &response);
      } else {
        av1::ReleaseItemRequest request;
        request.set_queue_id(queue_id);
        request.set_lease_id(claimed.lease().lease_id());
        request.set_reviewer_id(reviewer);
        av1::ReleaseItemResponse response;
        status = stub->ReleaseItem(&context, request, &response);
      }
      if (!status.ok()) return RpcFail(name, skip ? "SkipItem" : "ReleaseItem", status);
      if (quit) {
        std::printf("Released. Submitted %d.\n", submitted);
        return 0;
      }
      continue;
    }
    std::optional<std::string> promote = ask("Promote to the eval set? [y/N]> ");
    if (promote && *promote == "y") submit.set_promote(true);
    av1::SubmitAnnotationResponse response;
    grpc::ClientContext context;
    caller.Prepare(context);
    grpc::Status status = stub->SubmitAnnotation(&context, submit, &response);
    if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
        status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      // A rubric mismatch or a lost lease: say so and go on with the next item.
      std::printf("not submitted: %s\n", status.error_message().c_str());
      continue;
    }
    if (!status.ok()) return RpcFail(name, "SubmitAnnotation", status);
    ++submitted;
    std::printf("submitted (%d so far)\n", submitted);
  }
}

int Evals(int argc, char** argv) {
  const std::string name = "flywheel evals";
  std::string address = "127.0.0.1:50054";
  std::string key_file;
  std::string action = argc >= 2 && argv[1][0] != '-' ? argv[1] : "";
  std::string eval_set_id;
  std::string out;
  std::string baseline;
  std::string candidate;
  FlagSet flags(name,
                "flywheel evals list | export --eval_set ID [--out FILE] | compare --baseline RUN "
                "--candidate RUN.\n  list: eval sets with their latest version and case count.\n"
                "  export: the latest version's cases as JSONL (one flywheel.evalset.v1.Case per "
                "line; stdout by default).\n  compare: pass-rate delta per theme, regressions, "
                "fixes and release notes of two runs.");
  flags.String("address", &address, "eval-set service host:port");
  flags.String("key_file", &key_file, "file with a key with the eval scope (required)");
  flags.String("eval_set", &eval_set_id, "export: the eval set id");
  flags.String("out", &out, "export: output file (default: stdout)");
  flags.String("baseline", &baseline, "compare: baseline run id");
  flags.String("candidate", &candidate, "compare: candidate run id");
  const int skip = action.empty() ? 0 : 1;
  if (auto exit = ParseOrExit(flags, argc - skip, argv + skip)) return *exit;
  if (action != "list" && action != "export" && action != "compare") {
    std::fprintf(stderr, "%s: first argument must be list, export or compare (see --help)\n",
                 name.c_str());
    return 2;
  }
  if (auto exit = Require(name, "key_file", key_file)) return *exit;
  absl::StatusOr<std::string> key = ReadKeyFile("key_file", key_file);
  if (!key.ok()) return Fail(name, key.status());
  const Caller caller{*key};
  auto stub = ev1::EvalSetService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));

  if (action == "list") {
    std::string token;
    std::printf("%-36s %-30s %8s %7s\n", "EVAL SET", "NAME", "VERSION", "CASES");
    do {
      ev1::ListEvalSetsRequest request;
      request.set_page_size(100);
      request.set_page_token(token);
      ev1::ListEvalSetsResponse response;
      grpc::ClientContext context;
      caller.Prepare(context);
      grpc::Status status = stub->ListEvalSets(&context, request, &response);
      if (!status.ok()) return RpcFail(name, "ListEvalSets", status);
      for (const ev1::EvalSet& set : response.eval_sets()) {
        std::printf("%-36s %-30s %8lld %7lld\n", Shorten(set.eval_set_id(), 36).c_str(),
                    Shorten(set.display_name(), 30).c_str(),
                    static_cast<long long>(set.latest_version()),
                    static_cast<long long>(set.case_count()));
      }
      token = response.next_page_token();
    } while (!token.empty());
    return 0;
  }
  if (action == "export") {
    if (auto exit = Require(name, "eval_set", eval_set_id)) return *exit;
    std::ofstream file;
    if (!out.empty()) {
      file.open(out);
      if (!file) return Fail(name, absl::InvalidArgumentError("--out: cannot write " + out));
    }
    std::ostream& sink = out.empty() ? std::cout : file;
    std::string token;
    int64_t written = 0;
    int64_t version = 0;
    do {
      ev1::ListCasesRequest request;
      request.set_eval_set_id(eval_set_id);
      // Every page from the same snapshot: the latest version first, then that number.
      if (version == 0) {
        request.mutable_version()->set_latest(true);
      } else {
        request.mutable_version()->set_number(version);
      }
      request.set_page_size(500);
      request.set_page_token(token);
      ev1::ListCasesResponse response;
      grpc::ClientContext context;
      caller.Prepare(context);
      grpc::Status status = stub->ListCases(&context, request, &response);
      if (!status.ok()) return RpcFail(name, "ListCases", status);
      version = response.version();
      for (const ev1::Case& c : response.cases()) {
        std::string json;
        google::protobuf::util::JsonPrintOptions options;
        options.add_whitespace = false;
        (void)google::protobuf::util::MessageToJsonString(c, &json, options);
        sink << json << "\n";
        ++written;
      }
      token = response.next_page_token();
    } while (!token.empty());
    sink.flush();
    std::fprintf(stderr, "%lld cases of %s version %lld\n", static_cast<long long>(written),
                 eval_set_id.c_str(), static_cast<long long>(version));
    return sink ? 0 : 1;
  }
  if (auto exit = Require(name, "baseline", baseline)) return *exit;
  if (auto exit = Require(name, "candidate", candidate)) return *exit;
  ev1::CompareRunsRequest request;
  request.set_baseline_run_id(baseline);
  request.set_candidate_run_id(candidate);
  ev1::CompareRunsResponse response;
  grpc::ClientContext context;
  caller.Prepare(context);
  grpc::Status status = stub->CompareRuns(&context, request, &response);
  if (!status.ok()) return RpcFail(name, "CompareRuns", status);
  std::printf("%lld cases compared; pass rate %+.1f points; %lld fixes, %lld regressions\n\n",
              static_cast<long long>(response.compared_case_count()),
              response.pass_rate_delta_points(), static_cast<long long>(response.fix_count()),
              static_cast<long long>(response.regression_count()));
  std::printf("%-40s %10s %10s %8s\n", "THEME", "BASELINE", "CANDIDATE", "DELTA");
  for (const ev1::ThemeDelta& delta : response.theme_deltas()) {
    std::printf("%-40s %9.0f%% %9.0f%% %+7.1f\n", Shorten(delta.theme().name(), 40).c_str(),
                100 * delta.baseline_pass_rate(), 100 * delta.candidate_pass_rate(),
                delta.delta_points());
  }
  std::printf("\n%s\n", response.release_notes().c_str());
  return 0;
}

}  // namespace flywheel::cli

namespace flywheel::cli {

int Rules(int argc, char** argv) {
  namespace cv1 = ::flywheel::capture::v1;
  const std::string name = "flywheel rules";
  std::string action = argc >= 2 && argv[1][0] != '-' ? argv[1] : "";
  std::string address = "127.0.0.1:50051";
  std::string key_file;
  std::string file;
  int64_t version = 0;
  bool relabel = false;
  int relabel_days = 90;
  FlagSet flags(name,
                "flywheel rules get [--version N] | set --file rules.json [--relabel].\n  get: "
                "prints the project's label rule set (flywheel.capture.v1.LabelRuleSet as JSON; "
                "latest version unless --version).\n  set: replaces the whole rule set with the "
                "file's content as a new version (based on the current one: a concurrent change "
                "answers ABORTED), and with --relabel re-runs it over history in the background. "
                "Needs a key with the admin scope.");
  flags.String("address", &address, "capture service host:port");
  flags.String("key_file", &key_file, "file with a key with the admin scope (required)");
  flags.String("file", &file, "set: the rule set as JSON (e.g. edited output of get)");
  flags.Int64("version", &version, "get: a specific version (0: latest)");
  flags.Bool("relabel", &relabel, "set: relabel history with the new version");
  flags.Int("relabel_days", &relabel_days, "set --relabel: how many days of history, 1..365");
  const int skip = action.empty() ? 0 : 1;
  if (auto exit = ParseOrExit(flags, argc - skip, argv + skip)) return *exit;
  if (action != "get" && action != "set") {
    std::fprintf(stderr, "%s: first argument must be get or set (see --help)\n", name.c_str());
    return 2;
  }
  if (auto exit = Require(name, "key_file", key_file)) return *exit;
  absl::StatusOr<std::string> key = ReadKeyFile("key_file", key_file);
  if (!key.ok()) return Fail(name, key.status());
  const Caller caller{*key};
  auto stub = cv1::CaptureService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  cv1::GetLabelRuleSetRequest get;
  get.set_version(action == "get" ? version : 0);
  cv1::GetLabelRuleSetResponse current;
  {
    grpc::ClientContext context;
    caller.Prepare(context);
    grpc::Status status = stub->GetLabelRuleSet(&context, get, &current);
    if (!status.ok()) return RpcFail(name, "GetLabelRuleSet", status);
  }
  google::protobuf::util::JsonPrintOptions print;
  print.add_whitespace = true;
  if (action == "get") {
    std::string json;
    (void)google::protobuf::util::MessageToJsonString(current.rule_set(), &json, print);
    std::printf("%s", json.c_str());
    return 0;
  }
  if (auto exit = Require(name, "file", file)) return *exit;
  std::ifstream in(file);
  if (!in) return Fail(name, absl::InvalidArgumentError("--file: cannot read " + file));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  cv1::UpdateLabelRuleSetRequest update;
  const auto parsed = google::protobuf::util::JsonStringToMessage(text, update.mutable_rule_set());
  if (!parsed.ok()) {
    return Fail(name, absl::InvalidArgumentError("--file: not a LabelRuleSet: " +
                                                 std::string(parsed.message())));
  }
  update.mutable_update_mask()->add_paths("*");
  update.set_base_version(current.rule_set().version());
  cv1::UpdateLabelRuleSetResponse updated;
  {
    grpc::ClientContext context;
    caller.Prepare(context);
    grpc::Status status = stub->UpdateLabelRuleSet(&context, update, &updated);
    if (!status.ok()) return RpcFail(name, "UpdateLabelRuleSet", status);
  }
  std::printf("rule set version %lld (based on %lld)\n",
              static_cast<long long>(updated.rule_set().version()),
              static_cast<long long>(current.rule_set().version()));
  if (!relabel) return 0;
  cv1::RelabelRequest request;
  request.set_request_id(absl::StrCat("cli-relabel-", updated.rule_set().version()));
  request.set_rule_set_version(updated.rule_set().version());
  *request.mutable_time_range()->mutable_start_time() =
      google::protobuf::util::TimeUtil::SecondsToTimestamp(
          absl::ToUnixSeconds(absl::Now() - absl::Hours(24) * std::clamp(relabel_days, 1, 365)));
  *request.mutable_time_range()->mutable_end_time() =
      google::protobuf::util::TimeUtil::SecondsToTimestamp(absl::ToUnixSeconds(absl::Now()));
  cv1::RelabelResponse response;
  grpc::ClientContext context;
  caller.Prepare(context);
  grpc::Status status = stub->Relabel(&context, request, &response);
  if (!status.ok()) return RpcFail(name, "Relabel", status);
  std::printf("relabel job %s started over the last %d days (progress: GetRelabelJob)\n",
              response.job().job_id().c_str(), std::clamp(relabel_days, 1, 365));
  return 0;
}

}  // namespace flywheel::cli
