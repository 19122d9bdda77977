#pragma once

// In-memory fakes of upstream.h for tests, with failure injection: each fake method can be made
// to fail its next N calls with a given status (e.g. eval-set AddCases UNAVAILABLE twice, then
// success), and records the calls it received. Thread-safe.

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "services/annotation/upstream.h"

namespace flywheel::annotation {

// Per-method "fail the next N calls" and call counts.
class FailureInjector {
 public:
  // The next `times` calls of `method` (e.g. "AddCases") fail with `status`.
  void FailNext(const std::string& method, int times, absl::Status status) {
    absl::MutexLock lock(&mu_);
    failures_[method].push_back({times, std::move(status)});
  }
  // Calls of `method` so far (failed ones included).
  int Calls(const std::string& method) const {
    absl::MutexLock lock(&mu_);
    auto it = calls_.find(method);
    return it == calls_.end() ? 0 : it->second;
  }

 protected:
  // Counts the call and returns the injected failure, if any.
  absl::Status Enter(const std::string& method) {
    absl::MutexLock lock(&mu_);
    ++calls_[method];
    auto it = failures_.find(method);
    if (it == failures_.end() || it->second.empty()) return absl::OkStatus();
    Failure& next = it->second.front();
    absl::Status status = next.status;
    if (--next.times <= 0) it->second.erase(it->second.begin());
    return status;
  }

  mutable absl::Mutex mu_;

 private:
  struct Failure {
    int times;
    absl::Status status;
  };
  std::map<std::string, std::vector<Failure>> failures_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> calls_ ABSL_GUARDED_BY(mu_);
};

// Capture: a per-project flagged feed, traces (as FetchedTrace) and the trace population that
// SampleTraces draws from.
class FakeCaptureUpstream final : public CaptureUpstream, public FailureInjector {
 public:
  // Appends a FLAGGED entry (sequence = next dense number) carrying a TraceSummary of the trace.
  int64_t AppendFlagged(const std::string& project_id, ::flywheel::capture::v1::TraceSummary trace,
                        absl::Time flag_time = absl::UnixEpoch()) {
    absl::MutexLock lock(&mu_);
    auto& feed = feeds_[project_id];
    ::flywheel::capture::v1::FlaggedFeedEntry entry;
    entry.set_sequence(static_cast<int64_t>(feed.size()) + 1);
    entry.set_entry_type(::flywheel::capture::v1::FLAGGED_FEED_ENTRY_TYPE_FLAGGED);
    entry.set_trace_id(trace.trace_id());
    entry.mutable_flag_time()->set_seconds(absl::ToUnixSeconds(flag_time));
    *entry.mutable_trace() = std::move(trace);
    feed.push_back(entry);
    return entry.sequence();
  }
  int64_t AppendUnflagged(const std::string& project_id, const std::string& trace_id) {
    absl::MutexLock lock(&mu_);
    auto& feed = feeds_[project_id];
    ::flywheel::capture::v1::FlaggedFeedEntry entry;
    entry.set_sequence(static_cast<int64_t>(feed.size()) + 1);
    entry.set_entry_type(::flywheel::capture::v1::FLAGGED_FEED_ENTRY_TYPE_UNFLAGGED);
    entry.set_trace_id(trace_id);
    feed.push_back(entry);
    return entry.sequence();
  }
  // Makes GetTraces find the trace (status is set to OK) and SampleTraces able to draw it.
  void PutTrace(const std::string& project_id, FetchedTrace trace) {
    absl::MutexLock lock(&mu_);
    trace.status = absl::OkStatus();
    if (trace.snapshot.trace_id().empty()) trace.snapshot.set_trace_id(trace.trace_id);
    traces_[project_id][trace.trace_id] = std::move(trace);
  }

