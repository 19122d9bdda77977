#pragma once

// The in-memory state streaming assignment and similarity search need for one clustering: its
// fitted embedder (deserialized once) and its ACTIVE themes' centroids. Cached per project and
// clustering version, reloaded when the clustering's themes change (merge, split).

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "services/clustering/clustering_repository.h"
#include "services/clustering/engine/engine.h"

namespace flywheel::clustering {

struct ThemeIndex {
  int64_t version = 0;
  int64_t generation = 0;
  std::shared_ptr<const engine::BuiltinEmbedder> embedder;
  // ACTIVE themes of the clustering, parallel vectors.
  std::vector<std::string> theme_ids;
  std::vector<std::string> parent_ids;
  std::vector<engine::Vector> centroids;

  // The text a trace is embedded from (engine::PrepareText of input, output head, comments).
  static std::string TextOf(const TraceRecord& trace);
  engine::Vector Embed(absl::string_view prepared_text) const;
  // Nearest theme: assigned when its similarity reaches `threshold`.
  Assignment Assign(const std::string& trace_id, const engine::Vector& v, double threshold,
                    v1::AssignmentSource source) const;
};

class ThemeIndexCache {
 public:
  explicit ThemeIndexCache(ClusteringRepository* repository, size_t max_entries = 256)
      : repository_(repository), max_entries_(max_entries) {}

  // The index of `version` as of `generation`. NOT_FOUND when the clustering has no model.
  absl::StatusOr<std::shared_ptr<const ThemeIndex>> Get(const std::string& project, int64_t version,
                                                        int64_t generation);

 private:
  ClusteringRepository* const repository_;
  const size_t max_entries_;
  std::mutex mu_;
  std::map<std::pair<std::string, int64_t>, std::shared_ptr<const ThemeIndex>> entries_;
};

}  // namespace flywheel::clustering
