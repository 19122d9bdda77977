#include "services/clustering/engine/kmeans.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <tuple>

#include "Eigen/Dense"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "services/clustering/engine/random.h"

namespace flywheel::clustering::engine {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr int kBlockRows = 4096;

struct Run {
  RowMatrix centroids;
  std::vector<int> labels;
  std::vector<float> similarity;
  double objective = -std::numeric_limits<double>::infinity();  // sum of similarities
};

// Similarities of rows [begin, end) of `points` to every centroid.
RowMatrix BlockSimilarities(const RowMatrix& points, const RowMatrix& centroids, int begin,
                            int end) {
  return points.middleRows(begin, end - begin) * centroids.transpose();
}

// Greedy k-means++ seeding with cosine distance (1 - similarity, proportional to the squared
// Euclidean distance between unit vectors): each step samples 2 + ln(k) candidates by D^2 and
// keeps the one that lowers the potential most.
// `initial` rows (at most k) are kept as the first centroids.
RowMatrix SeedPlusPlus(const RowMatrix& points, int k, Rng& rng,
                       const RowMatrix* initial = nullptr) {
  const int n = static_cast<int>(points.rows());
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  RowMatrix centroids(k, points.cols());
  int given = initial != nullptr ? std::min(k, static_cast<int>(initial->rows())) : 0;
  Eigen::VectorXf distance;
  if (given > 0) {
    centroids.topRows(given) = initial->topRows(given);
    RowMatrix sims = points * centroids.topRows(given).transpose();
    distance = (1.0f - sims.rowwise().maxCoeff().array()).max(0.0f);
  } else {
    int first = static_cast<int>(rng.Uniform(n));
    centroids.row(0) = points.row(first);
    distance = (1.0f - (points * points.row(first).transpose()).array()).max(0.0f);
    given = 1;
  }
  std::vector<int> candidates(trials);
  for (int c = given; c < k; ++c) {
    double total = distance.cast<double>().sum();
    for (int t = 0; t < trials; ++t) {
      int chosen = n - 1;
      if (total <= 0) {
        chosen = static_cast<int>(rng.Uniform(n));
      } else {
        double target = rng.UniformDouble() * total;
        double running = 0;
        for (int i = 0; i < n; ++i) {
          running += distance(i);
          if (running > target) {
            chosen = i;
            break;
          }
        }
      }
      candidates[t] = chosen;
    }
    RowMatrix candidate_rows(trials, points.cols());
    for (int t = 0; t < trials; ++t) candidate_rows.row(t) = points.row(candidates[t]);
    RowMatrix sims = points * candidate_rows.transpose();  // n x trials
    int best = 0;
    double best_potential = std::numeric_limits<double>::infinity();
    Eigen::VectorXf best_distance;
    for (int t = 0; t < trials; ++t) {
      Eigen::VectorXf d = distance.cwiseMin((1.0f - sims.col(t).array()).max(0.0f).matrix());
      double potential = d.cast<double>().sum();
      if (potential < best_potential) {
        best_potential = potential;
        best = t;
        best_distance = std::move(d);
      }
    }
    centroids.row(c) = candidate_rows.row(best);
    distance = std::move(best_distance);
  }
  return centroids;
}

// Assigns every point to its most similar centroid; returns the objective.
double Assign(const RowMatrix& points, const RowMatrix& centroids, std::vector<int>& labels,
              std::vector<float>& similarity) {
  const int n = static_cast<int>(points.rows());
  labels.resize(n);
  similarity.resize(n);
  double objective = 0;
  for (int begin = 0; begin < n; begin += kBlockRows) {
    int end = std::min(n, begin + kBlockRows);
    RowMatrix sims = BlockSimilarities(points, centroids, begin, end);
    for (int i = begin; i < end; ++i) {
      Eigen::Index best;
      float s = sims.row(i - begin).maxCoeff(&best);
      labels[i] = static_cast<int>(best);
      similarity[i] = s;
      objective += s;
    }
  }
  return objective;
}

// Lloyd iterations of spherical k-means from the given centroids.
Run Lloyd(const RowMatrix& points, RowMatrix centroids, int max_iterations) {
  const int n = static_cast<int>(points.rows());
  const int k = static_cast<int>(centroids.rows());
  Run run;
  std::vector<int> previous;
  for (int iteration = 0; iteration < std::max(1, max_iterations); ++iteration) {
    run.objective = Assign(points, centroids, run.labels, run.similarity);
    if (run.labels == previous) break;
    previous = run.labels;
    RowMatrix sums = RowMatrix::Zero(k, points.cols());
    std::vector<int> sizes(k, 0);
    for (int i = 0; i < n; ++i) {
      sums.row(run.labels[i]) += points.row(i);
      ++sizes[run.labels[i]];
    }
    // Empty clusters take the points farthest from their centroids (deterministic order).
    std::vector<int> order;
    for (int c = 0; c < k; ++c) {
      if (sizes[c] > 0) continue;
      if (order.empty()) {
        order.resize(n);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int a, int b) { return run.similarity[a] < run.similarity[b]; });
      }
      for (int i : order) {
        if (sizes[run.labels[i]] <= 1) continue;
        sums.row(run.labels[i]) -= points.row(i);
        --sizes[run.labels[i]];
        run.labels[i] = c;
        run.similarity[i] = 1;
        sums.row(c) = points.row(i);
        sizes[c] = 1;
        break;
      }
    }
    for (int c = 0; c < k; ++c) {
      float norm = sums.row(c).norm();
      if (norm > 0) centroids.row(c) = sums.row(c) / norm;
    }
  }
  run.objective = Assign(points, centroids, run.labels, run.similarity);
  run.centroids = std::move(centroids);
  return run;
}

