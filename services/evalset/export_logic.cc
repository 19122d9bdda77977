// ExportEvalSet: a snapshot as a JSON Lines file, streamed in chunks of whole lines.
#include <openssl/sha.h>

#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/evalset/evalset_logic.h"
#include "services/evalset/export_formats.h"
#include "services/evalset/ids.h"
#include "services/evalset/logic_util.h"
#include "services/evalset/snapshot_pager.h"

namespace flywheel::evalset {
namespace {

using flywheel::capture::v1::PreferencePair;

constexpr int kDefaultChunkBytes = 1 << 20;
constexpr int kMinChunkBytes = 64 << 10;
constexpr int kMaxChunkBytes = 3 << 20;

class ExportSourceImpl : public MessageSource<v1::ExportEvalSetResponse> {
 public:
  ExportSourceImpl(EvalSetRepository* repository, std::string project, ExportSource source,
                   v1::ExportFormat format, SnapshotQuery query, v1::ExportEvalSetResponse header,
                   size_t chunk_bytes, int fetch_rows, int read_ahead, std::string first_line,
                   std::vector<PreferencePair> pairs)
      : source_(std::move(source)),
        format_(format),
        pager_(repository, std::move(project), source_.eval_set_id, std::move(query), fetch_rows,
               read_ahead),
        header_(std::move(header)),
        chunk_bytes_(chunk_bytes),
        pairs_(std::move(pairs)) {
    SHA256_Init(&sha_);
    for (const PreferencePair& pair : pairs_) {
      pairs_by_trace_[pair.rejected_trace_id()].push_back(&pair);
      if (pair.chosen_trace_id() != pair.rejected_trace_id()) {
        pairs_by_trace_[pair.chosen_trace_id()].push_back(&pair);
      }
    }
    if (!first_line.empty()) {
      AddLine(std::move(first_line));
      ++records_;
    }
  }

  absl::StatusOr<bool> Next(std::vector<v1::ExportEvalSetResponse>* out) override {
    if (!header_sent_) {
      header_sent_ = true;
      out->push_back(header_);
      return true;
    }
    ASSIGN_OR_RETURN(std::vector<v1::Case> cases, pager_.NextPage());
    std::string lines;
    for (const v1::Case& c : cases) {
      lines.clear();
      int written = 0;
      switch (format_) {
        case v1::EXPORT_FORMAT_FLYWHEEL_JSONL: {
          ASSIGN_OR_RETURN(written, AppendFlywheelRecord(c, &lines));
          break;
        }
        case v1::EXPORT_FORMAT_OPENAI_EVALS:
          written = AppendOpenAiEvalsRecord(source_, c, &lines);
          break;
        case v1::EXPORT_FORMAT_PROMPTFOO:
          written = AppendPromptfooRecord(source_, c, &lines);
          break;
        default: {
          static const std::vector<const PreferencePair*> kNone;
          auto it = c.source_trace_id().empty() ? pairs_by_trace_.end()
                                                : pairs_by_trace_.find(c.source_trace_id());
          written = AppendDpoRecords(source_, c, it == pairs_by_trace_.end() ? kNone : it->second,
                                     &lines);
        }
      }
      if (written == 0) {
        ++skipped_;
        continue;
      }
      records_ += written;
      // One record per line; split so a chunk boundary never falls inside a line.
      size_t start = 0;
      while (start < lines.size()) {
        const size_t end = lines.find('\n', start);
        AddLine(lines.substr(start, end + 1 - start));
        start = end + 1;
      }
      while (ready_.size() > 0) {
        out->push_back(std::move(ready_.front()));
        ready_.erase(ready_.begin());
      }
    }
    if (!cases.empty()) return true;
    // Last message: the remaining bytes (possibly none) and the trailer.
    v1::ExportEvalSetResponse last;
    if (!chunk_.empty()) {
      Account(chunk_);
      last.set_data(std::move(chunk_));
      chunk_.clear();
    }
    unsigned char hash[SHA256_DIGEST_LENGTH];
    SHA256_Final(hash, &sha_);
    auto* trailer = last.mutable_trailer();
    trailer->set_record_count(records_);
    trailer->set_skipped_case_count(skipped_);
    trailer->set_byte_count(bytes_);
    trailer->set_data_sha256(
        absl::StrCat("sha256:", absl::BytesToHexString(absl::string_view(
                                    reinterpret_cast<const char*>(hash), sizeof(hash)))));
    out->push_back(std::move(last));
    return false;
  }

