#pragma once

// Reads a snapshot (all cases of a version, filtered) page by page for streams and exports.
// Snapshots are immutable, so the page boundaries are computed once and pages are independent:
// the next pages are read on background threads while the caller sends the current one. That
// overlaps Postgres producing rows with this process decoding them.

#include <deque>
#include <future>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/evalset/evalset_repository.h"

namespace flywheel::evalset {

class SnapshotPager {
 public:
  // `ahead`: pages read concurrently (each holds a database connection while it runs).
  SnapshotPager(EvalSetRepository* repository, std::string project, std::string eval_set_id,
                SnapshotQuery query, int page_rows, int ahead = 2);
  // Waits for in-flight reads (the repository outlives the pager).
  ~SnapshotPager();
  SnapshotPager(const SnapshotPager&) = delete;
  SnapshotPager& operator=(const SnapshotPager&) = delete;

  // The next page in case_id order; empty once the snapshot is exhausted.
  absl::StatusOr<std::vector<v1::Case>> NextPage();

 private:
  void Launch();

  EvalSetRepository* const repository_;
  const std::string project_;
  const std::string eval_set_id_;
  const SnapshotQuery query_;
  const int page_rows_;
  const int ahead_;
  bool planned_ = false;
  std::vector<SnapshotQuery> pages_;
  size_t launched_ = 0;
  std::deque<std::future<absl::StatusOr<std::vector<v1::Case>>>> inflight_;
};

}  // namespace flywheel::evalset