// Seeded sample of `size` distinct row indexes of [0, n), sorted.
std::vector<int> SampleRows(int n, int size, Rng& rng) {
  std::vector<int> all(n);
  std::iota(all.begin(), all.end(), 0);
  if (size >= n) return all;
  for (int i = 0; i < size; ++i) {
    int j = i + static_cast<int>(rng.Uniform(n - i));
    std::swap(all[i], all[j]);
  }
  all.resize(size);
  std::sort(all.begin(), all.end());
  return all;
}

RowMatrix Rows(const RowMatrix& points, const std::vector<int>& rows) {
  RowMatrix out(rows.size(), points.cols());
  for (size_t i = 0; i < rows.size(); ++i) out.row(i) = points.row(rows[i]);
  return out;
}

// Best of `restarts` k-means++ runs on (a sample of) the points, refined on all points.
Run KMeans(const RowMatrix& points, int k, const KMeansOptions& options, Rng& rng) {
  const int n = static_cast<int>(points.rows());
  bool sampled = n > options.restart_sample;
  RowMatrix sample;
  if (sampled) sample = Rows(points, SampleRows(n, options.restart_sample, rng));
  const RowMatrix& fit_on = sampled ? sample : points;
  // Warm start from the usable initial centroids.
  RowMatrix initial(0, points.cols());
  for (const Vector& c : options.initial_centroids) {
    if (static_cast<int>(c.size()) != points.cols() || initial.rows() >= k) continue;
    Eigen::RowVectorXf row = Eigen::Map<const Eigen::RowVectorXf>(c.data(), c.size());
    float norm = row.norm();
    if (norm <= 0) continue;
    initial.conservativeResize(initial.rows() + 1, Eigen::NoChange);
    initial.row(initial.rows() - 1) = row / norm;
  }
  Run warm;
  bool has_warm = initial.rows() > 0;
  if (has_warm)
    warm = Lloyd(fit_on, SeedPlusPlus(fit_on, k, rng, &initial), options.max_iterations);
  Run best;
  for (int r = has_warm ? 1 : 0; r < std::max(1, options.restarts); ++r) {
    Run run = Lloyd(fit_on, SeedPlusPlus(fit_on, k, rng), options.max_iterations);
    if (run.objective > best.objective) best = std::move(run);
  }
  if (has_warm && (!std::isfinite(best.objective) ||
                   warm.objective >=
                       best.objective - options.warm_start_tolerance * std::abs(best.objective))) {
    best = std::move(warm);
  }
  if (sampled) best = Lloyd(points, std::move(best.centroids), options.max_iterations);
  return best;
}

