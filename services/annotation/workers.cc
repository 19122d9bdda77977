#include "services/annotation/workers.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/annotation/annotation_logic.h"
#include "services/annotation/logic_util.h"
#include "services/annotation/sampling.h"

namespace flywheel::annotation {

// ------------------------------------------------------------------------------------------------
// PeriodicWorker

PeriodicWorker::PeriodicWorker(std::string name, absl::Duration interval,
                               absl::Duration busy_interval, std::function<bool()> tick)
    : interval_(interval),
      busy_interval_(std::min(interval, busy_interval)),
      tick_(std::move(tick)) {
  (void)name;
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      lock.unlock();
      const bool busy = tick_();
      lock.lock();
      wake_.wait_for(lock, absl::ToChronoMilliseconds(busy ? busy_interval_ : interval_),
                     [this] { return stopping_; });
    }
  });
}

PeriodicWorker::~PeriodicWorker() { Stop(); }

void PeriodicWorker::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

// ------------------------------------------------------------------------------------------------
// LeaseReaper

absl::StatusOr<int64_t> LeaseReaper::RunOnce() {
  int64_t total = 0;
  while (true) {
    ASSIGN_OR_RETURN(int64_t n, repository_->ExpireLeases(1000));
    total += n;
    if (n == 0) break;
  }
  if (total > 0) logger_->Debug("expired leases returned", {{"count", absl::StrCat(total)}});
  return total;
}

// ------------------------------------------------------------------------------------------------
// PromotionDelivery

absl::StatusOr<int> PromotionDelivery::RunOnce(int limit) {
  // Entries are leased for a minute so that concurrent replicas do not deliver them twice at
  // once (a duplicate delivery would still be harmless: AddCases is idempotent on case_key).
  ASSIGN_OR_RETURN(std::vector<DuePromotion> due,
                   repository_->ClaimDuePromotions(limit, absl::Minutes(1)));
  int delivered = 0;
  for (const DuePromotion& d : due) {
    CallScope scope;
    scope.project_id = d.project_id;
    absl::Status status;
    ::flywheel::common::v1::ItemResult result;
    const ::flywheel::common::v1::ItemResult* result_ptr = nullptr;
    const std::string note = absl::StrCat("promoted from annotation ", d.annotation_id);
    if (d.update_case_id.empty()) {
      absl::StatusOr<::flywheel::evalset::v1::AddCasesResponse> response =
          evalset_->AddCases(scope, d.eval_set_id, {d.payload}, note);
      status = response.status();
      if (response.ok() && response->results_size() > 0) {
        result = response->results(0);
        result_ptr = &result;
      }
    } else {
      ::flywheel::evalset::v1::Case update = d.payload;
      update.set_case_id(d.update_case_id);
      absl::StatusOr<::flywheel::evalset::v1::UpdateCaseResponse> response = evalset_->UpdateCase(
          scope, d.eval_set_id, update, {"expected_output", "theme", "metadata"}, note);
      status = response.status();
      if (response.ok()) {
        result.set_outcome(::flywheel::common::v1::ITEM_OUTCOME_ACCEPTED);
        result.set_id(d.update_case_id);
        result_ptr = &result;
      }
    }
    DeliveryOutcome outcome =
        ClassifyDelivery(status, result_ptr, d.attempts, absl::Now(), backoff_);
    if (outcome.state == v1::PROMOTION_STATE_DELIVERED) ++delivered;
    if (outcome.state == v1::PROMOTION_STATE_FAILED) {
      logger_->Warn(
          "promotion refused by eval-set",
          {{"project", d.project_id}, {"annotation", d.annotation_id}, {"error", outcome.error}});
    }
    absl::Status recorded = repository_->RecordDelivery(d.project_id, d.annotation_id, outcome);
    if (!recorded.ok()) {
      logger_->Warn("could not record a promotion delivery; it will be retried",
                    {{"annotation", d.annotation_id}, {"status", recorded.ToString()}});
    }
  }
  return delivered;
}

