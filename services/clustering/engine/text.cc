#include "services/clustering/engine/text.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace flywheel::clustering::engine {
namespace {

bool IsAsciiAlnum(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); }
bool IsHighByte(char c) { return static_cast<unsigned char>(c) >= 0x80; }
bool IsWordByte(char c) { return IsAsciiAlnum(c) || c == '_' || IsHighByte(c); }

// Characters that may belong to a URL / e-mail / path "chunk" (anything but space, quotes and
// brackets).
bool IsChunkByte(char c) {
  if (IsHighByte(c)) return true;
  if (absl::ascii_isspace(static_cast<unsigned char>(c))) return false;
  return std::strchr("\"'`()[]{}<>|,;", c) == nullptr;
}

bool IsHexDigit(char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); }

// Length of a UUID (8-4-4-4-12 hex) starting at text[i], or 0.
size_t UuidLength(absl::string_view text, size_t i) {
  static constexpr std::array<int, 5> kGroups = {8, 4, 4, 4, 12};
  size_t pos = i;
  for (size_t g = 0; g < kGroups.size(); ++g) {
    for (int j = 0; j < kGroups[g]; ++j, ++pos) {
      if (pos >= text.size() || !IsHexDigit(text[pos])) return 0;
    }
    if (g + 1 < kGroups.size()) {
      if (pos >= text.size() || text[pos] != '-') return 0;
      ++pos;
    }
  }
  if (pos < text.size() && IsAsciiAlnum(text[pos])) return 0;
  return pos - i;
}

bool LooksLikeEmail(absl::string_view chunk) {
  size_t at = chunk.find('@');
  if (at == 0 || at == absl::string_view::npos || at + 1 >= chunk.size()) return false;
  absl::string_view domain = chunk.substr(at + 1);
  size_t dot = domain.rfind('.');
  if (dot == absl::string_view::npos || dot == 0 || dot + 2 > domain.size()) return false;
  for (char c : chunk.substr(0, at)) {
    if (!IsAsciiAlnum(c) && std::strchr("._%+-", c) == nullptr) return false;
  }
  for (char c : domain) {
    if (!IsAsciiAlnum(c) && c != '.' && c != '-') return false;
  }
  return true;
}

bool LooksLikeUrl(absl::string_view chunk) {
  if (absl::StartsWithIgnoreCase(chunk, "www.") && chunk.size() > 5) return true;
  size_t scheme = chunk.find("://");
  if (scheme == absl::string_view::npos || scheme == 0 || scheme > 10) return false;
  for (char c : chunk.substr(0, scheme)) {
    if (!absl::ascii_isalpha(static_cast<unsigned char>(c)) && c != '+') return false;
  }
  return true;
}

bool LooksLikePath(absl::string_view chunk) {
  if (chunk.size() < 3) return false;
  bool rooted = chunk[0] == '/' || absl::StartsWith(chunk, "~/") || absl::StartsWith(chunk, "./");
  if (!rooted) return false;
  return std::count(chunk.begin(), chunk.end(), '/') >= 2 ||
         (chunk[0] == '/' && chunk.size() > 1 && IsWordByte(chunk[1]));
}

// Appends an id placeholder; an identifier prefix glued to it by '_' ("ord_", "req_id_") is part of
// the id and goes with it.
void AppendId(absl::string_view placeholder, std::string& out) {
  if (!out.empty() && out.back() == '_') {
    size_t start = out.size();
    while (start > 0 && (IsAsciiAlnum(out[start - 1]) || out[start - 1] == '_')) --start;
    out.resize(start);
  }
  out.append(placeholder.data(), placeholder.size());
}

