#include "services/clustering/feed_follower.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/clustering/util.h"

namespace flywheel::clustering {
namespace {

int SignalClassOf(capture::v1::SignalKind kind) {
  const int k = static_cast<int>(kind);
  if (k >= 1 && k <= 4) return kSignalExplicit;
  if (k == 20) return kSignalOutcome;
  if ((k >= 10 && k <= 15) || (k >= 30 && k <= 34)) return kSignalImplicit;
  return 0;
}

}  // namespace

TraceRecord TraceFromFeedEntry(const capture::v1::FlaggedFeedEntry& entry) {
  TraceRecord t;
  const capture::v1::TraceSummary& s = entry.trace();
  t.trace_id = entry.trace_id();
  t.flagged = true;
  t.feed_sequence = entry.sequence();
  t.flag_time = FromProtoTime(entry.flag_time());
  t.create_time = s.has_start_time() ? FromProtoTime(s.start_time()) : t.flag_time;
  t.session_id = s.session_id();
  t.user_id = s.user_id();
  if (!s.user_id().empty()) {
    t.user_key = s.user_id();
  } else if (!s.session_id().empty()) {
    t.user_key = absl::StrCat("s:", s.session_id());
  } else {
    t.user_key = absl::StrCat("t:", entry.trace_id());
  }
  t.feature_area = s.feature_area();
  t.model = s.model();
  t.model_version = s.model_version();
  t.prompt_version = s.prompt_version();
  for (const auto& reason : entry.reasons()) {
    if (reason.vote() == capture::v1::LABEL_VOTE_FAILURE) {
      t.signal_classes |= SignalClassOf(reason.signal_kind());
    }
  }
  t.input_text = s.input_text();
  t.output_head = s.output_head();
  t.comments.assign(s.comments().begin(), s.comments().end());
  return t;
}

FeedFollower::FeedFollower(ClusteringRepository* repository, FeedSource* source,
                           ThemeIndexCache* cache, std::string owner, FollowerOptions options)
    : repository_(repository),
      source_(source),
      cache_(cache),
      owner_(std::move(owner)),
      options_(options) {}

absl::StatusOr<double> FeedFollower::AssignmentThreshold(const std::string& project) {
  ASSIGN_OR_RETURN(std::optional<SettingsRecord> settings, repository_->GetSettings(project));
  if (settings.has_value() && settings->settings.assignment_similarity_threshold() > 0) {
    return settings->settings.assignment_similarity_threshold();
  }
  return options_.default_assignment_threshold;
}

absl::Status FeedFollower::Release(const std::string& project) {
  return repository_->ReleaseFeedLease(project, owner_);
}

absl::StatusOr<FeedFollower::SyncResult> FeedFollower::SyncProject(const std::string& project) {
  SyncResult result;
  ASSIGN_OR_RETURN(std::optional<int64_t> cursor,
                   repository_->ClaimFeedLease(project, owner_, options_.lease_ttl));
  if (!cursor.has_value()) return result;  // another replica follows this project
  result.leased = true;
  result.cursor = *cursor;
  ASSIGN_OR_RETURN(const double threshold, AssignmentThreshold(project));
  for (int page_no = 0; page_no < options_.max_pages_per_sync; ++page_no) {
    ASSIGN_OR_RETURN(FeedPage page, source_->Read(project, result.cursor, options_.batch_size));
    if (page.entries.empty()) {
      if (page.next_after_sequence > result.cursor) {
        // Entries were lost to retention: skip ahead (nothing to store).
        FeedBatch skip;
        skip.expected_cursor = result.cursor;
        skip.next_cursor = page.next_after_sequence;
        ASSIGN_OR_RETURN(std::optional<ClusteringRecord> latest,
                         repository_->LatestClustering(project));
        skip.version = latest ? latest->version : 0;
        skip.theme_generation = latest ? latest->theme_generation : 0;
        ASSIGN_OR_RETURN(CommitOutcome outcome,
                         repository_->CommitFeedBatch(project, owner_, skip));
        if (outcome == CommitOutcome::kCommitted) result.cursor = skip.next_cursor;
      }
      break;
    }
    // The last entry of each trace in the page decides its state.
    std::map<std::string, const capture::v1::FlaggedFeedEntry*> last;
    for (const auto& entry : page.entries) last[entry.trace_id()] = &entry;
    FeedBatch batch;
    batch.expected_cursor = result.cursor;
    batch.next_cursor = page.next_after_sequence;
    for (const auto& [trace_id, entry] : last) {
      if (entry->entry_type() == capture::v1::FLAGGED_FEED_ENTRY_TYPE_UNFLAGGED) {
        batch.unflagged.push_back(trace_id);
      } else if (entry->entry_type() == capture::v1::FLAGGED_FEED_ENTRY_TYPE_FLAGGED &&
                 entry->has_trace()) {
        batch.flagged.push_back(TraceFromFeedEntry(*entry));
      }  // FLAGGED without a summary: the trace was dropped by retention.
    }
    std::vector<std::string> texts;
    texts.reserve(batch.flagged.size());
    for (const TraceRecord& t : batch.flagged) texts.push_back(ThemeIndex::TextOf(t));
    CommitOutcome outcome = CommitOutcome::kStaleVersion;
    for (int attempt = 0; attempt < 4 && outcome == CommitOutcome::kStaleVersion; ++attempt) {
      ASSIGN_OR_RETURN(std::optional<ClusteringRecord> latest,
                       repository_->LatestClustering(project));
      batch.version = latest ? latest->version : 0;
      batch.theme_generation = latest ? latest->theme_generation : 0;
      batch.assignments.clear();
      if (latest.has_value()) {
        ASSIGN_OR_RETURN(std::shared_ptr<const ThemeIndex> index,
                         cache_->Get(project, latest->version, latest->theme_generation));
        for (size_t i = 0; i < batch.flagged.size(); ++i) {
          batch.assignments.push_back(index->Assign(batch.flagged[i].trace_id,
                                                    index->Embed(texts[i]), threshold,
                                                    v1::ASSIGNMENT_SOURCE_STREAMING));
        }
      }
      ASSIGN_OR_RETURN(outcome, repository_->CommitFeedBatch(project, owner_, batch));
    }
    if (outcome == CommitOutcome::kLostLease) {
      result.leased = false;
      return result;
    }
    if (outcome == CommitOutcome::kStaleVersion) {
      return absl::AbortedError("clusterings kept changing during a feed batch; retry later");
    }
    result.entries += static_cast<int64_t>(page.entries.size());
    result.cursor = batch.next_cursor;
    if (page.next_after_sequence >= page.high_water_mark) break;
  }
  return result;
}

}  // namespace flywheel::clustering
