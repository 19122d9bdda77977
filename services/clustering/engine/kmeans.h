#pragma once

// Spherical k-means with automatic k, the two-level hierarchy, and stable-id matching.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "services/clustering/engine/vector.h"

namespace flywheel::clustering::engine {

struct KMeansOptions {
  int k = 0;  // 0: choose automatically in [min_k, max_k] by mean silhouette on a sample
  int min_k = 2;
  int max_k = 40;
  int max_iterations = 50;
  int restarts = 5;  // k-means++ seedings; the best objective wins
  uint64_t seed = 1;
  // Sample size for automatic k (silhouette) and for the restarts on large inputs; the winner is
  // then refined with Lloyd iterations over all points.
  int selection_sample = 2500;
  int restart_sample = 20000;
  // Warm start for stable themes across re-clusterings: typically the previous clustering's
  // themes re-expressed in the new space (PreviousCentroidsInNewSpace). One restart starts from
  // them (empty vectors skipped; the first k used; missing ones added by k-means++), and its result
  // is kept unless another restart's objective is better by more than warm_start_tolerance
  // (relative). Theme i of the result then usually continues initial_centroids[i].
  std::vector<Vector> initial_centroids;
  double warm_start_tolerance = 0.01;
  // Automatic k: the smallest k whose silhouette is within silhouette_tolerance of the best
  // (parsimony: fewer, broader themes when the data does not clearly ask for more). With a warm
  // start, the previous number of themes is kept when its silhouette is within warm_k_margin of
  // the best (stable k across re-clusterings).
  double silhouette_tolerance = 0.01;
  double warm_k_margin = 0.03;
};

struct ClusterResult {
  std::vector<Vector> centroids;  // unit vectors, one per theme
  std::vector<int> labels;        // per point: theme index in [0, k); -1 for zero vectors
  std::vector<float> similarity;  // per point: cosine to its own centroid
  // Mean silhouette on a sample of selection_sample points: of the chosen k's clustering of that
  // sample (automatic k) or of the final labels (fixed k).
  double silhouette = 0;
};

// INVALID_ARGUMENT when there are fewer points than k (or than min_k for automatic k), points of
// different dimensions, or options out of range. Deterministic for a given seed.
absl::StatusOr<ClusterResult> ClusterVectors(const std::vector<Vector>& points,
                                             const KMeansOptions& options);

// Mean silhouette (cosine distance) of a labelling; points with label -1 are skipped.
double Silhouette(const std::vector<Vector>& points, const std::vector<int>& labels);

struct Hierarchy {
  std::vector<int> parent_of_theme;      // per theme: index into parent_centroids
  std::vector<Vector> parent_centroids;  // unit mean of the group's theme centroids
};

// Agglomerative (average linkage, cosine) grouping of theme centroids into `max_groups` groups
// (0: about sqrt(k), at least 1). Deterministic; `seed` is reserved for tie-breaking.
absl::StatusOr<Hierarchy> GroupThemes(const std::vector<Vector>& theme_centroids, int max_groups,
                                      uint64_t seed);

// Stable ids: for each fresh centroid the index of its matched previous centroid, or -1.
// Greedy by descending similarity, one-to-one, never below min_similarity.
std::vector<int> MatchCentroids(const std::vector<Vector>& previous,
                                const std::vector<Vector>& fresh, double min_similarity = 0.7);

// Previous themes re-expressed in a new vector space: for previous theme t, the MeanDirection of
// new_space_points[i] over the points with previous_labels[i] == t (label -1: not a member of a
// previous theme, e.g. a trace that was not in the previous window). A theme with no member in
// the window gets an empty Vector (never matched).
std::vector<Vector> PreviousCentroidsInNewSpace(const std::vector<Vector>& new_space_points,
                                                const std::vector<int>& previous_labels,
                                                int previous_theme_count);

// The whole stable-id step in the new space: PreviousCentroidsInNewSpace + MatchCentroids.
// Returns, per fresh theme, the previous theme index it inherits, or -1 (new id).
std::vector<int> MatchThemesAcrossVersions(const std::vector<Vector>& new_space_points,
                                           const std::vector<int>& previous_labels,
                                           int previous_theme_count,
                                           const std::vector<Vector>& fresh_centroids,
                                           double min_similarity = 0.7);

// Space-independent matching on member sets: score = Jaccard overlap of previous theme a's and
// fresh theme b's members among points labelled in both (label -1 in either: ignored). Greedy by
// descending score, one-to-one, never below min_jaccard. Per fresh theme: previous index or -1.
std::vector<int> MatchByMembers(const std::vector<int>& previous_labels,
                                const std::vector<int>& fresh_labels, int previous_theme_count,
                                int fresh_theme_count, double min_jaccard = 0.7);

}  // namespace flywheel::clustering::engine