// ------------------------------------------------------------------------------------------------
// QueueFiller

QueueFiller::QueueFiller(AnnotationRepository* repository, CaptureUpstream* capture,
                         ClusteringUpstream* clustering, EvalSetUpstream* evalset, Logger* logger,
                         Options options)
    : repository_(repository),
      capture_(capture),
      clustering_(clustering),
      evalset_(evalset),
      logger_(logger),
      options_(std::move(options)) {}

absl::StatusOr<int64_t> QueueFiller::RunOnce(absl::Time now) {
  ASSIGN_OR_RETURN(std::vector<FillableQueue> queues, repository_->ListFillableQueues());
  int64_t total = 0;
  waiting_for_clustering_ = false;
  for (const FillableQueue& f : queues) {
    absl::StatusOr<bool> mine = repository_->AcquireFillLease(
        f.project_id, f.queue.queue.queue_id(), options_.owner, options_.lease_ttl);
    if (!mine.ok() || !*mine) continue;
    absl::StatusOr<int64_t> n = FillQueue(f.project_id, f.queue, now);
    if (!n.ok()) {
      logger_->Warn("queue fill failed; retrying next interval",
                    {{"project", f.project_id},
                     {"queue", f.queue.queue.queue_id()},
                     {"status", n.status().ToString()}});
      continue;
    }
    total += *n;
  }
  return total;
}

namespace {

// Pre-assigns auto-filled items round-robin to the queue's reviewers with the fewest open
// assignments.
void AssignReviewers(const v1::Queue& queue,
                     const std::vector<std::pair<std::string, int64_t>>& open,
                     std::vector<NewItem>& items, absl::Time now) {
  const auto& reviewers = queue.assignment().reviewer_ids();
  if (reviewers.empty()) return;
  std::map<std::string, int64_t> load;
  for (const std::string& r : reviewers) load[r] = 0;
  for (const auto& [r, n] : open) {
    if (load.count(r)) load[r] = n;
  }
  const absl::Duration reservation = ToDuration(queue.assignment().reservation());
  const int n = std::min<int>(queue.reviewers_per_item(), reviewers.size());
  for (NewItem& item : items) {
    std::vector<std::pair<int64_t, std::string>> order;
    for (const auto& [r, c] : load) order.emplace_back(c, r);
    std::sort(order.begin(), order.end());
    for (int i = 0; i < n; ++i) {
      item.assigned_reviewer_ids.push_back(order[i].second);
      ++load[order[i].second];
    }
    std::sort(item.assigned_reviewer_ids.begin(), item.assigned_reviewer_ids.end());
    if (reservation != absl::ZeroDuration()) item.reserved_until = now + reservation;
  }
}

}  // namespace