// Mean silhouette from a Gram matrix of unit vectors (cosine distance 1 - similarity).
double SilhouetteFromGram(const RowMatrix& gram, const std::vector<int>& labels, int k) {
  const int n = static_cast<int>(labels.size());
  std::vector<int> sizes(k, 0);
  for (int label : labels) {
    if (label >= 0) ++sizes[label];
  }
  std::vector<double> sums(k);
  double total = 0;
  int counted = 0;
  for (int i = 0; i < n; ++i) {
    if (labels[i] < 0) continue;
    ++counted;
    if (sizes[labels[i]] <= 1) continue;  // singleton: silhouette 0
    std::fill(sums.begin(), sums.end(), 0.0);
    const float* row = gram.data() + static_cast<size_t>(i) * n;
    for (int j = 0; j < n; ++j) {
      if (labels[j] >= 0) sums[labels[j]] += row[j];
    }
    int own = labels[i];
    double a = 1.0 - (sums[own] - row[i]) / (sizes[own] - 1);
    double b = std::numeric_limits<double>::infinity();
    for (int c = 0; c < k; ++c) {
      if (c == own || sizes[c] == 0) continue;
      b = std::min(b, 1.0 - sums[c] / sizes[c]);
    }
    if (!std::isfinite(b)) continue;
    double denominator = std::max(a, b);
    if (denominator > 0) total += (b - a) / denominator;
  }
  return counted > 0 ? total / counted : 0.0;
}

}  // namespace

double Silhouette(const std::vector<Vector>& points, const std::vector<int>& labels) {
  if (points.empty()) return 0;
  const int n = static_cast<int>(points.size());
  const int d = static_cast<int>(points[0].size());
  RowMatrix m(n, d);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) m(i, j) = j < static_cast<int>(points[i].size()) ? points[i][j] : 0;
  }
  int k = 0;
  for (int label : labels) k = std::max(k, label + 1);
  RowMatrix gram = m * m.transpose();
  return SilhouetteFromGram(gram, labels, k);
}

absl::StatusOr<ClusterResult> ClusterVectors(const std::vector<Vector>& points,
                                             const KMeansOptions& options) {
  if (points.empty()) return absl::InvalidArgumentError("no points to cluster");
  const size_t d = points[0].size();
  if (d == 0) return absl::InvalidArgumentError("points have dimension 0");
  if (options.k < 0 || options.min_k < 1 || options.max_k < options.min_k ||
      options.max_iterations < 1 || options.restarts < 1 || options.selection_sample < 10 ||
      options.restart_sample < 10) {
    return absl::InvalidArgumentError("k-means options out of range");
  }
  // Zero vectors (empty texts) are left unassigned.
  std::vector<int> valid;
  for (size_t i = 0; i < points.size(); ++i) {
    if (points[i].size() != d) {
      return absl::InvalidArgumentError(
          absl::StrCat("point ", i, " has dimension ", points[i].size(), ", expected ", d));
    }
    bool nonzero = std::any_of(points[i].begin(), points[i].end(), [](float x) { return x != 0; });
    if (nonzero) valid.push_back(static_cast<int>(i));
  }
  const int n = static_cast<int>(valid.size());
  RowMatrix matrix(n, d);
  for (int i = 0; i < n; ++i) {
    matrix.row(i) = Eigen::Map<const Eigen::RowVectorXf>(points[valid[i]].data(), d);
    float norm = matrix.row(i).norm();
    matrix.row(i) /= norm;
  }
  Rng rng(options.seed);
  int k = options.k;
  double silhouette = 0;
  if (k == 0) {
    RowMatrix sample = Rows(matrix, SampleRows(n, options.selection_sample, rng));
    const int m = static_cast<int>(sample.rows());
    const int max_k = std::min(options.max_k, m - 1);
    if (max_k < options.min_k) {
      return absl::InvalidArgumentError(
          absl::StrCat("too few non-empty points (", n, ") to choose k >= ", options.min_k));
    }
    RowMatrix gram = sample * sample.transpose();
    std::vector<double> scores(max_k + 1, -2.0);
    double best = -2;
    for (int candidate = options.min_k; candidate <= max_k; ++candidate) {
      Run run = KMeans(sample, candidate, options, rng);
      scores[candidate] = SilhouetteFromGram(gram, run.labels, candidate);
      best = std::max(best, scores[candidate]);
    }
    for (int candidate = options.min_k; candidate <= max_k; ++candidate) {
      if (scores[candidate] >= best - options.silhouette_tolerance) {
        k = candidate;
        break;
      }
    }
    int warm_k = 0;
    for (const Vector& c : options.initial_centroids) {
      if (c.size() == d && std::any_of(c.begin(), c.end(), [](float x) { return x != 0; })) {
        ++warm_k;
      }
    }
    if (warm_k >= options.min_k && warm_k <= max_k &&
        scores[warm_k] >= best - options.warm_k_margin) {
      k = warm_k;
    }
    silhouette = scores[k];
  } else if (k > n) {
    return absl::InvalidArgumentError(
        absl::StrCat("k = ", k, " exceeds the number of non-empty points (", n, ")"));
  }
  Run run = KMeans(matrix, k, options, rng);
  if (options.k > 0) {
    // Fixed k: the silhouette of the final labels on a seeded sample.
    std::vector<int> rows = SampleRows(n, options.selection_sample, rng);
    RowMatrix sample = Rows(matrix, rows);
    RowMatrix gram = sample * sample.transpose();
    std::vector<int> sample_labels;
    sample_labels.reserve(rows.size());
    for (int row : rows) sample_labels.push_back(run.labels[row]);
    silhouette = SilhouetteFromGram(gram, sample_labels, k);
  }
  ClusterResult result;
  result.silhouette = silhouette;
  result.centroids.resize(k);
  for (int c = 0; c < k; ++c) {
    result.centroids[c].assign(run.centroids.row(c).data(), run.centroids.row(c).data() + d);
  }
  result.labels.assign(points.size(), -1);
  result.similarity.assign(points.size(), 0.0f);
  for (int i = 0; i < n; ++i) {
    result.labels[valid[i]] = run.labels[i];
    result.similarity[valid[i]] = run.similarity[i];
  }
  return result;
}