 private:
  void Account(const std::string& data) {
    SHA256_Update(&sha_, data.data(), data.size());
    bytes_ += static_cast<int64_t>(data.size());
  }

  void Flush() {
    if (chunk_.empty()) return;
    Account(chunk_);
    v1::ExportEvalSetResponse message;
    message.set_data(std::move(chunk_));
    chunk_.clear();
    ready_.push_back(std::move(message));
  }

  void AddLine(std::string line) {
    if (!chunk_.empty() && chunk_.size() + line.size() > chunk_bytes_) Flush();
    chunk_ += line;
    if (chunk_.size() >= chunk_bytes_) Flush();  // also sends an oversized line alone
  }

  const ExportSource source_;
  const v1::ExportFormat format_;
  SnapshotPager pager_;
  const v1::ExportEvalSetResponse header_;
  const size_t chunk_bytes_;
  const std::vector<PreferencePair> pairs_;
  std::map<std::string, std::vector<const PreferencePair*>> pairs_by_trace_;
  bool header_sent_ = false;
  std::string chunk_;
  std::vector<v1::ExportEvalSetResponse> ready_;
  SHA256_CTX sha_;
  int64_t records_ = 0;
  int64_t skipped_ = 0;
  int64_t bytes_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MessageSource<v1::ExportEvalSetResponse>>>
EvalSetLogic::ExportEvalSet(const std::string& project, const v1::ExportEvalSetRequest& request,
                            const std::string& authorization) {
  RETURN_IF_ERROR(ValidateId("eval_set_id", request.eval_set_id()));
  if (request.format() == v1::EXPORT_FORMAT_UNSPECIFIED ||
      !v1::ExportFormat_IsValid(request.format())) {
    return absl::InvalidArgumentError("format: required");
  }
  int chunk = request.max_chunk_bytes() == 0 ? kDefaultChunkBytes : request.max_chunk_bytes();
  if (chunk < kMinChunkBytes || chunk > kMaxChunkBytes) {
    return absl::InvalidArgumentError("max_chunk_bytes: must be in 64 KiB..3 MiB");
  }
  if (!request.after_case_id().empty()) {
    RETURN_IF_ERROR(ValidateId("after_case_id", request.after_case_id()));
  }
  ASSIGN_OR_RETURN(SnapshotQuery query, FilterToQuery(request.filter()));
  ASSIGN_OR_RETURN(Resolved resolved,
                   Resolve(project, request.eval_set_id(),
                           request.has_version() ? &request.version() : nullptr));
  std::vector<PreferencePair> pairs;
  if (request.format() == v1::EXPORT_FORMAT_DPO_PAIRS) {
    if (pairs_ == nullptr) {
      return absl::FailedPreconditionError(
          "DPO_PAIRS export needs the capture service: start evalset with --capture_address");
    }
    ASSIGN_OR_RETURN(pairs, pairs_->ListAllPairs(authorization));
  }
  query.version = resolved.version.version;
  query.after_case_id = request.after_case_id();
  ASSIGN_OR_RETURN(int64_t count, repository_->CountCasesAt(project, request.eval_set_id(), query));
  const absl::Time now = now_();
  v1::ExportEvalSetResponse header;
  auto* h = header.mutable_header();
  h->set_eval_set_id(request.eval_set_id());
  h->set_version(resolved.version.version);
  h->set_content_digest(resolved.version.content_digest);
  h->set_format(request.format());
  h->set_case_count(count);
  h->set_content_type("application/jsonl");
  h->set_file_name(
      ExportFileName(request.eval_set_id(), resolved.version.version, request.format()));
  *h->mutable_export_time() = ToProtoTime(now);
  ExportSource source{request.eval_set_id(), resolved.version.version,
                      resolved.version.content_digest};
  std::string first_line;
  if (request.format() == v1::EXPORT_FORMAT_FLYWHEEL_JSONL && request.after_case_id().empty()) {
    first_line = FlywheelHeaderLine(source, count, now);
  }
  return std::make_unique<ExportSourceImpl>(
      repository_, project, std::move(source), request.format(), std::move(query),
      std::move(header), static_cast<size_t>(chunk), options_.stream_fetch_rows,
      options_.stream_read_ahead, std::move(first_line), std::move(pairs));
}

}  // namespace flywheel::evalset
