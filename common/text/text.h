#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

// Text utilities shared by services (capture: rephrase and edit detection; clustering:
// tokenization). Byte-oriented and UTF-8 aware; no locale.
namespace flywheel::text {

// Lowercased word tokens: maximal runs of ASCII letters and digits, or of non-ASCII code points
// (which covers letters of other scripts). Everything else separates tokens.
std::vector<std::string> Tokenize(absl::string_view text);

// Tokens joined by single spaces: two texts that differ only in case, punctuation or spacing
// normalize to the same string.
std::string Normalize(absl::string_view text);

// Cosine similarity in [0, 1] of two texts' feature-count vectors: word unigrams and character
// trigrams of the normalized text (hashed into 2^18 buckets). 0 when either text is empty.
double NgramCosine(absl::string_view a, absl::string_view b);

// Token-level Levenshtein distance divided by the longer token count, in [0, 1]; 0 when both
// are empty. Only the first kMaxEditTokens tokens of each text are compared (cost is quadratic).
inline constexpr size_t kMaxEditTokens = 4000;
double NormalizedTokenEditDistance(absl::string_view a, absl::string_view b);

// True if `text` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// The longest prefix of `text` of at most max_bytes that ends on a code point boundary.
absl::string_view TruncateUtf8(absl::string_view text, size_t max_bytes);

// Number of Unicode code points (text assumed valid UTF-8).
size_t CodePointCount(absl::string_view text);

}  // namespace flywheel::text