absl::StatusOr<Hierarchy> GroupThemes(const std::vector<Vector>& theme_centroids, int max_groups,
                                      uint64_t seed) {
  const int k = static_cast<int>(theme_centroids.size());
  if (k == 0) return absl::InvalidArgumentError("no themes to group");
  if (max_groups < 0) return absl::InvalidArgumentError("max_groups must be >= 0");
  int target = max_groups > 0 ? max_groups
                              : static_cast<int>(std::lround(std::sqrt(static_cast<double>(k))));
  target = std::clamp(target, 1, k);
  // Average linkage with Lance-Williams updates on the similarity matrix.
  std::vector<std::vector<double>> sim(k, std::vector<double>(k, 0.0));
  for (int a = 0; a < k; ++a) {
    for (int b = a + 1; b < k; ++b)
      sim[a][b] = sim[b][a] = Dot(theme_centroids[a], theme_centroids[b]);
  }
  std::vector<int> size(k, 1);
  std::vector<bool> alive(k, true);
  std::vector<int> cluster_of(k);
  std::iota(cluster_of.begin(), cluster_of.end(), 0);
  for (int clusters = k; clusters > target; --clusters) {
    int best_a = -1, best_b = -1;
    double best = -std::numeric_limits<double>::infinity();
    for (int a = 0; a < k; ++a) {
      if (!alive[a]) continue;
      for (int b = a + 1; b < k; ++b) {
        if (alive[b] && sim[a][b] > best) {
          best = sim[a][b];
          best_a = a;
          best_b = b;
        }
      }
    }
    for (int x = 0; x < k; ++x) {
      if (!alive[x] || x == best_a || x == best_b) continue;
      double merged = (size[best_a] * sim[best_a][x] + size[best_b] * sim[best_b][x]) /
                      (size[best_a] + size[best_b]);
      sim[best_a][x] = sim[x][best_a] = merged;
    }
    size[best_a] += size[best_b];
    alive[best_b] = false;
    for (int& c : cluster_of) {
      if (c == best_b) c = best_a;
    }
  }
  // Number groups by their smallest theme index.
  Hierarchy hierarchy;
  hierarchy.parent_of_theme.assign(k, -1);
  absl::flat_hash_map<int, int> group_of_root;
  std::vector<std::vector<int>> members;
  for (int t = 0; t < k; ++t) {
    auto [it, inserted] =
        group_of_root.try_emplace(cluster_of[t], static_cast<int>(members.size()));
    if (inserted) members.emplace_back();
    hierarchy.parent_of_theme[t] = it->second;
    members[it->second].push_back(t);
  }
  for (const std::vector<int>& group : members) {
    hierarchy.parent_centroids.push_back(MeanDirection(theme_centroids, group));
  }
  return hierarchy;
}

