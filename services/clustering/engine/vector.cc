#include "services/clustering/engine/vector.h"

#include <algorithm>
#include <cmath>

namespace flywheel::clustering::engine {

float Dot(const Vector& a, const Vector& b) {
  size_t n = std::min(a.size(), b.size());
  const float* x = a.data();
  const float* y = b.data();
  // Four accumulators: lets the compiler vectorize without -ffast-math.
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += x[i] * y[i];
    s1 += x[i + 1] * y[i + 1];
    s2 += x[i + 2] * y[i + 2];
    s3 += x[i + 3] * y[i + 3];
  }
  for (; i < n; ++i) s0 += x[i] * y[i];
  return (s0 + s1) + (s2 + s3);
}

float NormalizeInPlace(Vector& v) {
  double sum = 0;
  for (float x : v) sum += static_cast<double>(x) * x;
  double norm = std::sqrt(sum);
  if (norm > 0) {
    float inv = static_cast<float>(1.0 / norm);
    for (float& x : v) x *= inv;
  }
  return static_cast<float>(norm);
}

Vector MeanDirection(const std::vector<Vector>& points, const std::vector<int>& indexes) {
  if (indexes.empty()) return {};
  size_t dim = 0;
  for (int i : indexes) dim = std::max(dim, points[i].size());
  std::vector<double> sum(dim, 0.0);
  for (int i : indexes) {
    const Vector& p = points[i];
    for (size_t j = 0; j < p.size(); ++j) sum[j] += p[j];
  }
  Vector out(dim);
  for (size_t j = 0; j < dim; ++j) out[j] = static_cast<float>(sum[j]);
  NormalizeInPlace(out);
  return out;
}

Nearest NearestCentroid(const Vector& v, const std::vector<Vector>& centroids,
                        float min_similarity) {
  Nearest best;
  float best_similarity = -2;
  for (size_t c = 0; c < centroids.size(); ++c) {
    if (centroids[c].empty()) continue;
    float s = Dot(v, centroids[c]);
    if (s > best_similarity) {
      best_similarity = s;
      best.index = static_cast<int>(c);
    }
  }
  if (best.index < 0) return best;
  best.similarity = best_similarity;
  if (best_similarity < min_similarity) best.index = -1;
  return best;
}

std::vector<Nearest> TopCentroids(const Vector& v, const std::vector<Vector>& centroids, int k) {
  std::vector<Nearest> all;
  all.reserve(centroids.size());
  for (size_t c = 0; c < centroids.size(); ++c) {
    if (centroids[c].empty()) continue;
    all.push_back({static_cast<int>(c), Dot(v, centroids[c])});
  }
  size_t keep = std::min(all.size(), static_cast<size_t>(std::max(k, 0)));
  auto better = [](const Nearest& a, const Nearest& b) {
    return a.similarity != b.similarity ? a.similarity > b.similarity : a.index < b.index;
  };
  std::partial_sort(all.begin(), all.begin() + keep, all.end(), better);
  all.resize(keep);
  return all;
}

}  // namespace flywheel::clustering::engine
