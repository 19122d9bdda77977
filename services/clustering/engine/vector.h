#pragma once

// Dense vectors and the nearest-centroid primitives (streaming assignment).

#include <cstdint>
#include <vector>

namespace flywheel::clustering::engine {

// An embedding: unit L2 length, or all zeros (empty text).
using Vector = std::vector<float>;

// Dot product over the common length (cosine similarity for unit vectors).
float Dot(const Vector& a, const Vector& b);
// Scales `v` to unit length in place; leaves an all-zero vector unchanged. Returns the old norm.
float NormalizeInPlace(Vector& v);

// Unit-length mean of points[indexes] (all points when `indexes` is empty is NOT implied: an
// empty `indexes` gives an empty Vector). Zero vectors count as nothing.
Vector MeanDirection(const std::vector<Vector>& points, const std::vector<int>& indexes);

struct Nearest {
  int index = -1;        // -1: no centroid, or the best similarity is below min_similarity
  float similarity = 0;  // similarity to the best centroid (reported even when index is -1)
};

// The most similar centroid, or index -1 when its similarity is below `min_similarity`.
// Linear scan: about 200 themes x 128 dims take a few microseconds.
Nearest NearestCentroid(const Vector& v, const std::vector<Vector>& centroids,
                        float min_similarity);

// The `k` most similar centroids, by similarity descending (ties: lower index first).
std::vector<Nearest> TopCentroids(const Vector& v, const std::vector<Vector>& centroids, int k);

}  // namespace flywheel::clustering::engine
