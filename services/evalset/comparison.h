#pragma once

// Comparison of two runs of one eval set: pass rates over the cases both runs have results for,
// per-theme deltas (including themes present in one run only), regressions, fixes and release
// notes. Pure functions over already-loaded results, so the arithmetic is unit-tested directly.

#include <string>
#include <vector>

#include "flywheel/evalset/v1/evalset.pb.h"
#include "services/evalset/evalset_repository.h"

namespace flywheel::evalset {

struct CompareOptions {
  int max_listed_cases = 100;
  double release_notes_min_delta_points = 5;
  int release_notes_min_cases = 5;
};

struct CompareSide {
  const RunRecord* run = nullptr;
  const std::vector<ResultFacts>* results = nullptr;
};

// Everything but the snippets of the listed cases (the caller fills them from storage) and the
// release notes (see WriteReleaseNotes, which needs the set's display name).
v1::CompareRunsResponse CompareResults(const CompareSide& baseline, const CompareSide& candidate,
                                       const CompareOptions& options);

// Markdown release notes for a comparison (shape documented on CompareRunsResponse).
std::string WriteReleaseNotes(const v1::CompareRunsResponse& comparison,
                              const std::string& set_display_name, const CompareOptions& options);

// Escapes the characters that change inline markdown rendering.
std::string EscapeMarkdown(const std::string& text);

}  // namespace flywheel::evalset