// Masks numbers and hex ids inside a chunk that is not a URL, e-mail or path.
void MaskWords(absl::string_view chunk, std::string& out) {
  size_t i = 0;
  while (i < chunk.size()) {
    char c = chunk[i];
    if (!IsAsciiAlnum(c) && !IsHighByte(c)) {
      out.push_back(c);
      ++i;
      continue;
    }
    if (size_t n = UuidLength(chunk, i); n > 0) {
      AppendId(kUuidToken, out);
      i += n;
      continue;
    }
    // 0x... hex literal.
    if (c == '0' && i + 2 < chunk.size() && (chunk[i + 1] == 'x' || chunk[i + 1] == 'X') &&
        IsHexDigit(chunk[i + 2])) {
      size_t j = i + 2;
      while (j < chunk.size() && IsHexDigit(chunk[j])) ++j;
      if (j >= chunk.size() || !IsWordByte(chunk[j])) {
        AppendId(kHexToken, out);
        i = j;
        continue;
      }
    }
    size_t j = i;
    while (j < chunk.size() && (IsAsciiAlnum(chunk[j]) || IsHighByte(chunk[j]))) ++j;
    absl::string_view word = chunk.substr(i, j - i);
    bool all_digits = std::all_of(word.begin(), word.end(), [](char ch) {
      return absl::ascii_isdigit(static_cast<unsigned char>(ch));
    });
    bool all_hex = std::all_of(word.begin(), word.end(), IsHexDigit);
    bool has_digit = std::any_of(word.begin(), word.end(), [](char ch) {
      return absl::ascii_isdigit(static_cast<unsigned char>(ch));
    });
    size_t lead = 0;
    while (lead < word.size() && absl::ascii_isdigit(static_cast<unsigned char>(word[lead])))
      ++lead;
    if (lead > 0 && lead < word.size() && word.size() - lead <= 3 &&
        std::all_of(word.begin() + lead, word.end(),
                    [](char ch) { return absl::ascii_isalpha(static_cast<unsigned char>(ch)); })) {
      // A number with a short unit glued to it: 250ms, 5GB, 3rd.
      out.append(kNumberToken.data(), kNumberToken.size());
      i = j;
      continue;
    }
    if (all_digits) {
      // Extend over separators between digit groups: 3.14, 1.2.3, 2024-01-05, 12:30:00, 1,000.
      while (j + 1 < chunk.size() && std::strchr(".:-/,", chunk[j]) != nullptr &&
             absl::ascii_isdigit(static_cast<unsigned char>(chunk[j + 1]))) {
        ++j;
        while (j < chunk.size() && absl::ascii_isdigit(static_cast<unsigned char>(chunk[j]))) ++j;
      }
      // A unit glued to the number (10ms, 5gb) is dropped with it only when short.
      size_t k = j;
      while (k < chunk.size() && absl::ascii_isalpha(static_cast<unsigned char>(chunk[k]))) ++k;
      if (k - j <= 3 && (k >= chunk.size() || !IsWordByte(chunk[k]))) j = k;
      out.append(kNumberToken.data(), kNumberToken.size());
      i = j;
      continue;
    }
    if (all_hex && has_digit && word.size() >= 8) {
      AppendId(kHexToken, out);
      i = j;
      continue;
    }
    // Long mixed ids (e.g. "req_8f3kq9x2la", base64-ish tokens): >= 12 chars, >= 3 digits.
    if (word.size() >= 12 && std::count_if(word.begin(), word.end(), [](char ch) {
                               return absl::ascii_isdigit(static_cast<unsigned char>(ch));
                             }) >= 3) {
      AppendId(kHexToken, out);
      i = j;
      continue;
    }
    out.append(word.data(), word.size());
    i = j;
  }
}

// Cuts `text` to at most `max_bytes` on a UTF-8 boundary.
absl::string_view CutUtf8(absl::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

}  // namespace

bool IsPlaceholder(absl::string_view token) {
  return token == kUrlToken || token == kEmailToken || token == kUuidToken || token == kHexToken ||
         token == kNumberToken || token == kPathToken;
}

std::string MaskText(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (!IsChunkByte(text[i])) {
      out.push_back(text[i]);
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && IsChunkByte(text[j])) ++j;
    absl::string_view chunk = text.substr(i, j - i);
    // Trailing sentence punctuation is not part of a URL, e-mail or path.
    size_t trimmed = chunk.size();
    while (trimmed > 0 && std::strchr(".:!?", chunk[trimmed - 1]) != nullptr) --trimmed;
    absl::string_view core = chunk.substr(0, trimmed);
    absl::string_view tail = chunk.substr(trimmed);
    if (LooksLikeUrl(core)) {
      out.append(kUrlToken.data(), kUrlToken.size());
      out.append(tail.data(), tail.size());
    } else if (LooksLikeEmail(core)) {
      out.append(kEmailToken.data(), kEmailToken.size());
      out.append(tail.data(), tail.size());
    } else if (LooksLikePath(core)) {
      out.append(kPathToken.data(), kPathToken.size());
      out.append(tail.data(), tail.size());
    } else {
      MaskWords(chunk, out);
    }
    i = j;
  }
  return out;
}

std::string PrepareText(const TraceText& trace, const PrepareOptions& options) {
  std::string out = MaskText(CutUtf8(trace.input, options.max_input_bytes));
  absl::string_view output = CutUtf8(trace.output, options.max_output_bytes);
  if (!output.empty()) {
    if (!out.empty()) out.append(" | ");
    out.append(MaskText(output));
  }
  size_t budget = options.max_comment_bytes;
  for (const std::string& comment : trace.comments) {
    if (budget == 0) break;
    absl::string_view cut = CutUtf8(comment, budget);
    if (cut.empty()) continue;
    budget -= cut.size();
    if (!out.empty()) out.append(" | ");
    out.append(MaskText(cut));
  }
  return out;
}

