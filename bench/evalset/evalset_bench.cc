// bench/evalset: how fast a harness pulls a whole eval set at start-up.
//
// Loads N cases into one set (through the real logic and Postgres repository), serves the real
// gRPC handler on loopback, and times StreamCases of the whole snapshot against psql's
// `\copy (SELECT <the same rows and columns>) TO /dev/null` in the same run. Prints the figures
// and the ratio copy_seconds / stream_seconds (1.0 = as fast as raw COPY; goal >= 0.5).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/auth/pg_tenancy_store.h"
#include "common/auth/tenancy_admin.h"
#include "common/config/flags.h"
#include "common/server/executor.h"
#include "services/evalset/evalset_service.h"
#include "services/evalset/pg_evalset_repository.h"
#include "services/evalset/snapshot_pager.h"

namespace flywheel::evalset {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

v1::Case BenchCase(int i) {
  v1::Case c;
  c.set_case_id(absl::StrFormat("case-%07d", i));
  c.set_case_key(absl::StrFormat("annotation-%07d", i));
  c.mutable_input()->set_prompt(
      absl::StrCat("Customer ", i,
                   " asks: my invoice from last month shows a charge I do not recognise; "
                   "can you explain what it is for and whether I can get a refund? Order #",
                   i * 7919));
  (*c.mutable_context()->mutable_fields())["plan"].set_string_value(i % 3 ? "pro" : "free");
  c.set_expected_output(absl::StrCat("The charge is the annual renewal of plan ", i % 3,
                                     ". Refunds are possible within 30 days [1]."));
  v1::Assertion* a = c.add_assertions();
  a->set_type(v1::ASSERTION_TYPE_CONTAINS);
  a->set_value("[1]");
  c.mutable_theme()->set_theme_id(absl::StrCat("theme-", i % 20));
  c.mutable_theme()->set_name(absl::StrCat("failure theme ", i % 20));
  c.add_tags("billing");
  c.add_tags(i % 2 ? "prod" : "staging");
  c.set_source_trace_id(absl::StrFormat("trace-%07d", i));
  return c;
}

int Main(int argc, char** argv) {
  std::string database_url;
  int cases = 100000;
  int repeat = 3;
  std::string psql = "psql";
  bool reuse = false;
  LogicOptions options;
  FlagSet flags("evalset_bench", "StreamCases of a whole snapshot vs psql \\copy of its rows");
  flags.String("database_url", &database_url, "a migrated, disposable database (libpq conninfo)");
  flags.Int("cases", &cases, "cases in the set");
  flags.Int("repeat", &repeat, "timed repetitions of each side (the median is reported)");
  flags.String("psql", &psql, "psql binary for the \\copy baseline");
  flags.Bool("reuse", &reuse, "reuse the set loaded by an earlier run of the bench");
  flags.Int("page_rows", &options.stream_fetch_rows, "rows per page read by the stream");
  flags.Int("read_ahead", &options.stream_read_ahead, "pages read concurrently by the stream");
  if (absl::Status s = flags.Parse(argc, argv); !s.ok() || flags.help_requested()) {
    std::fprintf(stderr, "%s\n%s", std::string(s.message()).c_str(), flags.Usage().c_str());
    return flags.help_requested() ? 0 : 2;
  }
  if (database_url.empty()) {
    std::fprintf(stderr, "--database_url is required\n");
    return 2;
  }
  Logger logger("bench", Logger::Level::kWarning);
  db::ConnectionPool pool(db::PoolOptions{database_url, 8});
  auth::PgTenancyStore tenancy(&pool, &logger);
  auth::TenancyAdmin admin(&tenancy);
  const std::string project = "bench";
  if (!admin.CreateProject(project, "bench").ok() && !reuse) {
    std::fprintf(stderr, "use a fresh database (project 'bench' exists or Postgres is down)\n");
    return 1;
  }
  auto key = admin.CreateKey(project, auth::KeyKind::kSecret,
                             static_cast<auth::ScopeSet>(auth::Scope::kEval), "bench");
  if (!key.ok()) return 1;
  auth::Authenticator authenticator(&tenancy);
  PgEvalSetRepository repository(&pool, &logger);
  EvalSetLogic logic(&repository, nullptr, options);

  v1::CreateEvalSetRequest create;
  create.mutable_eval_set()->set_eval_set_id("bench-set");
  create.mutable_eval_set()->set_display_name("bench");
  if (!logic.CreateEvalSet(project, create).ok()) return 1;
  const auto load_start = Clock::now();
  int64_t version = 0;
  if (reuse) {
    v1::GetEvalSetRequest get;
    get.set_eval_set_id("bench-set");
    auto existing = logic.GetEvalSet(project, get);
    if (!existing.ok() || existing->eval_set().case_count() != cases) {
      std::fprintf(stderr, "--reuse: the database holds no set of %d cases\n", cases);
      return 1;
    }
    version = existing->eval_set().latest_version();
  }
  for (int start = 0; !reuse && start < cases; start += 500) {
    v1::AddCasesRequest add;
    add.set_eval_set_id("bench-set");
    for (int i = start; i < std::min(cases, start + 500); ++i) *add.add_cases() = BenchCase(i);
    auto added = logic.AddCases(project, add);
    if (!added.ok()) {
      std::fprintf(stderr, "AddCases: %s\n", added.status().ToString().c_str());
      return 1;
    }
    version = added->version();
  }
  std::printf("loaded %d cases in %.1f s through AddCases (500 per call, %lld versions)\n", cases,
              Seconds(load_start), static_cast<long long>(version));
  // Fresh statistics for both sides (autovacuum would get there on its own, later): without
  // them psql's ad-hoc plan for the baseline can be far off.
  const std::string analyze = absl::StrCat(psql, " -X -q -v ON_ERROR_STOP=1 '", database_url,
                                           "' -c 'ANALYZE evals.cases, evals.case_revisions'");
  if (std::system(analyze.c_str()) != 0) {
    std::fprintf(stderr, "ANALYZE failed\n");
    return 1;
  }

  BoundedExecutor executor(4, 256);
  EvalSetServiceHandler handler(&authenticator, &logic, &executor, &logger);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&handler);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  grpc::ChannelArguments channel_args;
  channel_args.SetMaxReceiveMessageSize(8 << 20);
  auto stub = v1::EvalSetService::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials(), channel_args));

  // `bytes` (when not null) sums the message sizes: done on the warm-up only, since computing
  // sizes on the client costs time the stream itself does not spend.
  auto stream = [&](int per_message, int64_t* bytes) -> double {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + key->plaintext);
    v1::StreamCasesRequest request;
    request.set_eval_set_id("bench-set");
    request.mutable_version()->set_number(version);
    request.set_max_cases_per_message(per_message);
    const auto start = Clock::now();
    auto reader = stub->StreamCases(&context, request);
    v1::StreamCasesResponse message;
    int64_t received = 0;
    while (reader->Read(&message)) {
      received += message.cases_size();
      if (bytes != nullptr) *bytes += static_cast<int64_t>(message.ByteSizeLong());
    }
    grpc::Status status = reader->Finish();
    const double seconds = Seconds(start);
    if (!status.ok() || received != cases) {
      std::fprintf(stderr, "stream failed: %s (%lld cases)\n", status.error_message().c_str(),
                   static_cast<long long>(received));
      std::exit(1);
    }
    return seconds;
  };
  // The same rows and columns the stream reads (see pg_evalset_repository.cc).
  const std::string copy_sql = absl::StrCat(
      "\\copy (SELECT r.case_id, coalesce(c.case_key, ''), r.content, r.content_digest, "
      "r.revision, c.added_version, r.from_version, c.retired_version, c.create_time, "
      "r.revision_time FROM evals.case_revisions r JOIN evals.cases c ON c.project_id = "
      "r.project_id AND c.eval_set_id = r.eval_set_id AND c.case_id = r.case_id WHERE "
      "r.project_id = 'bench' AND r.eval_set_id = 'bench-set' AND r.from_version <= ",
      version, " AND (r.to_version IS NULL OR r.to_version > ", version,
      ") ORDER BY r.case_id) TO /dev/null");
  const std::string command =
      absl::StrCat(psql, " -X -q -v ON_ERROR_STOP=1 '", database_url, "' -c \"", copy_sql, "\"");
  auto copy = [&]() -> double {
    const auto start = Clock::now();
    if (std::system(command.c_str()) != 0) {
      std::fprintf(stderr, "psql \\copy failed: %s\n", command.c_str());
      std::exit(1);
    }
    return Seconds(start);
  };

  // The repository's page reads alone (what the stream spends in Postgres and libpqxx).
  auto fetch_only = [&]() -> double {
    const auto start = Clock::now();
    SnapshotQuery query;
    query.version = version;
    SnapshotPager pager(&repository, project, "bench-set", query, options.stream_fetch_rows,
                        options.stream_read_ahead);
    int64_t read = 0;
    while (true) {
      auto page = pager.NextPage();
      if (!page.ok() || page->empty()) break;
      read += static_cast<int64_t>(page->size());
    }
    if (read != cases) std::exit(1);
    return Seconds(start);
  };

  int64_t bytes = 0;
  stream(1000, &bytes);  // warm-up: connections, prepared statements, page cache
  copy();
  // Interleaved, and the ratio taken per repetition, so load from other processes on the
  // machine hits both sides alike.
  std::vector<double> copy_times, fetch_times, stream100, stream1000, ratio100, ratio1000;
  for (int r = 0; r < repeat; ++r) {
    copy_times.push_back(copy());
    stream100.push_back(stream(100, nullptr));
    stream1000.push_back(stream(1000, nullptr));
    fetch_times.push_back(fetch_only());
    ratio100.push_back(copy_times.back() / stream100.back());
    ratio1000.push_back(copy_times.back() / stream1000.back());
  }
  const double c = Median(copy_times);
  std::printf("psql \\copy of the same rows to /dev/null: %.3f s (%.0f rows/s)\n", c, cases / c);
  std::printf("repository page reads alone (%d rows/page, %d ahead): %.3f s\n",
              options.stream_fetch_rows, options.stream_read_ahead, Median(fetch_times));
  for (auto& [label, times, ratios] :
       {std::tuple<const char*, std::vector<double>&, std::vector<double>&>{"100", stream100,
                                                                            ratio100},
        {"1000", stream1000, ratio1000}}) {
    const double s = Median(times);
    std::printf(
        "StreamCases, %4s cases/message: %.3f s (%.0f cases/s, %.1f MB of messages) "
        "ratio copy/stream = %.2f (median of per-repetition ratios)\n",
        label, s, cases / s, static_cast<double>(bytes) / 1e6, Median(ratios));
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}

}  // namespace
}  // namespace flywheel::evalset

int main(int argc, char** argv) { return flywheel::evalset::Main(argc, argv); }
