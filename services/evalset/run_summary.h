#pragma once

// Aggregates of a run's results, overall and per theme (RunSummary in evalset.proto).

#include <vector>

#include "flywheel/evalset/v1/evalset.pb.h"
#include "services/evalset/evalset_repository.h"

namespace flywheel::evalset {

// `themes`: live cases of the pinned version per theme (the denominators); `results`: every
// result of the run. With `full`, the per-theme breakdown is included.
v1::RunSummary ComputeRunSummary(const std::vector<ThemeCount>& themes,
                                 const std::vector<ResultFacts>& results, bool full);

// Stats over a group of results (case_count and missing_count are left to the caller).
v1::ResultStats StatsOf(const std::vector<const ResultFacts*>& results);

}  // namespace flywheel::evalset
