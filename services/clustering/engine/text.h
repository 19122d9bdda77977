#pragma once

// Text preparation: masking of volatile tokens, the text a trace is embedded from, tokenization.

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace flywheel::clustering::engine {

// The parts of a flagged trace that are embedded.
struct TraceText {
  std::string input;                  // the user input (last user message for chat input)
  std::string output;                 // the response; only its start is used
  std::vector<std::string> comments;  // feedback comments
};

// Placeholder tokens MaskText writes (they survive tokenization as single tokens).
inline constexpr absl::string_view kUrlToken = "<url>";
inline constexpr absl::string_view kEmailToken = "<email>";
inline constexpr absl::string_view kUuidToken = "<uuid>";
inline constexpr absl::string_view kHexToken = "<hex>";
inline constexpr absl::string_view kNumberToken = "<num>";
inline constexpr absl::string_view kPathToken = "<path>";

// Replaces URLs, e-mail addresses, UUIDs, hex ids (>= 8 hex digits with at least one digit, or
// 0x...), numbers (incl. decimals, versions, dates) and unix paths with the placeholders above.
// Words that merely contain digits (e.g. "gpt4", "utf8") are kept.
std::string MaskText(absl::string_view text);

struct PrepareOptions {
  size_t max_input_bytes = 1500;
  size_t max_output_bytes = 300;   // "start of the response"
  size_t max_comment_bytes = 400;  // all comments together
};

// Masked input + start of output + comments, each cut on a UTF-8 boundary, joined by " | ".
std::string PrepareText(const TraceText& trace, const PrepareOptions& options = {});

// Lowercased word tokens: runs of letters/digits/'_' (bytes >= 0x80 count as letters, so UTF-8
// words stay whole); placeholders from MaskText are single tokens. Apostrophes inside words are
// dropped ("don't" -> "dont").
std::vector<std::string> Tokenize(absl::string_view text);

// True for common English function words (used by naming and, optionally, the embedder).
bool IsStopWord(absl::string_view word);
// True for the MaskText placeholders.
bool IsPlaceholder(absl::string_view token);

}  // namespace flywheel::clustering::engine