absl::StatusOr<int64_t> QueueFiller::FillQueue(const std::string& project_id,
                                               const QueueRecord& record, absl::Time now) {
  const v1::Queue& queue = record.queue;
  CallScope scope;
  scope.project_id = project_id;
  ASSIGN_OR_RETURN(FlaggedFeedPage page,
                   capture_->ReadFlaggedFeed(scope, record.fill_cursor, options_.feed_batch));
  // Flagged traces of the page, first occurrence each, not yet in the queue.
  std::vector<std::string> ids;
  std::set<std::string> seen;
  std::map<std::string, absl::Time> flag_time;
  for (const auto& entry : page.entries) {
    if (entry.entry_type() != ::flywheel::capture::v1::FLAGGED_FEED_ENTRY_TYPE_FLAGGED) continue;
    if (seen.insert(entry.trace_id()).second) {
      ids.push_back(entry.trace_id());
      flag_time[entry.trace_id()] = ToTime(entry.flag_time());
    }
  }
  const bool needs_theme = !queue.source_rule().cluster_ids().empty() ||
                           queue.sampling().strategy() == v1::SAMPLING_STRATEGY_CLUSTER_BALANCED;
  std::vector<NewItem> items;
  if (!ids.empty()) {
    ASSIGN_OR_RETURN(std::vector<v1::Item> present,
                     repository_->FindItems(project_id, queue.queue_id(), ids));
    std::set<std::string> in_queue;
    for (const v1::Item& item : present) in_queue.insert(item.trace_id());
    std::vector<std::string> fresh;
    for (const std::string& id : ids) {
      if (!in_queue.count(id)) fresh.push_back(id);
    }
    std::vector<FetchedTrace> traces;
    if (!fresh.empty()) {
      ASSIGN_OR_RETURN(traces, capture_->GetTraces(scope, fresh));
    }
    // Source rule.
    std::vector<SamplingCandidate> candidates;
    std::vector<NewItem> candidate_items;
    for (FetchedTrace& trace : traces) {
      if (absl::IsNotFound(trace.status)) continue;
      // Anything else is transient: keep the cursor and retry the page next time.
      RETURN_IF_ERROR(trace.status);
      SourceFacts facts;
      facts.signal_kinds = trace.signal_kinds;
      facts.feature_area = trace.snapshot.feature_area();
      if (trace.snapshot.label().has_quality_score()) {
        facts.quality_score = trace.snapshot.label().quality_score();
      }
      facts.create_time = ToTime(trace.snapshot.trace_create_time());
      if (clustering_ != nullptr) {
        auto assignment = clustering_->GetTraceAssignment(scope, trace.trace_id);
        if (assignment.ok() &&
            assignment->state() == ::flywheel::clustering::v1::ASSIGNMENT_STATE_ASSIGNED) {
          facts.theme_id = assignment->cluster_id();
          facts.parent_group_id = assignment->parent_cluster_id();
          trace.snapshot.set_cluster_id(assignment->cluster_id());
          if (!assignment->hidden_by_privacy_threshold()) {
            trace.snapshot.set_cluster_name(assignment->cluster_name());
          }
        } else if (!assignment.ok() && !queue.source_rule().cluster_ids().empty()) {
          return assignment.status();  // cannot evaluate the rule now: retry later
        } else if (assignment.ok() && needs_theme &&
                   assignment->state() == ::flywheel::clustering::v1::ASSIGNMENT_STATE_NOT_SEEN &&
                   now - flag_time[trace.trace_id] < options_.clustering_grace) {
          // Clustering has not consumed this trace yet: keep the cursor and retry the page
          // shortly rather than filter the trace out for good.
          waiting_for_clustering_ = true;
          return 0;
        }
      }
      if (!MatchesSourceRule(queue.source_rule(), facts, now)) continue;
      SamplingCandidate c;
      c.trace_id = trace.trace_id;
      c.feature_area = facts.feature_area;
      c.theme_id = facts.theme_id;
      c.create_time = facts.create_time;
      candidates.push_back(c);
      NewItem item;
      item.trace_id = trace.trace_id;
      item.source = v1::ITEM_SOURCE_SAMPLED;
      item.snapshot = std::move(trace.snapshot);
      item.snapshot.set_trace_id(trace.trace_id);
      candidate_items.push_back(std::move(item));
    }
    // Sampling.
    const v1::Sampling sampling = EffectiveSampling(queue.sampling());
    const PeriodBounds period = PeriodContaining(sampling.period(), now);
    ASSIGN_OR_RETURN(auto period_items, repository_->ListPeriodItems(project_id, queue.queue_id(),
                                                                     period.start, period.end));
    SamplingInput input;
    input.sampling = queue.sampling();
    input.elapsed_fraction = ElapsedFraction(period, now);
    input.seed =
        static_cast<uint64_t>(absl::ToUnixMicros(now)) ^ std::hash<std::string>()(queue.queue_id());
    for (const auto& [source, stratum] : period_items) {
      if (source == v1::ITEM_SOURCE_SAMPLED) {
        ++input.usage.sampled_total;
        ++input.usage.sampled_per_stratum[stratum];
      } else if (source == v1::ITEM_SOURCE_RANDOM_BASELINE) {
        ++input.usage.baseline_total;
      }
    }
    if (sampling.strategy() == v1::SAMPLING_STRATEGY_NOVELTY_FIRST && evalset_ != nullptr &&
        !candidates.empty()) {
      std::vector<std::string> texts;
      for (const NewItem& item : candidate_items) texts.push_back(InputText(item.snapshot.input()));
      std::vector<std::string> sets;
      if (!queue.default_eval_set_id().empty()) sets.push_back(queue.default_eval_set_id());
      for (size_t start = 0; start < texts.size(); start += 100) {
        std::vector<std::string> chunk(texts.begin() + start,
                                       texts.begin() + std::min(texts.size(), start + 100));
        ASSIGN_OR_RETURN(auto nearest, evalset_->FindNearestCases(scope, chunk, sets, 1));
        for (size_t k = 0; k < nearest.size() && start + k < candidates.size(); ++k) {
          candidates[start + k].novelty = NoveltyFromNearest(nearest[k]);
        }
      }
    }
    input.candidates = candidates;
    for (const SampledItem& s : SelectCandidates(input)) {
      NewItem item = candidate_items[s.candidate_index];
      item.stratum = s.stratum;
      item.novelty = s.novelty;
      item.sampling_rank = s.novelty;
      items.push_back(std::move(item));
    }
    // Random baseline of all traffic.
    const int64_t baseline = RandomBaselineCount(
        sampling.random_baseline_share(),
        input.usage.sampled_total + static_cast<int64_t>(items.size()), input.usage.baseline_total);
    if (baseline > 0) {
      TimeWindow window;
      if (queue.source_rule().has_time_window()) {
        if (queue.source_rule().time_window().has_start_time()) {
          window.start = ToTime(queue.source_rule().time_window().start_time());
        }
        if (queue.source_rule().time_window().has_end_time()) {
          window.end = ToTime(queue.source_rule().time_window().end_time());
        }
      } else {
        window.start = period.start;
        window.end = now;
      }
      ASSIGN_OR_RETURN(std::vector<SampledTrace> sampled,
                       capture_->SampleTraces(
                           scope, window, static_cast<int>(baseline + items.size()), input.seed));
      std::vector<std::string> baseline_ids;
      std::set<std::string> taken;
      for (const NewItem& item : items) taken.insert(item.trace_id);
      for (const SampledTrace& s : sampled) {
        if (static_cast<int64_t>(baseline_ids.size()) >= baseline) break;
        if (taken.insert(s.trace_id).second) baseline_ids.push_back(s.trace_id);
      }
      if (!baseline_ids.empty()) {
        ASSIGN_OR_RETURN(std::vector<FetchedTrace> fetched,
                         capture_->GetTraces(scope, baseline_ids));
        std::vector<NewItem> baseline_items;
        for (FetchedTrace& trace : fetched) {
          if (!trace.status.ok()) continue;
          NewItem item;
          item.trace_id = trace.trace_id;
          item.source = v1::ITEM_SOURCE_RANDOM_BASELINE;
          item.snapshot = std::move(trace.snapshot);
          item.snapshot.set_trace_id(trace.trace_id);
          baseline_items.push_back(std::move(item));
        }
        FillThemes(clustering_, scope, baseline_items);
        for (NewItem& item : baseline_items) items.push_back(std::move(item));
      }
    }
    if (!queue.assignment().reviewer_ids().empty() && !items.empty()) {
      ASSIGN_OR_RETURN(auto open, repository_->OpenAssignments(project_id, queue.queue_id()));
      AssignReviewers(queue, open, items, now);
    }
  }
  if (page.next_after_sequence == record.fill_cursor && items.empty()) return 0;
  ASSIGN_OR_RETURN(std::vector<EnqueueOutcome> outcomes,
                   repository_->EnqueueAndAdvance(project_id, queue.queue_id(), items,
                                                  record.fill_cursor, page.next_after_sequence));
  int64_t accepted = 0;
  for (EnqueueOutcome o : outcomes) accepted += o == EnqueueOutcome::kAccepted;
  return accepted;
}

}  // namespace flywheel::annotation
