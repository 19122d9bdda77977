#pragma once

// The clustering engine: text preparation, embedding, spherical k-means, theme hierarchy, stable
// theme ids and naming. Pure C++ (absl + Eigen): no gRPC, no SQL. The OpenAI-compatible HTTP
// clients live in a separate target (clustering_engine_http, header openai.h).
//
// Typical re-clustering (what the service does; see docs/clustering.md):
//   1. texts = PrepareText(trace) for each flagged trace of the window.
//   2. embedder = BuiltinEmbedder::Fit(texts, options)   (or a remote Embedder)
//      vectors  = embedder->Embed(texts)
//   3. result   = ClusterVectors(vectors, kmeans_options)          -> themes
//      groups   = GroupThemes(result.centroids, 0, seed)            -> parent groups
//   4. described = DescribeThemes(texts, result.labels, k, vectors, result.centroids)
//   5. stable ids: see "Stable ids across clusterings" below.
//   6. streaming: for each new flagged trace, NearestCentroid(embedder->EmbedOne(text),
//      centroids, assignment_similarity_threshold).
//
// Stable ids across clusterings (IMPORTANT): the builtin embedder is REFITTED at every
// re-clustering, so the vector spaces of two clustering versions differ and old centroids cannot
// be compared with new ones directly. To match themes, re-express the previous themes in the NEW
// space: embed the window with the new model, compute each previous theme's centroid from its
// members that are inside the window (PreviousCentroidsInNewSpace, i.e. MeanDirection per theme),
// WARM-START the new clustering from them (KMeansOptions::initial_centroids: this is what keeps
// themes, and automatic k, stable), then MatchCentroids(previous_in_new_space, fresh_centroids,
// 0.7). MatchThemesAcrossVersions does the matching in one call. Alternatively MatchByMembers
// matches on member-set Jaccard overlap (space-independent; the rule the API's
// id_stability_threshold describes). See docs/clustering.md, "Stable ids".

#include "services/clustering/engine/embedder.h"  // IWYU pragma: export
#include "services/clustering/engine/kmeans.h"    // IWYU pragma: export
#include "services/clustering/engine/naming.h"    // IWYU pragma: export
#include "services/clustering/engine/text.h"      // IWYU pragma: export
#include "services/clustering/engine/vector.h"    // IWYU pragma: export