namespace {

// Greedy one-to-one matching on a score matrix: pairs by descending score (ties: lower previous
// then lower fresh index), never below the threshold.
std::vector<int> GreedyMatch(const std::vector<std::tuple<double, int, int>>& pairs, int fresh,
                             int previous, double threshold) {
  std::vector<std::tuple<double, int, int>> sorted;
  for (const auto& pair : pairs) {
    if (std::get<0>(pair) >= threshold) sorted.push_back(pair);
  }
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    if (std::get<0>(a) != std::get<0>(b)) return std::get<0>(a) > std::get<0>(b);
    if (std::get<1>(a) != std::get<1>(b)) return std::get<1>(a) < std::get<1>(b);
    return std::get<2>(a) < std::get<2>(b);
  });
  std::vector<int> match(fresh, -1);
  std::vector<bool> used(previous, false);
  for (const auto& [score, p, f] : sorted) {
    if (used[p] || match[f] >= 0) continue;
    used[p] = true;
    match[f] = p;
  }
  return match;
}

}  // namespace

std::vector<int> MatchCentroids(const std::vector<Vector>& previous,
                                const std::vector<Vector>& fresh, double min_similarity) {
  std::vector<std::tuple<double, int, int>> pairs;
  for (size_t p = 0; p < previous.size(); ++p) {
    if (previous[p].empty()) continue;
    for (size_t f = 0; f < fresh.size(); ++f) {
      if (fresh[f].empty()) continue;
      pairs.emplace_back(Dot(previous[p], fresh[f]), static_cast<int>(p), static_cast<int>(f));
    }
  }
  return GreedyMatch(pairs, static_cast<int>(fresh.size()), static_cast<int>(previous.size()),
                     min_similarity);
}

std::vector<Vector> PreviousCentroidsInNewSpace(const std::vector<Vector>& new_space_points,
                                                const std::vector<int>& previous_labels,
                                                int previous_theme_count) {
  std::vector<std::vector<int>> members(std::max(previous_theme_count, 0));
  size_t n = std::min(new_space_points.size(), previous_labels.size());
  for (size_t i = 0; i < n; ++i) {
    int label = previous_labels[i];
    if (label >= 0 && label < previous_theme_count) members[label].push_back(static_cast<int>(i));
  }
  std::vector<Vector> centroids;
  centroids.reserve(members.size());
  for (const std::vector<int>& m : members) {
    Vector c = MeanDirection(new_space_points, m);
    bool zero = std::all_of(c.begin(), c.end(), [](float x) { return x == 0; });
    centroids.push_back(zero ? Vector{} : std::move(c));
  }
  return centroids;
}

std::vector<int> MatchThemesAcrossVersions(const std::vector<Vector>& new_space_points,
                                           const std::vector<int>& previous_labels,
                                           int previous_theme_count,
                                           const std::vector<Vector>& fresh_centroids,
                                           double min_similarity) {
  return MatchCentroids(
      PreviousCentroidsInNewSpace(new_space_points, previous_labels, previous_theme_count),
      fresh_centroids, min_similarity);
}

std::vector<int> MatchByMembers(const std::vector<int>& previous_labels,
                                const std::vector<int>& fresh_labels, int previous_theme_count,
                                int fresh_theme_count, double min_jaccard) {
  std::vector<int64_t> previous_size(std::max(previous_theme_count, 0), 0);
  std::vector<int64_t> fresh_size(std::max(fresh_theme_count, 0), 0);
  absl::flat_hash_map<std::pair<int, int>, int64_t> overlap;
  size_t n = std::min(previous_labels.size(), fresh_labels.size());
  for (size_t i = 0; i < n; ++i) {
    int p = previous_labels[i];
    int f = fresh_labels[i];
    if (p < 0 || f < 0 || p >= previous_theme_count || f >= fresh_theme_count) continue;
    ++previous_size[p];
    ++fresh_size[f];
    ++overlap[{p, f}];
  }
  std::vector<std::tuple<double, int, int>> pairs;
  for (const auto& [key, both] : overlap) {
    double jaccard = static_cast<double>(both) /
                     static_cast<double>(previous_size[key.first] + fresh_size[key.second] - both);
    pairs.emplace_back(jaccard, key.first, key.second);
  }
  return GreedyMatch(pairs, std::max(fresh_theme_count, 0), std::max(previous_theme_count, 0),
                     min_jaccard);
}

}  // namespace flywheel::clustering::engine
