#include "services/evalset/novelty.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "absl/hash/hash.h"
#include "common/text/text.h"

namespace flywheel::evalset {
namespace {

constexpr uint32_t kBuckets = 1u << 18;

uint32_t Bucket(absl::string_view feature, char kind) {
  // The kind byte keeps a word and a trigram with the same letters apart. absl::Hash is seeded
  // per process; vectors never leave the process, so that is fine.
  return static_cast<uint32_t>(absl::HashOf(kind, feature) % kBuckets);
}

}  // namespace

SparseVector EmbedText(absl::string_view text) {
  const std::string normalized = text::Normalize(text);
  std::unordered_map<uint32_t, float> counts;
  size_t start = 0;
  while (start <= normalized.size()) {
    size_t end = normalized.find(' ', start);
    if (end == std::string::npos) end = normalized.size();
    if (end > start)
      counts[Bucket(absl::string_view(normalized).substr(start, end - start), 'w')] += 1;
    start = end + 1;
  }
  // Character trigrams over the normalized text with boundary spaces, so short words and typos
  // still share features.
  const std::string padded = " " + normalized + " ";
  for (size_t i = 0; i + 3 <= padded.size(); ++i) {
    counts[Bucket(absl::string_view(padded).substr(i, 3), 'c')] += 1;
  }
  SparseVector out;
  out.entries.reserve(counts.size());
  double norm = 0;
  for (auto& [bucket, count] : counts) {
    const float weight = 1.0f + std::log(count);  // sublinear: repeats matter less
    out.entries.emplace_back(bucket, weight);
    norm += static_cast<double>(weight) * weight;
  }
  if (normalized.empty()) out.entries.clear();
  std::sort(out.entries.begin(), out.entries.end());
  norm = std::sqrt(norm);
  if (norm > 0) {
    for (auto& entry : out.entries) entry.second = static_cast<float>(entry.second / norm);
  }
  return out;
}

double CosineSimilarity(const SparseVector& a, const SparseVector& b) {
  double dot = 0;
  size_t i = 0, j = 0;
  while (i < a.entries.size() && j < b.entries.size()) {
    if (a.entries[i].first == b.entries[j].first) {
      dot += static_cast<double>(a.entries[i].second) * b.entries[j].second;
      ++i;
      ++j;
    } else if (a.entries[i].first < b.entries[j].first) {
      ++i;
    } else {
      ++j;
    }
  }
  return std::clamp(dot, 0.0, 1.0);
}

std::shared_ptr<const CaseIndex> NoveltyCache::Get(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void NoveltyCache::Put(const std::string& key, std::shared_ptr<const CaseIndex> index) {
  std::lock_guard<std::mutex> lock(mu_);
  if (index->size() > max_cases_) return;
  if (auto it = by_key_.find(key); it != by_key_.end()) {
    cases_ -= it->second->second->size();
    lru_.erase(it->second);
    by_key_.erase(it);
  }
  cases_ += index->size();
  lru_.emplace_front(key, std::move(index));
  by_key_[key] = lru_.begin();
  while (cases_ > max_cases_ && !lru_.empty()) {
    cases_ -= lru_.back().second->size();
    by_key_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

}  // namespace flywheel::evalset
