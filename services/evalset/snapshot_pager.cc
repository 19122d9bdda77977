#include "services/evalset/snapshot_pager.h"

#include "common/status/status_macros.h"

namespace flywheel::evalset {

SnapshotPager::SnapshotPager(EvalSetRepository* repository, std::string project,
                             std::string eval_set_id, SnapshotQuery query, int page_rows, int ahead)
    : repository_(repository),
      project_(std::move(project)),
      eval_set_id_(std::move(eval_set_id)),
      query_(std::move(query)),
      page_rows_(page_rows),
      ahead_(ahead) {}

SnapshotPager::~SnapshotPager() {
  for (auto& f : inflight_) f.wait();
}

void SnapshotPager::Launch() {
  while (inflight_.size() < static_cast<size_t>(ahead_) && launched_ < pages_.size()) {
    SnapshotQuery page = pages_[launched_++];
    inflight_.push_back(std::async(std::launch::async, [this, page = std::move(page)] {
      return repository_->ListCasesAt(project_, eval_set_id_, page, page_rows_);
    }));
  }
}

absl::StatusOr<std::vector<v1::Case>> SnapshotPager::NextPage() {
  if (!planned_) {
    ASSIGN_OR_RETURN(std::vector<std::string> bounds,
                     repository_->PageBoundaries(project_, eval_set_id_, query_, page_rows_));
    // Page i holds the ids in (bound i-1, bound i]; the last page is open-ended (and empty when
    // the snapshot size is a multiple of page_rows).
    std::string after = query_.after_case_id;
    for (size_t i = 0; i <= bounds.size(); ++i) {
      SnapshotQuery page = query_;
      page.after_case_id = after;
      page.through_case_id = i < bounds.size() ? bounds[i] : "";
      pages_.push_back(std::move(page));
      if (i < bounds.size()) after = bounds[i];
    }
    planned_ = true;
  }
  Launch();
  if (inflight_.empty()) return std::vector<v1::Case>();
  absl::StatusOr<std::vector<v1::Case>> page = inflight_.front().get();
  inflight_.pop_front();
  if (!page.ok()) return page.status();
  Launch();
  if (page->empty() && launched_ < pages_.size()) return NextPage();
  return page;
}

}  // namespace flywheel::evalset
