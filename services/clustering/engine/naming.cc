#include "services/clustering/engine/naming.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "services/clustering/engine/text.h"

namespace flywheel::clustering::engine {
namespace {

bool IsContentWord(const std::string& token) {
  if (token.size() < 2 || IsStopWord(token) || IsPlaceholder(token)) return false;
  return !std::all_of(token.begin(), token.end(),
                      [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); });
}

// Interns strings to dense ids.
class Dictionary {
 public:
  int Id(const std::string& term) {
    auto [it, inserted] = ids_.try_emplace(term, static_cast<int>(terms_.size()));
    if (inserted) terms_.push_back(term);
    return it->second;
  }
  const std::string& Term(int id) const { return terms_[id]; }
  size_t size() const { return terms_.size(); }

 private:
  absl::flat_hash_map<std::string, int> ids_;
  std::vector<std::string> terms_;
};

struct ScoredTerm {
  int id;
  double score;
};

// Top `count` terms of one class by c-TF-IDF:
//   weight(t, c) = tf(t, c) / words(c) * log(1 + average_words_per_class / tf(t, all)).
// Terms must occur in at least `min_docs` documents of the class.
std::vector<ScoredTerm> TopTerms(const absl::flat_hash_map<int, std::pair<int, int>>& class_counts,
                                 const std::vector<int64_t>& total_tf, double class_words,
                                 double average_words, int min_docs, size_t count) {
  std::vector<ScoredTerm> scored;
  if (class_words <= 0) return scored;
  for (const auto& [id, tf_df] : class_counts) {
    if (tf_df.second < min_docs) continue;
    double score = (tf_df.first / class_words) *
                   std::log(1.0 + average_words / static_cast<double>(total_tf[id]));
    if (score > 0) scored.push_back({id, score});
  }
  std::sort(scored.begin(), scored.end(), [](const ScoredTerm& a, const ScoredTerm& b) {
    return a.score != b.score ? a.score > b.score : a.id < b.id;
  });
  if (scored.size() > count * 4) scored.resize(count * 4);
  return scored;
}

}  // namespace

