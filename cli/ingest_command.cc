// `flywheel ingest`: sends traces and signals from a JSONL file to capture, batched.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/time/clock.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "flywheel/capture/v1/capture.grpc.pb.h"
#include "google/protobuf/util/json_util.h"

namespace flywheel::cli {
namespace {

namespace cv1 = ::flywheel::capture::v1;

struct Totals {
  int64_t lines = 0;
  int64_t accepted = 0;
  int64_t duplicate = 0;
  int64_t rejected = 0;
  int64_t unparsable = 0;
};

void Progress(const Totals& totals, int64_t bytes_read, int64_t bytes_total, absl::Time start) {
  const double seconds = std::max(1e-3, absl::ToDoubleSeconds(absl::Now() - start));
  if (bytes_total > 0) {
    const double fraction = std::min(1.0, static_cast<double>(bytes_read) / bytes_total);
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::fprintf(stderr, "\r[%s%s] %5.1f%% %lld items, %.0f items/s",
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
                 100 * fraction, static_cast<long long>(totals.lines), totals.lines / seconds);
  } else {
    std::fprintf(stderr, "\r%lld items, %.0f items/s", static_cast<long long>(totals.lines),
                 totals.lines / seconds);
  }
}

}  // namespace

int Ingest(int argc, char** argv) {
  const std::string name = "flywheel ingest";
  std::string address = "127.0.0.1:50051";
  std::string key_file;
  std::string file;
  int batch_size = 500;
  bool progress = isatty(STDERR_FILENO) != 0;
  FlagSet flags(name,
                "Sends traces and signals from a JSONL file to capture in batches (Ingest RPC). "
                "Each line is one flywheel.capture.v1.IngestItem in proto3 JSON: "
                "{\"trace\": {\"traceId\": \"t1\", \"sessionId\": \"s1\", \"userId\": \"u1\", "
                "\"input\": {\"prompt\": \"...\"}, \"output\": \"...\"}} or {\"signal\": "
                "{\"eventId\": \"e1\", \"traceId\": \"t1\", \"explicitFeedback\": {\"thumb\": "
                "\"THUMB_DOWN\"}}}. Blank lines and lines starting with # are skipped. Items are "
                "idempotent on their ids, so re-running a file is safe. Rejected items are "
                "reported with their line number. Exit 0 when every item was accepted or a "
                "duplicate, 1 when any was rejected or a call failed, 2 on bad flags.");
  flags.String("address", &address, "capture service host:port");
  flags.String("key_file", &key_file, "file with a secret key (ingest scope) (required)");
  flags.String("file", &file, "JSONL file, or - for standard input (required)");
  flags.Int("batch_size", &batch_size, "items per Ingest call, 1..1000");
  flags.Bool("progress", &progress, "show a progress bar on stderr (default: when a terminal)");
  if (auto exit = ParseOrExit(flags, argc, argv)) return *exit;
  if (auto exit = Require(name, "key_file", key_file)) return *exit;
  if (auto exit = Require(name, "file", file)) return *exit;
  if (batch_size < 1 || batch_size > 1000) {
    return Fail(name, absl::InvalidArgumentError("--batch_size: must be in 1..1000"));
  }
  absl::StatusOr<std::string> key = ReadKeyFile("key_file", key_file);
  if (!key.ok()) return Fail(name, key.status());

  std::ifstream in_file;
  std::istream* in = &std::cin;
  int64_t bytes_total = 0;
  if (file != "-") {
    in_file.open(file, std::ios::binary | std::ios::ate);
    if (!in_file) return Fail(name, absl::InvalidArgumentError("--file: cannot open " + file));
    bytes_total = static_cast<int64_t>(in_file.tellg());
    in_file.seekg(0);
    in = &in_file;
  }

  auto stub = cv1::CaptureService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  Totals totals;
  int64_t bytes_read = 0;
  const absl::Time start = absl::Now();
  cv1::IngestRequest request;
  std::vector<int64_t> line_of_item;

  // Sends the pending batch; retries UNAVAILABLE (items are idempotent on their ids).
  auto flush = [&]() -> bool {
    if (request.items_size() == 0) return true;
    cv1::IngestResponse response;
    grpc::Status status;
    for (int attempt = 0; attempt < 6; ++attempt) {
      grpc::ClientContext context;
      PrepareCall(context, *key, absl::Seconds(60));
      status = stub->Ingest(&context, request, &response);
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE) break;
      absl::SleepFor(absl::Milliseconds(250) * (1 << attempt));
    }
    if (!status.ok()) {
      if (progress) std::fprintf(stderr, "\n");
      std::fprintf(stderr, "%s: Ingest failed at line %lld: %s (code %d)\n", name.c_str(),
                   static_cast<long long>(line_of_item.front()), status.error_message().c_str(),
                   static_cast<int>(status.error_code()));
      return false;
    }
    for (const cv1::IngestResult& result : response.results()) {
      if (result.result().outcome() != common::v1::ITEM_OUTCOME_REJECTED) continue;
      const size_t index = static_cast<size_t>(result.result().index());
      if (progress) std::fprintf(stderr, "\n");
      std::fprintf(stderr, "line %lld: rejected: %s%s%s\n",
                   static_cast<long long>(index < line_of_item.size() ? line_of_item[index] : -1),
                   result.result().field().c_str(), result.result().field().empty() ? "" : ": ",
                   result.result().reason().c_str());
    }
    totals.accepted += response.counts().accepted();
    totals.duplicate += response.counts().duplicate();
    totals.rejected += response.counts().rejected();
    request.clear_items();
    line_of_item.clear();
    if (progress) Progress(totals, bytes_read, bytes_total, start);
    return true;
  };

  std::string line;
  int64_t line_number = 0;
  google::protobuf::util::JsonParseOptions parse_options;
  parse_options.ignore_unknown_fields = false;
  while (std::getline(*in, line)) {
    ++line_number;
    bytes_read += static_cast<int64_t>(line.size()) + 1;
    const absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty() || trimmed[0] == '#') continue;
    cv1::IngestItem item;
    const auto parsed =
        google::protobuf::util::JsonStringToMessage(std::string(trimmed), &item, parse_options);
    if (!parsed.ok()) {
      ++totals.unparsable;
      if (progress) std::fprintf(stderr, "\n");
      std::fprintf(stderr, "line %lld: not an IngestItem: %s\n",
                   static_cast<long long>(line_number), std::string(parsed.message()).c_str());
      continue;
    }
    ++totals.lines;
    *request.add_items() = std::move(item);
    line_of_item.push_back(line_number);
    if (request.items_size() >= batch_size && !flush()) return 1;
  }
  if (!flush()) return 1;
  if (progress) std::fprintf(stderr, "\n");
  std::printf(
      "%lld items: %lld accepted, %lld duplicate, %lld rejected, %lld unparsable lines "
      "(%.1f s)\n",
      static_cast<long long>(totals.lines), static_cast<long long>(totals.accepted),
      static_cast<long long>(totals.duplicate), static_cast<long long>(totals.rejected),
      static_cast<long long>(totals.unparsable), absl::ToDoubleSeconds(absl::Now() - start));
  return totals.rejected == 0 && totals.unparsable == 0 ? 0 : 1;
}

}  // namespace flywheel::cli
