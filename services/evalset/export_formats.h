#pragma once

// Record writers of ExportEvalSet's file formats (JSON Lines). Each appends whole lines.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flywheel/capture/v1/capture.pb.h"
#include "flywheel/evalset/v1/evalset.pb.h"

namespace flywheel::evalset {

namespace v1 = ::flywheel::evalset::v1;

// The snapshot an export comes from, recorded in every record (or the header line).
struct ExportSource {
  std::string eval_set_id;
  int64_t version = 0;
  std::string content_digest;
};

// FLYWHEEL_JSONL line 1.
std::string FlywheelHeaderLine(const ExportSource& source, int64_t case_count,
                               absl::Time export_time);

// Appends the records of one case; returns how many were written (0 = the case is skipped).
absl::StatusOr<int> AppendFlywheelRecord(const v1::Case& c, std::string* out);
int AppendOpenAiEvalsRecord(const ExportSource& source, const v1::Case& c, std::string* out);
int AppendPromptfooRecord(const ExportSource& source, const v1::Case& c, std::string* out);
int AppendDpoRecords(const ExportSource& source, const v1::Case& c,
                     const std::vector<const flywheel::capture::v1::PreferencePair*>& pairs,
                     std::string* out);

// Suggested file name, e.g. "support-regressions@v14.promptfoo.jsonl".
std::string ExportFileName(const std::string& eval_set_id, int64_t version,
                           v1::ExportFormat format);

}  // namespace flywheel::evalset
