#include "common/text/text.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"

namespace flywheel::text {
namespace {

bool IsWordByte(unsigned char c) { return absl::ascii_isalnum(c) || c >= 0x80; }

using Features = std::unordered_map<uint32_t, double>;

void AddFeature(Features& features, absl::string_view prefix, absl::string_view value) {
  const uint64_t hash = absl::HashOf(prefix, value);
  features[static_cast<uint32_t>(hash & ((1u << 18) - 1))] += 1;
}

Features FeaturesOf(absl::string_view raw) {
  Features features;
  const std::string normalized = Normalize(raw);
  if (normalized.empty()) return features;
  for (const std::string& token : Tokenize(normalized)) AddFeature(features, "w", token);
  const std::string padded = " " + normalized + " ";
  for (size_t i = 0; i + 3 <= padded.size(); ++i) {
    AddFeature(features, "c", absl::string_view(padded).substr(i, 3));
  }
  return features;
}

}  // namespace

std::vector<std::string> Tokenize(absl::string_view text) {
  std::vector<std::string> tokens;
  std::string current;
  for (unsigned char c : text) {
    if (IsWordByte(c)) {
      current.push_back(static_cast<char>(absl::ascii_tolower(c)));
    } else if (!current.empty()) {
      tokens.push_back(std::move(current));
      current.clear();
    }
  }
  if (!current.empty()) tokens.push_back(std::move(current));
  return tokens;
}

std::string Normalize(absl::string_view text) {
  std::string out;
  for (const std::string& token : Tokenize(text)) {
    if (!out.empty()) out.push_back(' ');
    out += token;
  }
  return out;
}

double NgramCosine(absl::string_view a, absl::string_view b) {
  const Features fa = FeaturesOf(a);
  const Features fb = FeaturesOf(b);
  if (fa.empty() || fb.empty()) return 0;
  double dot = 0, na = 0, nb = 0;
  for (const auto& [key, value] : fa) {
    na += value * value;
    auto it = fb.find(key);
    if (it != fb.end()) dot += value * it->second;
  }
  for (const auto& [key, value] : fb) nb += value * value;
  return std::clamp(dot / (std::sqrt(na) * std::sqrt(nb)), 0.0, 1.0);
}

double NormalizedTokenEditDistance(absl::string_view a, absl::string_view b) {
  std::vector<std::string> ta = Tokenize(a);
  std::vector<std::string> tb = Tokenize(b);
  if (ta.size() > kMaxEditTokens) ta.resize(kMaxEditTokens);
  if (tb.size() > kMaxEditTokens) tb.resize(kMaxEditTokens);
  const size_t longer = std::max(ta.size(), tb.size());
  if (longer == 0) return 0;
  std::vector<size_t> previous(tb.size() + 1), current(tb.size() + 1);
  for (size_t j = 0; j <= tb.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= ta.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= tb.size(); ++j) {
      const size_t substitute = previous[j - 1] + (ta[i - 1] == tb[j - 1] ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitute});
    }
    std::swap(previous, current);
  }
  return static_cast<double>(previous[tb.size()]) / static_cast<double>(longer);
}

bool IsValidUtf8(absl::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t length;
    uint32_t code_point;
    if ((c & 0xE0) == 0xC0) {
      length = 2;
      code_point = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3;
      code_point = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4;
      code_point = c & 0x07;
    } else {
      return false;
    }
    if (i + length > n) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (s[i + k] & 0x3F);
    }
    if ((length == 2 && code_point < 0x80) || (length == 3 && code_point < 0x800) ||
        (length == 4 && code_point < 0x10000) || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      return false;
    }
    i += length;
  }
  return true;
}

absl::string_view TruncateUtf8(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

size_t CodePointCount(absl::string_view text) {
  size_t count = 0;
  for (unsigned char c : text) count += (c & 0xC0) != 0x80;
  return count;
}

}  // namespace flywheel::text