  absl::StatusOr<FlaggedFeedPage> ReadFlaggedFeed(const CallScope& scope, int64_t after_sequence,
                                                  int limit) override {
    if (absl::Status s = Enter("ReadFlaggedFeed"); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    FlaggedFeedPage page;
    page.next_after_sequence = after_sequence;
    auto it = feeds_.find(scope.project_id);
    if (it == feeds_.end()) return page;
    const auto& feed = it->second;
    page.high_water_mark = static_cast<int64_t>(feed.size());
    page.oldest_sequence = feed.empty() ? 0 : 1;
    for (int64_t seq = std::max<int64_t>(after_sequence, 0) + 1;
         seq <= page.high_water_mark && static_cast<int>(page.entries.size()) < limit; ++seq) {
      page.entries.push_back(feed[static_cast<size_t>(seq - 1)]);
      page.next_after_sequence = seq;
    }
    return page;
  }

  absl::StatusOr<std::vector<FetchedTrace>> GetTraces(
      const CallScope& scope, const std::vector<std::string>& trace_ids) override {
    if (absl::Status s = Enter("GetTraces"); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    std::vector<FetchedTrace> out;
    const auto& traces = traces_[scope.project_id];
    for (const std::string& id : trace_ids) {
      auto it = traces.find(id);
      if (it != traces.end()) {
        out.push_back(it->second);
      } else {
        FetchedTrace missing;
        missing.trace_id = id;
        missing.status = absl::NotFoundError(absl::StrCat("capture: trace ", id, " not found"));
        out.push_back(std::move(missing));
      }
    }
    return out;
  }

  // Uniform among the project's PutTrace traces whose snapshot trace_create_time is in window.
  absl::StatusOr<std::vector<SampledTrace>> SampleTraces(const CallScope& scope,
                                                         const TimeWindow& window, int n,
                                                         uint64_t seed) override {
    if (absl::Status s = Enter("SampleTraces"); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    std::vector<SampledTrace> pool;
    for (const auto& [id, trace] : traces_[scope.project_id]) {
      absl::Time t = absl::FromUnixSeconds(trace.snapshot.trace_create_time().seconds()) +
                     absl::Nanoseconds(trace.snapshot.trace_create_time().nanos());
      if (window.start && t < *window.start) continue;
      if (window.end && t >= *window.end) continue;
      pool.push_back({id, trace.snapshot.feature_area(), t});
    }
    std::mt19937_64 rng(seed);
    std::shuffle(pool.begin(), pool.end(), rng);
    if (static_cast<int>(pool.size()) > n) pool.resize(static_cast<size_t>(std::max(n, 0)));
    return pool;
  }

 private:
  std::map<std::string, std::vector<::flywheel::capture::v1::FlaggedFeedEntry>> feeds_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<std::string, FetchedTrace>> traces_ ABSL_GUARDED_BY(mu_);
};

// Clustering: assignments per trace, clusters (with parents and merge redirects) and nearest
// clusters per text.
class FakeClusteringUpstream final : public ClusteringUpstream, public FailureInjector {
 public:
  // Assigns a trace to a theme (ASSIGNED; clustering_version 1).
  void Assign(const std::string& project_id, const std::string& trace_id,
              const std::string& cluster_id, const std::string& cluster_name = "",
              const std::string& parent_cluster_id = "") {
    absl::MutexLock lock(&mu_);
    ::flywheel::clustering::v1::GetTraceAssignmentResponse a;
    a.set_trace_id(trace_id);
    a.set_state(::flywheel::clustering::v1::ASSIGNMENT_STATE_ASSIGNED);
    a.set_clustering_version(1);
    a.set_cluster_id(cluster_id);
    a.set_cluster_name(cluster_name);
    a.set_parent_cluster_id(parent_cluster_id);
    assignments_[project_id][trace_id] = a;
    ::flywheel::clustering::v1::ClusterMember member;
    member.set_trace_id(trace_id);
    member.set_cluster_id(cluster_id);
    members_[project_id][cluster_id].push_back(member);
  }
  void PutCluster(const std::string& project_id, ::flywheel::clustering::v1::Cluster cluster) {
    absl::MutexLock lock(&mu_);
    clusters_[project_id][cluster.cluster_id()] = std::move(cluster);
  }
  // NearestClusters answers `matches` for this exact text (others: OK with no matches).
  void SetNearest(const std::string& project_id, const std::string& text,
                  std::vector<::flywheel::clustering::v1::ClusterMatch> matches) {
    absl::MutexLock lock(&mu_);
    nearest_[project_id][text] = std::move(matches);
  }
  // While set, NearestClusters fails with FAILED_PRECONDITION (no clustering yet).
  void SetNoClusteringYet(bool value) {
    absl::MutexLock lock(&mu_);
    no_clustering_ = value;
  }

  absl::StatusOr<::flywheel::clustering::v1::GetTraceAssignmentResponse> GetTraceAssignment(
      const CallScope& scope, const std::string& trace_id) override {
    if (absl::Status s = Enter("GetTraceAssignment"); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    auto& project = assignments_[scope.project_id];
    auto it = project.find(trace_id);
    if (it != project.end()) return it->second;
    ::flywheel::clustering::v1::GetTraceAssignmentResponse not_seen;
    not_seen.set_trace_id(trace_id);
    not_seen.set_state(::flywheel::clustering::v1::ASSIGNMENT_STATE_NOT_SEEN);
    return not_seen;
  }

  // Members in Assign order; page_token is the decimal offset.
  absl::StatusOr<ClusterMembersPage> ListClusterMembers(const CallScope& scope,
                                                        const std::string& cluster_id,
                                                        const std::string& page_token,
                                                        int page_size) override {
    if (absl::Status s = Enter("ListClusterMembers"); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    auto& project = members_[scope.project_id];
    auto it = project.find(cluster_id);
    if (it == project.end()) {
      return absl::NotFoundError(absl::StrCat("clustering: cluster ", cluster_id, " not found"));
    }
    size_t offset = page_token.empty() ? 0 : std::stoul(page_token);
    ClusterMembersPage page;
    page.clustering_version = 1;
    size_t end = std::min(it->second.size(), offset + static_cast<size_t>(std::max(page_size, 1)));
    for (size_t i = offset; i < end; ++i) page.members.push_back(it->second[i]);
    if (end < it->second.size()) page.next_page_token = std::to_string(end);
    return page;
  }

  absl::StatusOr<std::vector<::flywheel::clustering::v1::NearestClustersResult>> NearestClusters(
      const CallScope& scope, const std::vector<std::string>& texts, int top_k) override {
    if (absl::Status s = Enter("NearestClusters"); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    if (no_clustering_) {
      return absl::FailedPreconditionError("clustering: no SUCCEEDED clustering yet");
    }
    std::vector<::flywheel::clustering::v1::NearestClustersResult> out;
    auto& project = nearest_[scope.project_id];
    for (size_t i = 0; i < texts.size(); ++i) {
      ::flywheel::clustering::v1::NearestClustersResult result;
      result.set_index(static_cast<int32_t>(i));
      auto it = project.find(texts[i]);
      if (it != project.end()) {
        for (size_t j = 0; j < it->second.size() && static_cast<int>(j) < top_k; ++j) {
          *result.add_matches() = it->second[j];
        }
      }
      out.push_back(std::move(result));
    }
    return out;
  }

  absl::StatusOr<::flywheel::clustering::v1::Cluster> GetCluster(
      const CallScope& scope, const std::string& cluster_id) override {
    if (absl::Status s = Enter("GetCluster"); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    auto& project = clusters_[scope.project_id];
    auto it = project.find(cluster_id);
    if (it == project.end()) {
      return absl::NotFoundError(absl::StrCat("clustering: cluster ", cluster_id, " not found"));
    }
    return it->second;
  }

 private:
  std::map<std::string,
           std::map<std::string, ::flywheel::clustering::v1::GetTraceAssignmentResponse>>
      assignments_ ABSL_GUARDED_BY(mu_);
  std::map<std::string,
           std::map<std::string, std::vector<::flywheel::clustering::v1::ClusterMember>>>
      members_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<std::string, ::flywheel::clustering::v1::Cluster>> clusters_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string,
           std::map<std::string, std::vector<::flywheel::clustering::v1::ClusterMatch>>>
      nearest_ ABSL_GUARDED_BY(mu_);
  bool no_clustering_ ABSL_GUARDED_BY(mu_) = false;
};

// Eval-set: sets that exist per project, cases keyed by case_key with eval-set's idempotency
// (same key + same content: DUPLICATE with the existing id; different content: REJECTED
// ALREADY_EXISTS), UpdateCase, and nearest-case similarities per text.
class FakeEvalSetUpstream final : public EvalSetUpstream, public FailureInjector {
 public:
  void CreateSet(const std::string& project_id, const std::string& eval_set_id) {
    absl::MutexLock lock(&mu_);
    sets_[project_id][eval_set_id];
  }
  // FindNearestCases answers these matches for this exact text (others: none).
  void SetNearest(const std::string& project_id, const std::string& text,
                  std::vector<::flywheel::evalset::v1::CaseMatch> matches) {
    absl::MutexLock lock(&mu_);
    nearest_[project_id][text] = std::move(matches);
  }
  // The cases of a set (current revisions), by case id; empty when the set is unknown.
  std::vector<::flywheel::evalset::v1::Case> Cases(const std::string& project_id,
                                                   const std::string& eval_set_id) const {
    absl::MutexLock lock(&mu_);
    std::vector<::flywheel::evalset::v1::Case> out;
    auto p = sets_.find(project_id);
    if (p == sets_.end()) return out;
    auto s = p->second.find(eval_set_id);
    if (s == p->second.end()) return out;
    for (const auto& [id, c] : s->second.cases) out.push_back(c.current);
    return out;
  }

  absl::StatusOr<::flywheel::evalset::v1::AddCasesResponse> AddCases(
      const CallScope& scope, const std::string& eval_set_id,
      const std::vector<::flywheel::evalset::v1::Case>& cases,
      const std::string& /*change_note*/) override {
    if (absl::Status s = Enter("AddCases"); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    auto p = sets_.find(scope.project_id);
    if (p == sets_.end() || !p->second.contains(eval_set_id)) {
      return absl::NotFoundError(absl::StrCat("evalset: eval set ", eval_set_id, " not found"));
    }
    Set& set = p->second[eval_set_id];
    ::flywheel::evalset::v1::AddCasesResponse response;
    bool accepted = false;
    for (size_t i = 0; i < cases.size(); ++i) {
      ::flywheel::evalset::v1::Case c = cases[i];
      auto* result = response.add_results();
      result->set_index(static_cast<int32_t>(i));
      const std::string content = Content(c);
      auto by_key = c.case_key().empty() ? set.by_key.end() : set.by_key.find(c.case_key());
      if (by_key != set.by_key.end()) {
        const Stored& existing = set.cases.at(by_key->second);
        result->set_id(existing.current.case_id());
        if (existing.first_content == content) {
          result->set_outcome(::flywheel::common::v1::ITEM_OUTCOME_DUPLICATE);
        } else {
          result->set_outcome(::flywheel::common::v1::ITEM_OUTCOME_REJECTED);
          result->set_code(static_cast<int32_t>(absl::StatusCode::kAlreadyExists));
          result->set_field("case_key");
          result->set_reason("case_key exists with different content");
        }
        continue;
      }
      if (c.case_id().empty()) c.set_case_id(absl::StrCat("case-", ++set.next_id));
      c.set_eval_set_id(eval_set_id);
      c.set_revision(1);
      result->set_id(c.case_id());
      result->set_outcome(::flywheel::common::v1::ITEM_OUTCOME_ACCEPTED);
      if (!c.case_key().empty()) set.by_key[c.case_key()] = c.case_id();
      set.cases[c.case_id()] = Stored{content, c};
      accepted = true;
    }
    if (accepted) ++set.version;
    response.set_version(set.version);
    response.set_version_created(accepted);
    return response;
  }

  // Replaces the masked paths (expected_output, theme, metadata, input, tags) of a known case.
  absl::StatusOr<::flywheel::evalset::v1::UpdateCaseResponse> UpdateCase(
      const CallScope& scope, const std::string& eval_set_id,
      const ::flywheel::evalset::v1::Case& eval_case, const std::vector<std::string>& paths,
      const std::string& /*change_note*/) override {
    if (absl::Status s = Enter("UpdateCase"); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    auto p = sets_.find(scope.project_id);
    if (p == sets_.end() || !p->second.contains(eval_set_id)) {
      return absl::NotFoundError(absl::StrCat("evalset: eval set ", eval_set_id, " not found"));
    }
    Set& set = p->second[eval_set_id];
    auto it = set.cases.find(eval_case.case_id());
    if (it == set.cases.end()) {
      return absl::NotFoundError(absl::StrCat("evalset: case ", eval_case.case_id(), " not found"));
    }
    ::flywheel::evalset::v1::Case next = it->second.current;
    for (const std::string& path : paths) {
      if (path == "expected_output")
        next.set_expected_output(eval_case.expected_output());
      else if (path == "theme")
        *next.mutable_theme() = eval_case.theme();
      else if (path == "metadata")
        *next.mutable_metadata() = eval_case.metadata();
      else if (path == "input")
        *next.mutable_input() = eval_case.input();
      else if (path == "tags")
        *next.mutable_tags() = eval_case.tags();
      else
        return absl::InvalidArgumentError(absl::StrCat("evalset: update_mask path ", path));
    }
    ::flywheel::evalset::v1::UpdateCaseResponse response;
    const bool changed = Content(next) != Content(it->second.current);
    if (changed) {
      next.set_revision(it->second.current.revision() + 1);
      it->second.current = next;
      ++set.version;
    }
    *response.mutable_eval_case() = it->second.current;
    response.set_version(set.version);
    response.set_version_created(changed);
    return response;
  }

  absl::StatusOr<std::vector<::flywheel::evalset::v1::NearestCases>> FindNearestCases(
      const CallScope& scope, const std::vector<std::string>& texts,
      const std::vector<std::string>& /*eval_set_ids*/, int k) override {
    if (absl::Status s = Enter("FindNearestCases"); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    std::vector<::flywheel::evalset::v1::NearestCases> out;
    auto& project = nearest_[scope.project_id];
    for (size_t i = 0; i < texts.size(); ++i) {
      ::flywheel::evalset::v1::NearestCases result;
      result.set_index(static_cast<int32_t>(i));
      auto it = project.find(texts[i]);
      if (it != project.end()) {
        for (size_t j = 0; j < it->second.size() && static_cast<int>(j) < k; ++j) {
          *result.add_matches() = it->second[j];
        }
      }
      out.push_back(std::move(result));
    }
    return out;
  }

 private:
  // Content as eval-set compares it (every content field; not ids or output-only fields).
  static std::string Content(const ::flywheel::evalset::v1::Case& c) {
    ::flywheel::evalset::v1::Case copy;
    *copy.mutable_input() = c.input();
    *copy.mutable_context() = c.context();
    copy.set_expected_output(c.expected_output());
    *copy.mutable_assertions() = c.assertions();
    *copy.mutable_theme() = c.theme();
    *copy.mutable_tags() = c.tags();
    copy.set_source_trace_id(c.source_trace_id());
    copy.set_source_annotation_id(c.source_annotation_id());
    *copy.mutable_metadata() = c.metadata();
    std::string out;
    {
      ::google::protobuf::io::StringOutputStream stream(&out);
      ::google::protobuf::io::CodedOutputStream coded(&stream);
      coded.SetSerializationDeterministic(true);
      copy.SerializeToCodedStream(&coded);
    }
    return out;
  }
  struct Stored {
    std::string first_content;
    ::flywheel::evalset::v1::Case current;
  };
  struct Set {
    std::map<std::string, Stored> cases;
    std::map<std::string, std::string> by_key;
    int64_t version = 0;
    int64_t next_id = 0;
  };
  std::map<std::string, std::map<std::string, Set>> sets_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<std::string, std::vector<::flywheel::evalset::v1::CaseMatch>>>
      nearest_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flywheel::annotation