std::vector<ThemeDescription> DescribeThemes(const std::vector<std::string>& texts,
                                             const std::vector<int>& labels, int k,
                                             const std::vector<Vector>& points,
                                             const std::vector<Vector>& centroids, int keywords,
                                             int examples) {
  std::vector<ThemeDescription> out(std::max(k, 0));
  if (k <= 0) return out;
  const size_t n = std::min(texts.size(), labels.size());

  // Keyword terms: content unigrams and bigrams of adjacent content words. Phrases: 2..4-grams
  // with content words at both ends and no placeholder inside.
  Dictionary terms;
  Dictionary phrases;
  std::vector<absl::flat_hash_map<int, std::pair<int, int>>> term_counts(k);    // tf, df
  std::vector<absl::flat_hash_map<int, std::pair<int, int>>> phrase_counts(k);  // tf, df
  std::vector<int64_t> term_total;
  std::vector<int64_t> phrase_total;
  std::vector<double> class_words(k, 0.0);
  std::vector<int> class_docs(k, 0);
  // Background (label -1 or out of range) contributes to the global frequencies only.
  for (size_t i = 0; i < n; ++i) {
    int label = labels[i];
    bool in_class = label >= 0 && label < k;
    std::vector<std::string> tokens = Tokenize(texts[i]);
    absl::flat_hash_set<int> seen_terms;
    absl::flat_hash_set<int> seen_phrases;
    auto add_term = [&](const std::string& term) {
      int id = terms.Id(term);
      if (static_cast<size_t>(id) >= term_total.size()) term_total.resize(id + 1, 0);
      ++term_total[id];
      if (!in_class) return;
      auto& entry = term_counts[label][id];
      ++entry.first;
      if (seen_terms.insert(id).second) ++entry.second;
    };
    const std::string* previous_content = nullptr;
    for (size_t t = 0; t < tokens.size(); ++t) {
      const std::string& token = tokens[t];
      if (IsPlaceholder(token)) {
        previous_content = nullptr;
        continue;
      }
      if (!IsContentWord(token)) continue;
      if (in_class) class_words[label] += 1;
      add_term(token);
      if (previous_content != nullptr && previous_content == &tokens[t - 1]) {
        add_term(*previous_content + " " + token);
      }
      previous_content = &token;
      // Phrases ending at t.
      for (size_t len = 2; len <= 4 && len <= t + 1; ++len) {
        size_t start = t + 1 - len;
        if (!IsContentWord(tokens[start])) continue;
        bool ok = true;
        for (size_t j = start; j <= t; ++j) ok = ok && !IsPlaceholder(tokens[j]);
        if (!ok) continue;
        std::string phrase = tokens[start];
        for (size_t j = start + 1; j <= t; ++j) {
          phrase.push_back(' ');
          phrase.append(tokens[j]);
        }
        int id = phrases.Id(phrase);
        if (static_cast<size_t>(id) >= phrase_total.size()) phrase_total.resize(id + 1, 0);
        ++phrase_total[id];
        if (!in_class) continue;
        auto& entry = phrase_counts[label][id];
        ++entry.first;
        if (seen_phrases.insert(id).second) ++entry.second;
      }
    }
    if (in_class) ++class_docs[label];
  }
  double average_words =
      std::accumulate(class_words.begin(), class_words.end(), 0.0) / std::max(k, 1);

  for (int c = 0; c < k; ++c) {
    ThemeDescription& theme = out[c];
    int min_docs = class_docs[c] >= 4 ? 2 : 1;
    std::vector<ScoredTerm> top =
        TopTerms(term_counts[c], term_total, class_words[c], average_words, min_docs, keywords);
    // A bigram makes its unigrams redundant when it scores close to them, and vice versa keep
    // the list diverse: skip a term whose words all already appear in the chosen terms.
    absl::flat_hash_set<std::string> covered;
    for (const ScoredTerm& term : top) {
      if (static_cast<int>(theme.keywords.size()) >= keywords) break;
      const std::string& text = terms.Term(term.id);
      size_t space = text.find(' ');
      if (space != std::string::npos) {
        if (covered.contains(text.substr(0, space)) && covered.contains(text.substr(space + 1))) {
          continue;
        }
        covered.insert(text.substr(0, space));
        covered.insert(text.substr(space + 1));
      } else {
        if (covered.contains(text)) continue;
        covered.insert(text);
      }
      theme.keywords.emplace_back(text, term.score);
    }
    std::vector<ScoredTerm> top_phrases = TopTerms(phrase_counts[c], phrase_total, class_words[c],
                                                   average_words, class_docs[c] >= 2 ? 2 : 1, 5);
    for (const ScoredTerm& phrase : top_phrases) {
      if (theme.phrases.size() >= 5) break;
      const std::string& text = phrases.Term(phrase.id);
      bool redundant = false;
      for (const std::string& chosen : theme.phrases) {
        if (chosen.find(text) != std::string::npos || text.find(chosen) != std::string::npos) {
          redundant = true;
        }
      }
      if (!redundant) theme.phrases.push_back(text);
    }
    std::vector<std::string> name_parts;
    for (size_t i = 0; i < theme.keywords.size() && i < 3; ++i) {
      name_parts.push_back(theme.keywords[i].first);
    }
    theme.name = absl::StrJoin(name_parts, " / ");
  }

  // Representatives: members nearest their centroid.
  if (!points.empty() && examples > 0) {
    std::vector<std::vector<std::pair<float, int>>> members(k);
    for (size_t i = 0; i < n && i < points.size(); ++i) {
      int label = labels[i];
      if (label < 0 || label >= k || static_cast<size_t>(label) >= centroids.size()) continue;
      members[label].emplace_back(Dot(points[i], centroids[label]), static_cast<int>(i));
    }
    for (int c = 0; c < k; ++c) {
      auto& m = members[c];
      size_t keep = std::min(m.size(), static_cast<size_t>(examples));
      std::partial_sort(m.begin(), m.begin() + keep, m.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
      });
      for (size_t i = 0; i < keep; ++i) out[c].representatives.push_back(m[i].second);
    }
  }
  return out;
}

}  // namespace flywheel::clustering::engine
