#pragma once

// Text embeddings for FindNearestCases: hashed word unigrams and character trigrams of the
// normalized text, log-scaled term frequencies, L2-normalized. Built in and offline (no model
// weights); a case's vector depends only on its input text, so the vectors of a set version
// (an immutable snapshot) are cached and reused until the set changes.

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace flywheel::evalset {

inline constexpr char kEmbedderName[] = "builtin-hash-ngram-v1";

// Sorted by bucket; values L2-normalized.
struct SparseVector {
  std::vector<std::pair<uint32_t, float>> entries;
};

SparseVector EmbedText(absl::string_view text);
// In [0, 1]; 0 when either vector is empty.
double CosineSimilarity(const SparseVector& a, const SparseVector& b);

struct IndexedCase {
  std::string case_id;
  std::string theme_id;
  std::string theme_name;
  std::string input_snippet;
  SparseVector vector;
};

using CaseIndex = std::vector<IndexedCase>;

// LRU cache of embedded snapshots keyed by (project, set, version), bounded by total cases.
class NoveltyCache {
 public:
  explicit NoveltyCache(size_t max_cases) : max_cases_(max_cases) {}
  std::shared_ptr<const CaseIndex> Get(const std::string& key);
  void Put(const std::string& key, std::shared_ptr<const CaseIndex> index);

 private:
  const size_t max_cases_;
  std::mutex mu_;
  size_t cases_ = 0;
  std::list<std::pair<std::string, std::shared_ptr<const CaseIndex>>> lru_;
  std::map<std::string, decltype(lru_)::iterator> by_key_;
};

}  // namespace flywheel::evalset
