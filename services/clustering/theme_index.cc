#include "services/clustering/theme_index.h"

#include "common/status/status_macros.h"
#include "services/clustering/util.h"

namespace flywheel::clustering {

std::string ThemeIndex::TextOf(const TraceRecord& trace) {
  engine::TraceText text;
  text.input = trace.input_text;
  text.output = trace.output_head;
  text.comments = trace.comments;
  return engine::PrepareText(text);
}

engine::Vector ThemeIndex::Embed(absl::string_view prepared_text) const {
  return embedder->EmbedOne(prepared_text);
}

Assignment ThemeIndex::Assign(const std::string& trace_id, const engine::Vector& v,
                              double threshold, v1::AssignmentSource source) const {
  Assignment a;
  a.trace_id = trace_id;
  a.source = source;
  a.embedding = PackVector(v);
  std::vector<engine::Nearest> top = engine::TopCentroids(v, centroids, 1);
  if (!top.empty() && top[0].index >= 0) {
    a.similarity = top[0].similarity;
    a.nearest_cluster_id = theme_ids[top[0].index];
    if (top[0].similarity >= threshold) a.cluster_id = a.nearest_cluster_id;
  }
  return a;
}

absl::StatusOr<std::shared_ptr<const ThemeIndex>> ThemeIndexCache::Get(const std::string& project,
                                                                       int64_t version,
                                                                       int64_t generation) {
  const auto key = std::make_pair(project, version);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second->generation == generation) return it->second;
  }
  ASSIGN_OR_RETURN(std::optional<ModelRecord> model, repository_->GetModel(project, version));
  if (!model.has_value()) return absl::NotFoundError("the clustering has no embedder model");
  absl::StatusOr<std::unique_ptr<engine::BuiltinEmbedder>> embedder =
      engine::BuiltinEmbedder::Deserialize(model->model);
  if (!embedder.ok()) return absl::InternalError("stored embedder model is unreadable");
  ASSIGN_OR_RETURN(std::vector<ClusterRecord> rows, repository_->ListClusterRows(project, version));
  auto index = std::make_shared<ThemeIndex>();
  index->version = version;
  index->generation = generation;
  index->embedder = std::shared_ptr<const engine::BuiltinEmbedder>(std::move(*embedder));
  for (const ClusterRecord& row : rows) {
    if (row.level != v1::CLUSTER_LEVEL_THEME || row.state != v1::CLUSTER_STATE_ACTIVE) continue;
    index->theme_ids.push_back(row.cluster_id);
    index->parent_ids.push_back(row.parent_id);
    index->centroids.push_back(UnpackVector(row.centroid));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (entries_.size() >= max_entries_) entries_.clear();
  entries_[key] = index;
  return std::shared_ptr<const ThemeIndex>(index);
}

}  // namespace flywheel::clustering