std::vector<std::string> Tokenize(absl::string_view text) {
  std::vector<std::string> tokens;
  std::string current;
  auto flush = [&] {
    // Underscores at the ends are id decoration ("ord_<hex>", "__init__"), not part of the word.
    size_t begin = current.find_first_not_of('_');
    if (begin != std::string::npos) {
      size_t end = current.find_last_not_of('_');
      if (begin > 0 || end + 1 < current.size()) current = current.substr(begin, end - begin + 1);
      tokens.push_back(std::move(current));
    }
    current.clear();
  };
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == '<') {
      size_t close = text.find('>', i);
      if (close != absl::string_view::npos && close - i <= 7 &&
          IsPlaceholder(text.substr(i, close - i + 1))) {
        flush();
        tokens.emplace_back(text.substr(i, close - i + 1));
        i = close + 1;
        continue;
      }
    }
    auto uc = static_cast<unsigned char>(c);
    if (uc == 0xE2 && i + 2 < text.size() && static_cast<unsigned char>(text[i + 1]) <= 0x81 &&
        static_cast<unsigned char>(text[i + 1]) >= 0x80) {
      // General punctuation block U+2000..U+207F: a right single quote inside a word is an
      // apostrophe (dropped); everything else separates words.
      bool apostrophe = static_cast<unsigned char>(text[i + 1]) == 0x80 &&
                        static_cast<unsigned char>(text[i + 2]) == 0x99;
      if (!(apostrophe && !current.empty())) flush();
      i += 3;
      continue;
    }
    if (uc == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0xA0 &&
        static_cast<unsigned char>(text[i + 1]) <= 0xBF) {
      // Latin-1 punctuation and symbols (nbsp, guillemets, ...).
      flush();
      i += 2;
      continue;
    }
    if (c == '\'' && !current.empty() && i + 1 < text.size() && IsWordByte(text[i + 1])) {
      ++i;
      continue;
    }
    if (IsWordByte(c)) {
      current.push_back(absl::ascii_tolower(uc));
    } else {
      flush();
    }
    ++i;
  }
  flush();
  return tokens;
}

bool IsStopWord(absl::string_view word) {
  static const auto* const kStopWords = new absl::flat_hash_set<absl::string_view>{
      "a",       "about",      "above",    "after",      "again",     "against", "all",
      "also",    "am",         "an",       "and",        "any",       "are",     "as",
      "at",      "be",         "because",  "been",       "before",    "being",   "below",
      "between", "both",       "but",      "by",         "can",       "could",   "did",
      "do",      "does",       "doing",    "dont",       "down",      "during",  "each",
      "etc",     "even",       "ever",     "every",      "few",       "for",     "from",
      "further", "get",        "got",      "had",        "has",       "have",    "having",
      "he",      "her",        "here",     "hers",       "herself",   "him",     "himself",
      "his",     "how",        "however",  "i",          "if",        "im",      "in",
      "into",    "is",         "it",       "its",        "itself",    "ive",     "just",
      "let",     "like",       "may",      "me",         "might",     "more",    "most",
      "much",    "must",       "my",       "myself",     "no",        "nor",     "not",
      "now",     "of",         "off",      "on",         "once",      "one",     "only",
      "or",      "other",      "our",      "ours",       "ourselves", "out",     "over",
      "own",     "please",     "same",     "shall",      "she",       "should",  "so",
      "some",    "such",       "than",     "that",       "the",       "their",   "theirs",
      "them",    "themselves", "then",     "there",      "these",     "they",    "this",
      "those",   "through",    "thus",     "to",         "too",       "under",   "until",
      "up",      "upon",       "us",       "use",        "used",      "using",   "very",
      "via",     "was",        "we",       "were",       "what",      "when",    "where",
      "whether", "which",      "while",    "who",        "whom",      "whose",   "why",
      "will",    "with",       "within",   "without",    "would",     "yet",     "you",
      "your",    "yours",      "yourself", "yourselves", "s",         "t",       "e",
      "g",       "ie",         "eg",       "cannot",     "cant",      "wont",    "didnt",
      "doesnt",  "isnt",       "arent",    "wasnt",      "werent",    "youre",   "thats",
      "theres",  "it's",       "many",     "well",       "still",     "either",  "neither",
      "another", "whatever"};
  return kStopWords->contains(word);
}

}  // namespace flywheel::clustering::engine
