// clustering_bench: speed, memory and id stability of the clustering engine on the synthetic
// failure-theme set (bench/clustering/run.sh drives it; figures go to docs/benchmarks.md).
//
//   clustering_bench [--count 100000] [--dimension 128] [--max_k 40] [--themes 200] [--seed 1]
//
// Phases: prepare texts, fit the builtin embedder, embed (one thread), streaming assignment
// latency (NearestCentroid over --themes centroids, and EmbedOne + NearestCentroid), a full
// re-clustering of --count traces (automatic k), and id stability across two re-clusterings of
// overlapping windows (each with its own refitted embedder).

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "bench/clustering/synthetic_failures.h"
#include "services/clustering/engine/engine.h"
#include "services/clustering/engine/random.h"

namespace engine = flywheel::clustering::engine;
namespace bench = flywheel::clustering::bench;

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU time of the calling thread: the machine is shared, so wall time is reported alongside.
double CpuNow() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double PeakRssMiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  size_t index = static_cast<size_t>(std::ceil(p * values.size())) - 1;
  index = std::min(index, values.size() - 1);
  std::nth_element(values.begin(), values.begin() + index, values.end());
  return values[index];
}

// Hungarian algorithm (minimization) on a square cost matrix; returns column of each row.
std::vector<int> Hungarian(const std::vector<std::vector<double>>& cost) {
  const int n = static_cast<int>(cost.size());
  std::vector<double> u(n + 1), v(n + 1);
  std::vector<int> p(n + 1), way(n + 1);
  for (int i = 1; i <= n; ++i) {
    p[0] = i;
    int j0 = 0;
    std::vector<double> minv(n + 1, 1e300);
    std::vector<bool> used(n + 1, false);
    do {
      used[j0] = true;
      int i0 = p[j0], j1 = 0;
      double delta = 1e300;
      for (int j = 1; j <= n; ++j) {
        if (used[j]) continue;
        double cur = cost[i0 - 1][j - 1] - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for (int j = 0; j <= n; ++j) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {
      int j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0);
  }
  std::vector<int> assignment(n, -1);
  for (int j = 1; j <= n; ++j) {
    if (p[j] > 0) assignment[p[j] - 1] = j - 1;
  }
  return assignment;
}

// Share of points whose theme is matched one-to-one (Hungarian) to their true label.
double MatchedAccuracy(const std::vector<int>& truth, const std::vector<int>& predicted) {
  int labels = 0, clusters = 0;
  for (int t : truth) labels = std::max(labels, t + 1);
  for (int p : predicted) clusters = std::max(clusters, p + 1);
  int n = std::max(labels, clusters);
  std::vector<std::vector<double>> counts(n, std::vector<double>(n, 0));
  for (size_t i = 0; i < truth.size(); ++i) {
    if (predicted[i] >= 0) counts[predicted[i]][truth[i]] += 1;
  }
  std::vector<std::vector<double>> cost(n, std::vector<double>(n));
  for (int a = 0; a < n; ++a) {
    for (int b = 0; b < n; ++b) cost[a][b] = -counts[a][b];
  }
  std::vector<int> match = Hungarian(cost);
  double correct = 0;
  for (int a = 0; a < n; ++a) correct += counts[a][match[a]];
  return correct / truth.size();
}

double Entropy(const std::map<int, double>& counts, double total) {
  double h = 0;
  for (const auto& [key, c] : counts) {
    if (c > 0) h -= (c / total) * std::log(c / total);
  }
  return h;
}

double VMeasure(const std::vector<int>& truth, const std::vector<int>& predicted) {
  std::map<int, double> ct, cp;
  std::map<std::pair<int, int>, double> joint;
  double n = static_cast<double>(truth.size());
  for (size_t i = 0; i < truth.size(); ++i) {
    ct[truth[i]] += 1;
    cp[predicted[i]] += 1;
    joint[{truth[i], predicted[i]}] += 1;
  }
  double h_c = Entropy(ct, n), h_k = Entropy(cp, n);
  double h_c_given_k = 0, h_k_given_c = 0;
  for (const auto& [key, c] : joint) {
    h_c_given_k -= (c / n) * std::log(c / cp[key.second]);
    h_k_given_c -= (c / n) * std::log(c / ct[key.first]);
  }
  double homogeneity = h_c > 0 ? 1 - h_c_given_k / h_c : 1;
  double completeness = h_k > 0 ? 1 - h_k_given_c / h_k : 1;
  return homogeneity + completeness > 0
             ? 2 * homogeneity * completeness / (homogeneity + completeness)
             : 0;
}

struct Clustering {
  std::unique_ptr<engine::BuiltinEmbedder> embedder;
  std::vector<engine::Vector> vectors;
  engine::ClusterResult result;
};

Clustering Recluster(const std::vector<std::string>& texts,
                     const engine::BuiltinEmbedderOptions& eo, const engine::KMeansOptions& ko) {
  Clustering c;
  c.embedder = std::move(engine::BuiltinEmbedder::Fit(texts, eo)).value();
  c.vectors = std::move(c.embedder->Embed(texts)).value();
  c.result = std::move(engine::ClusterVectors(c.vectors, ko)).value();
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  int count = 100000, dimension = 128, max_k = 40, themes = 200;
  uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    int value = 0;
    if (!absl::SimpleAtoi(argv[i + 1], &value)) {
      std::fprintf(stderr, "bad value for %s\n", flag.c_str());
      return 2;
    }
    if (flag == "--count") {
      count = value;
    } else if (flag == "--dimension") {
      dimension = value;
    } else if (flag == "--max_k") {
      max_k = value;
    } else if (flag == "--themes") {
      themes = value;
    } else if (flag == "--seed") {
      seed = value;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  std::printf("clustering_bench: %d synthetic traces (%d true themes), dimension %d, max_k %d\n",
              count, bench::SyntheticThemeCount(), dimension, max_k);

  // --- Data ---------------------------------------------------------------------------------
  bench::SyntheticOptions so;
  so.count = count;
  so.seed = seed;
  so.late_themes_from = bench::SyntheticThemeCount() - 2;  // two themes emerge in the 2nd half
  std::vector<bench::SyntheticTrace> traces = bench::GenerateSyntheticTraces(so);
  auto start = Clock::now();
  std::vector<std::string> texts;
  std::vector<int> truth;
  texts.reserve(count);
  double total_chars = 0;
  for (const auto& t : traces) {
    texts.push_back(engine::PrepareText(t.text));
    truth.push_back(t.theme);
    total_chars += texts.back().size();
  }
  double prepare_s = Seconds(start);
  std::printf("prepare (mask + cap)     : %.2f s, %.0f texts/s, mean %.0f bytes/text\n", prepare_s,
              count / prepare_s, total_chars / count);

  // --- Embedding ----------------------------------------------------------------------------
  engine::BuiltinEmbedderOptions eo;
  eo.dimension = dimension;
  eo.seed = seed;
  start = Clock::now();
  double cpu = CpuNow();
  auto embedder = std::move(engine::BuiltinEmbedder::Fit(texts, eo)).value();
  double fit_s = Seconds(start);
  double fit_cpu = CpuNow() - cpu;
  std::printf(
      "fit embedder             : %.2f s wall, %.2f s CPU (sample of %d texts, %d features, model "
      "%.1f MiB)\n",
      fit_s, fit_cpu, std::min(count, eo.max_fit_documents), embedder->FeatureCount(),
      embedder->Serialize().size() / 1048576.0);
  start = Clock::now();
  cpu = CpuNow();
  std::vector<engine::Vector> vectors = std::move(embedder->Embed(texts)).value();
  double embed_s = Seconds(start);
  double embed_cpu = CpuNow() - cpu;
  std::printf(
      "embed (1 thread)         : %.2f s wall (%.0f texts/s), %.2f s CPU (%.0f texts/s per core)\n",
      embed_s, count / embed_s, embed_cpu, count / embed_cpu);
  // ~300-character texts: consecutive texts concatenated and cut at 300 bytes.
  std::vector<std::string> long_texts;
  for (size_t i = 0; i + 3 < texts.size() && long_texts.size() < 20000; i += 3) {
    std::string t = texts[i] + " " + texts[i + 1] + " " + texts[i + 2];
    long_texts.push_back(t.substr(0, 300));
  }
  cpu = CpuNow();
  for (const auto& t : long_texts) engine::Vector v = embedder->EmbedOne(t);
  double long_cpu = CpuNow() - cpu;
  std::printf("embed 300-byte texts     : %.0f texts/s per core (CPU time)\n",
              long_texts.size() / long_cpu);

  // --- Streaming assignment latency ---------------------------------------------------------
  {
    engine::Rng rng(seed);
    std::vector<engine::Vector> centroids;
    for (int c = 0; c < themes; ++c) centroids.push_back(vectors[rng.Uniform(vectors.size())]);
    std::vector<double> nearest_us, full_us, full_cpu_us;
    const int queries = std::min<int>(20000, count);
    float sink = 0;
    for (int q = 0; q < queries; ++q) {
      auto t0 = Clock::now();
      engine::Nearest n = engine::NearestCentroid(vectors[q], centroids, 0.3f);
      nearest_us.push_back(Seconds(t0) * 1e6);
      sink += n.similarity;
      auto t1 = Clock::now();
      double c1 = CpuNow();
      engine::Vector v = embedder->EmbedOne(texts[q]);
      engine::Nearest m = engine::NearestCentroid(v, centroids, 0.3f);
      full_us.push_back(Seconds(t1) * 1e6);
      full_cpu_us.push_back((CpuNow() - c1) * 1e6);
      sink += m.similarity;
    }
    std::printf("assign, nearest of %d    : p50 %.1f us, p99 %.1f us, max %.1f us\n", themes,
                Percentile(nearest_us, 0.5), Percentile(nearest_us, 0.99),
                *std::max_element(nearest_us.begin(), nearest_us.end()));
    std::printf("assign, embed + nearest  : p50 %.1f us, p99 %.1f us, max %.1f us (sink %.1f)\n",
                Percentile(full_us, 0.5), Percentile(full_us, 0.99),
                *std::max_element(full_us.begin(), full_us.end()), sink);
    std::printf(
        "assign, embed + nearest  : CPU time p50 %.1f us, p99 %.1f us (wall includes "
        "preemption on the shared machine)\n",
        Percentile(full_cpu_us, 0.5), Percentile(full_cpu_us, 0.99));
  }

  // --- Full re-clustering -------------------------------------------------------------------
  engine::KMeansOptions ko;
  ko.max_k = max_k;
  ko.seed = seed;
  start = Clock::now();
  cpu = CpuNow();
  engine::ClusterResult result = std::move(engine::ClusterVectors(vectors, ko)).value();
  double cluster_s = Seconds(start);
  double cluster_cpu = CpuNow() - cpu;
  start = Clock::now();
  cpu = CpuNow();
  engine::Hierarchy hierarchy = std::move(engine::GroupThemes(result.centroids, 0, seed)).value();
  double group_s = Seconds(start);
  double group_cpu = CpuNow() - cpu;
  start = Clock::now();
  cpu = CpuNow();
  int k = static_cast<int>(result.centroids.size());
  auto described = engine::DescribeThemes(texts, result.labels, k, vectors, result.centroids);
  double describe_s = Seconds(start);
  double describe_cpu = CpuNow() - cpu;
  std::printf(
      "cluster (automatic k)    : %.2f s wall, %.2f s CPU, k = %d (true %d), silhouette %.3f\n",
      cluster_s, cluster_cpu, k, bench::SyntheticThemeCount(), result.silhouette);
  std::printf("group themes             : %.3f s, %zu groups\n", group_s,
              hierarchy.parent_centroids.size());
  std::printf("describe themes          : %.2f s wall, %.2f s CPU\n", describe_s, describe_cpu);
  std::printf(
      "re-cluster total         : %.2f s wall, %.2f s CPU (fit + embed + cluster + group + "
      "describe)\n",
      fit_s + embed_s + cluster_s + group_s + describe_s,
      fit_cpu + embed_cpu + cluster_cpu + group_cpu + describe_cpu);
  std::printf("quality vs truth         : matched accuracy %.3f, V-measure %.3f\n",
              MatchedAccuracy(truth, result.labels), VMeasure(truth, result.labels));
  {
    // Similarity distribution: members to their own centroid, and to the next-nearest theme.
    std::vector<double> own, second;
    for (size_t i = 0; i < vectors.size(); i += std::max<size_t>(1, vectors.size() / 5000)) {
      if (result.labels[i] < 0) continue;
      own.push_back(result.similarity[i]);
      auto top = engine::TopCentroids(vectors[i], result.centroids, 2);
      if (top.size() == 2) second.push_back(top[1].similarity);
    }
    double below = std::count_if(own.begin(), own.end(), [](double x) { return x < 0.3; });
    std::printf(
        "similarity to own theme  : p10 %.2f, p50 %.2f, p90 %.2f (%.1f%% below 0.3); "
        "to next theme p50 %.2f, p90 %.2f\n",
        Percentile(own, 0.1), Percentile(own, 0.5), Percentile(own, 0.9),
        100.0 * below / std::max<size_t>(1, own.size()), Percentile(second, 0.5),
        Percentile(second, 0.9));
  }
  for (int c = 0; c < std::min(k, 5); ++c) {
    std::printf("  theme %d: %s\n", c, described[c].name.c_str());
  }
  {
    engine::KMeansOptions fixed = ko;
    fixed.k = bench::SyntheticThemeCount();
    cpu = CpuNow();
    engine::ClusterResult at_true_k = std::move(engine::ClusterVectors(vectors, fixed)).value();
    std::printf("cluster at true k        : %.2f s CPU, matched accuracy %.3f, V-measure %.3f\n",
                CpuNow() - cpu, MatchedAccuracy(truth, at_true_k.labels),
                VMeasure(truth, at_true_k.labels));
  }
  std::printf("peak RSS so far          : %.0f MiB\n", PeakRssMiB());

  // --- Stability across two re-clusterings of overlapping windows ----------------------------
  // Window A = [0, 60%), window B = [20%, 80%): 2/3 of each window is shared.
  const int a_begin = 0, a_end = count * 6 / 10, b_begin = count * 2 / 10, b_end = count * 8 / 10;
  std::vector<std::string> window_a(texts.begin() + a_begin, texts.begin() + a_end);
  std::vector<std::string> window_b(texts.begin() + b_begin, texts.begin() + b_end);
  engine::BuiltinEmbedderOptions eo_b = eo;
  eo_b.seed = seed + 1;
  engine::KMeansOptions ko_b = ko;
  ko_b.seed = seed + 1;
  cpu = CpuNow();
  Clustering a = Recluster(window_a, eo, ko);
  Clustering b = Recluster(window_b, eo_b, ko_b);  // cold: k-means++ only
  double windows_s = CpuNow() - cpu;
  // Previous labels of window B's traces: A's theme for the overlap, -1 for traces A never saw.
  std::vector<int> previous_labels(window_b.size(), -1);
  for (int i = b_begin; i < a_end; ++i) previous_labels[i - b_begin] = a.result.labels[i - a_begin];
  const int k_a = static_cast<int>(a.result.centroids.size());
  // Warm: same new model and vectors, k-means warm-started from A's themes in B's space.
  engine::KMeansOptions ko_warm = ko_b;
  ko_warm.initial_centroids = engine::PreviousCentroidsInNewSpace(b.vectors, previous_labels, k_a);
  cpu = CpuNow();
  engine::ClusterResult warm = std::move(engine::ClusterVectors(b.vectors, ko_warm)).value();
  double warm_s = CpuNow() - cpu;
  std::printf(
      "stability windows        : A = [0, %d), B = [%d, %d), each with its own embedder "
      "(%.1f s CPU for both)\n",
      a_end, b_begin, b_end, windows_s);
  auto report = [&](const char* label, const engine::ClusterResult& fresh) {
    const int k_b = static_cast<int>(fresh.centroids.size());
    std::vector<int> by_centroid =
        engine::MatchThemesAcrossVersions(b.vectors, previous_labels, k_a, fresh.centroids, 0.7);
    std::vector<int> fresh_overlap(previous_labels.size(), -1);
    for (size_t i = 0; i < previous_labels.size(); ++i) {
      if (previous_labels[i] >= 0) fresh_overlap[i] = fresh.labels[i];
    }
    std::vector<int> by_members =
        engine::MatchByMembers(previous_labels, fresh_overlap, k_a, k_b, 0.7);
    auto kept = [](const std::vector<int>& match) {
      return static_cast<int>(
          std::count_if(match.begin(), match.end(), [](int m) { return m >= 0; }));
    };
    std::printf(
        "ids kept, %-5s k_A=%2d k_B=%2d: centroid>=0.7 %d (%.0f%% of A), "
        "Jaccard>=0.7 %d (%.0f%% of A)\n",
        label, k_a, k_b, kept(by_centroid), 100.0 * kept(by_centroid) / k_a, kept(by_members),
        100.0 * kept(by_members) / k_a);
  };
  report("cold", b.result);
  report("warm", warm);
  std::printf("warm-started clustering  : %.1f s CPU\n", warm_s);
  std::printf("peak RSS                 : %.0f MiB\n", PeakRssMiB());
  return 0;
}
