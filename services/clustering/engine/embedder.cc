#include "services/clustering/engine/embedder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>

#include "Eigen/Dense"
#include "Eigen/Sparse"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "services/clustering/engine/random.h"
#include "services/clustering/engine/text.h"

namespace flywheel::clustering::engine {
namespace {

constexpr char kMagic[4] = {'F', 'W', 'B', 'E'};
constexpr uint32_t kFormatVersion = 1;
constexpr uint64_t kWordSeed = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t kCharSeed = 0xC2B2AE3D27D4EB4FULL;

inline uint64_t Fnv1a(const char* data, size_t n, uint64_t seed) {
  uint64_t h = 1469598103934665603ULL ^ seed;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(data[i]);
    h *= 1099511628211ULL;
  }
  return h;
}

// Word features have the low bit clear, character n-gram features have it set.
inline bool IsCharFeature(uint64_t h) { return (h & 1) != 0; }

struct FeatureConfig {
  bool word_bigrams = true;
  int char_min = 3;
  int char_max = 5;
};

// Appends the hashed features of `text` (with repetitions) to `out`.
void ExtractFeatures(absl::string_view text, const FeatureConfig& config,
                     std::vector<uint64_t>& out) {
  std::vector<std::string> tokens = Tokenize(text);
  uint64_t previous = 0;
  std::string marked;
  for (const std::string& token : tokens) {
    if (token.size() < 2 || IsStopWord(token)) continue;
    uint64_t h = SplitMix64(Fnv1a(token.data(), token.size(), kWordSeed));
    out.push_back(h & ~1ULL);
    if (config.word_bigrams && previous != 0) {
      out.push_back(SplitMix64(previous * 31 + h) & ~1ULL);
    }
    previous = h;
    if (config.char_min <= 0 || IsPlaceholder(token)) continue;
    marked.clear();
    marked.push_back('<');
    marked.append(token);
    marked.push_back('>');
    const int n = static_cast<int>(marked.size());
    for (int start = 0; start < n; ++start) {
      uint64_t g = 1469598103934665603ULL ^ kCharSeed;
      for (int len = 1; len <= config.char_max && start + len <= n; ++len) {
        g ^= static_cast<unsigned char>(marked[start + len - 1]);
        g *= 1099511628211ULL;
        if (len >= config.char_min && len < n) out.push_back(SplitMix64(g) | 1ULL);
      }
    }
  }
}

// Sorted unique (feature, term count) of a text.
void CountFeatures(absl::string_view text, const FeatureConfig& config,
                   std::vector<uint64_t>& scratch, std::vector<std::pair<uint64_t, int>>& counts) {
  scratch.clear();
  counts.clear();
  ExtractFeatures(text, config, scratch);
  std::sort(scratch.begin(), scratch.end());
  for (size_t i = 0; i < scratch.size();) {
    size_t j = i;
    while (j < scratch.size() && scratch[j] == scratch[i]) ++j;
    counts.emplace_back(scratch[i], static_cast<int>(j - i));
    i = j;
  }
}

void PutU32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void PutU64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }
void PutF32(std::string& out, float v) { out.append(reinterpret_cast<const char*>(&v), 4); }

class Reader {
 public:
  explicit Reader(absl::string_view bytes) : bytes_(bytes) {}
  template <typename T>
  bool Get(T& v) {
    if (bytes_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool GetBytes(void* dst, size_t n) {
    if (bytes_.size() - pos_ < n) return false;
    std::memcpy(dst, bytes_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool AtEnd() const { return pos_ == bytes_.size(); }

 private:
  absl::string_view bytes_;
  size_t pos_ = 0;
};

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using SparseRows = Eigen::SparseMatrix<float, Eigen::RowMajor, int>;

void Orthonormalize(Eigen::MatrixXf& m) {
  Eigen::HouseholderQR<Eigen::MatrixXf> qr(m);
  m = qr.householderQ() * Eigen::MatrixXf::Identity(m.rows(), m.cols());
}

}  // namespace

struct BuiltinEmbedder::Model {
  int dimension = 0;
  FeatureConfig features;
  float char_weight = 0.5f;
  absl::flat_hash_map<uint64_t, int> row_of;
  std::vector<uint64_t> hashes;   // per row
  std::vector<float> idf;         // per row
  std::vector<float> row_scale;   // per row: int8 quantization scale
  std::vector<int8_t> quantized;  // rows x dimension
  std::vector<float> projection;  // rows x dimension, dequantized (what Embed uses)
  Vector common;                  // empty, or the unit common component removed from outputs
  uint64_t fingerprint = 0;

  void Dequantize() {
    projection.resize(quantized.size());
    for (size_t r = 0; r < hashes.size(); ++r) {
      for (int j = 0; j < dimension; ++j) {
        projection[r * dimension + j] = quantized[r * dimension + j] * row_scale[r];
      }
    }
    row_of.clear();
    row_of.reserve(hashes.size());
    for (size_t r = 0; r < hashes.size(); ++r) row_of[hashes[r]] = static_cast<int>(r);
  }

  // Weighted sparse TF-IDF vector of a text: (row, weight), unit L2 overall.
  void Weigh(absl::string_view text, std::vector<std::pair<int, float>>& out) const {
    thread_local std::vector<uint64_t> scratch;
    thread_local std::vector<std::pair<uint64_t, int>> counts;
    CountFeatures(text, features, scratch, counts);
    out.clear();
    double norm2[2] = {0, 0};
    for (const auto& [hash, tf] : counts) {
      auto it = row_of.find(hash);
      if (it == row_of.end()) continue;
      float w = (1.0f + std::log(static_cast<float>(tf))) * idf[it->second];
      out.emplace_back(it->second, w);
      norm2[IsCharFeature(hash)] += static_cast<double>(w) * w;
    }
    float scale[2] = {norm2[0] > 0 ? static_cast<float>(1.0 / std::sqrt(norm2[0])) : 0.0f,
                      norm2[1] > 0 ? static_cast<float>(char_weight / std::sqrt(norm2[1])) : 0.0f};
    double total = 0;
    for (auto& [row, w] : out) {
      w *= scale[IsCharFeature(hashes[row])];
      total += static_cast<double>(w) * w;
    }
    if (total > 0) {
      float inv = static_cast<float>(1.0 / std::sqrt(total));
      for (auto& entry : out) entry.second *= inv;
    }
  }

  Vector Project(const std::vector<std::pair<int, float>>& weights) const {
    Vector e(dimension, 0.0f);
    float* acc = e.data();
    for (const auto& [row, w] : weights) {
      const float* p = projection.data() + static_cast<size_t>(row) * dimension;
      for (int j = 0; j < dimension; ++j) acc[j] += w * p[j];
    }
    if (!common.empty()) {
      float d = Dot(e, common);
      for (int j = 0; j < dimension; ++j) acc[j] -= d * common[j];
    }
    NormalizeInPlace(e);
    return e;
  }

  Vector Embed(absl::string_view text) const {
    thread_local std::vector<std::pair<int, float>> weights;
    Weigh(text, weights);
    return Project(weights);
  }

  std::string Serialize() const {
    std::string out(kMagic, 4);
    PutU32(out, kFormatVersion);
    PutU32(out, static_cast<uint32_t>(dimension));
    PutU32(out, static_cast<uint32_t>(hashes.size()));
    PutF32(out, char_weight);
    PutU32(out, features.word_bigrams ? 1 : 0);
    PutU32(out, static_cast<uint32_t>(features.char_min));
    PutU32(out, static_cast<uint32_t>(features.char_max));
    PutU32(out, common.empty() ? 0 : 1);
    for (float c : common) PutF32(out, c);
    for (size_t r = 0; r < hashes.size(); ++r) {
      PutU64(out, hashes[r]);
      PutF32(out, idf[r]);
      PutF32(out, row_scale[r]);
      out.append(reinterpret_cast<const char*>(quantized.data() + r * dimension), dimension);
    }
    return out;
  }
};

BuiltinEmbedder::BuiltinEmbedder(std::unique_ptr<Model> model) : model_(std::move(model)) {}
BuiltinEmbedder::~BuiltinEmbedder() = default;

absl::StatusOr<std::unique_ptr<BuiltinEmbedder>> BuiltinEmbedder::Fit(
    const std::vector<std::string>& corpus, const BuiltinEmbedderOptions& options) {
  if (options.dimension < 2 || options.dimension > 4096) {
    return absl::InvalidArgumentError("dimension must be in [2, 4096]");
  }
  if (options.char_ngram_min < 0 || options.char_ngram_max > 8 ||
      (options.char_ngram_min > 0 && options.char_ngram_max < options.char_ngram_min)) {
    return absl::InvalidArgumentError("character n-gram range must be within [1, 8] (0 disables)");
  }
  if (options.max_features < 2 || options.min_document_count < 1 ||
      options.max_document_share <= 0 || options.max_document_share > 1 ||
      options.max_fit_documents < 2 || options.power_iterations < 0 || options.char_weight < 0) {
    return absl::InvalidArgumentError("embedder options out of range");
  }
  auto model = std::make_unique<Model>();
  model->dimension = options.dimension;
  model->features.word_bigrams = options.word_bigrams;
  model->features.char_min = options.char_ngram_min;
  model->features.char_max = options.char_ngram_min > 0 ? options.char_ngram_max : 0;
  model->char_weight = static_cast<float>(options.char_weight);

  // Sample of non-empty documents the model is fitted on.
  std::vector<int> docs;
  for (size_t i = 0; i < corpus.size(); ++i) {
    if (!corpus[i].empty()) docs.push_back(static_cast<int>(i));
  }
  Rng rng(options.seed);
  if (static_cast<int>(docs.size()) > options.max_fit_documents) {
    for (int i = 0; i < options.max_fit_documents; ++i) {
      size_t j = i + rng.Uniform(docs.size() - i);
      std::swap(docs[i], docs[j]);
    }
    docs.resize(options.max_fit_documents);
    std::sort(docs.begin(), docs.end());
  }
  if (docs.size() < 2) {
    return absl::InvalidArgumentError("the builtin embedder needs at least 2 non-empty texts");
  }
  const int n = static_cast<int>(docs.size());

  // Document frequencies.
  absl::flat_hash_map<uint64_t, int> df;
  {
    std::vector<uint64_t> scratch;
    std::vector<std::pair<uint64_t, int>> counts;
    for (int d : docs) {
      CountFeatures(corpus[d], model->features, scratch, counts);
      for (const auto& entry : counts) ++df[entry.first];
    }
  }
  const int max_df = std::max(options.min_document_count,
                              static_cast<int>(std::floor(options.max_document_share * n)));
  std::vector<std::pair<int, uint64_t>> candidates[2];
  for (const auto& [hash, count] : df) {
    if (count < options.min_document_count || count > max_df) continue;
    candidates[IsCharFeature(hash)].emplace_back(count, hash);
  }
  df.clear();
  for (auto& c : candidates) {
    std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
  }
  size_t word_cap = options.char_ngram_min > 0 ? static_cast<size_t>(options.max_features / 2)
                                               : static_cast<size_t>(options.max_features);
  size_t words = std::min(candidates[0].size(), word_cap);
  size_t chars = std::min(candidates[1].size(), options.max_features - words);
  if (words + chars == 0) {
    return absl::InvalidArgumentError(
        "no feature occurs in enough texts to fit the builtin embedder");
  }
  std::vector<std::pair<int, uint64_t>> chosen(candidates[0].begin(),
                                               candidates[0].begin() + words);
  chosen.insert(chosen.end(), candidates[1].begin(), candidates[1].begin() + chars);
  std::sort(chosen.begin(), chosen.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  const int features = static_cast<int>(chosen.size());
  model->hashes.resize(features);
  model->idf.resize(features);
  for (int r = 0; r < features; ++r) {
    model->hashes[r] = chosen[r].second;
    model->idf[r] = static_cast<float>(std::log((1.0 + n) / (1.0 + chosen[r].first)) + 1.0);
    model->row_of[chosen[r].second] = r;
  }

  // TF-IDF matrix of the sample.
  SparseRows x(n, features);
  {
    std::vector<Eigen::Triplet<float, int>> triplets;
    std::vector<std::pair<int, float>> weights;
    for (int i = 0; i < n; ++i) {
      model->Weigh(corpus[docs[i]], weights);
      for (const auto& [row, w] : weights) triplets.emplace_back(i, row, w);
    }
    x.setFromTriplets(triplets.begin(), triplets.end());
  }

  // Randomized truncated SVD: right singular vectors V (features x rank) and singular values.
  const int d = options.dimension;
  const int rank = std::min({d, n - 1, features});
  const int l = std::min(rank + 10, std::min(n, features));
  Eigen::MatrixXf omega(features, l);
  for (int j = 0; j < l; ++j) {
    for (int i = 0; i < features; ++i) omega(i, j) = static_cast<float>(rng.Normal());
  }
  Eigen::MatrixXf y = x * omega;
  for (int q = 0; q < options.power_iterations; ++q) {
    Orthonormalize(y);
    Eigen::MatrixXf z = x.transpose() * y;
    Orthonormalize(z);
    y = x * z;
  }
  Orthonormalize(y);
  Eigen::MatrixXf bt = x.transpose() * y;  // features x l  (B = Q^T X)
  Eigen::MatrixXd gram = (bt.transpose() * bt).cast<double>();
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eigen(gram);
  // Eigenvalues ascending: take the largest `rank`.
  RowMatrix projection = RowMatrix::Zero(features, d);
  for (int j = 0; j < rank; ++j) {
    int col = l - 1 - j;
    double lambda = std::max(0.0, eigen.eigenvalues()(col));
    double sigma = std::sqrt(lambda);
    if (sigma < 1e-9) continue;
    Eigen::VectorXf v = bt * eigen.eigenvectors().col(col).cast<float>();
    v /= static_cast<float>(sigma);
    // Deterministic sign: the largest-magnitude entry is positive.
    Eigen::Index arg;
    v.cwiseAbs().maxCoeff(&arg);
    if (v(arg) < 0) v = -v;
    double factor = std::pow(sigma, options.singular_power - 1.0);
    projection.col(j) = v * static_cast<float>(factor);
  }

  // int8 quantization per row; the in-memory model uses the dequantized values so that
  // Serialize/Deserialize round trips are exact.
  model->quantized.resize(static_cast<size_t>(features) * d);
  model->row_scale.resize(features);
  for (int r = 0; r < features; ++r) {
    float max_abs = projection.row(r).cwiseAbs().maxCoeff();
    float scale = max_abs > 0 ? max_abs / 127.0f : 1.0f;
    model->row_scale[r] = scale;
    for (int j = 0; j < d; ++j) {
      model->quantized[static_cast<size_t>(r) * d + j] =
          static_cast<int8_t>(std::lround(projection(r, j) / scale));
    }
  }
  model->Dequantize();

  if (options.remove_common_component) {
    // First principal direction (uncentered) of the sample's embeddings, by power iteration.
    std::vector<Vector> sample;
    sample.reserve(n);
    for (int i = 0; i < n; ++i) sample.push_back(model->Embed(corpus[docs[i]]));
    Vector u(d, 0.0f);
    for (const Vector& e : sample) {
      for (int j = 0; j < d; ++j) u[j] += e[j];
    }
    NormalizeInPlace(u);
    for (int it = 0; it < 30; ++it) {
      Vector next(d, 0.0f);
      for (const Vector& e : sample) {
        float p = Dot(e, u);
        for (int j = 0; j < d; ++j) next[j] += p * e[j];
      }
      NormalizeInPlace(next);
      u = std::move(next);
    }
    model->common = std::move(u);
  }
  std::string bytes = model->Serialize();
  model->fingerprint = Fnv1a(bytes.data(), bytes.size(), 0);
  return std::make_unique<BuiltinEmbedder>(std::move(model));
}

std::string BuiltinEmbedder::Serialize() const { return model_->Serialize(); }

absl::StatusOr<std::unique_ptr<BuiltinEmbedder>> BuiltinEmbedder::Deserialize(
    absl::string_view bytes) {
  auto corrupt = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("corrupt builtin embedder model: ", what));
  };
  if (bytes.size() < 4 || std::memcmp(bytes.data(), kMagic, 4) != 0) return corrupt("magic");
  Reader reader(bytes.substr(4));
  uint32_t version, dimension, features, bigrams, char_min, char_max, has_common;
  float char_weight;
  if (!reader.Get(version) || version != kFormatVersion) return corrupt("version");
  if (!reader.Get(dimension) || !reader.Get(features) || !reader.Get(char_weight) ||
      !reader.Get(bigrams) || !reader.Get(char_min) || !reader.Get(char_max) ||
      !reader.Get(has_common)) {
    return corrupt("header");
  }
  if (dimension < 2 || dimension > 4096 || features == 0 || char_max > 8 || char_min > 8) {
    return corrupt("header values");
  }
  if (bytes.size() / (dimension + 16) < features) return corrupt("size");
  auto model = std::make_unique<Model>();
  model->dimension = static_cast<int>(dimension);
  model->features.word_bigrams = bigrams != 0;
  model->features.char_min = static_cast<int>(char_min);
  model->features.char_max = static_cast<int>(char_max);
  model->char_weight = char_weight;
  if (has_common != 0) {
    model->common.resize(dimension);
    if (!reader.GetBytes(model->common.data(), 4 * dimension)) return corrupt("common");
  }
  model->hashes.resize(features);
  model->idf.resize(features);
  model->row_scale.resize(features);
  model->quantized.resize(static_cast<size_t>(features) * dimension);
  for (uint32_t r = 0; r < features; ++r) {
    if (!reader.Get(model->hashes[r]) || !reader.Get(model->idf[r]) ||
        !reader.Get(model->row_scale[r]) ||
        !reader.GetBytes(model->quantized.data() + static_cast<size_t>(r) * dimension, dimension)) {
      return corrupt("truncated");
    }
  }
  if (!reader.AtEnd()) return corrupt("trailing bytes");
  model->Dequantize();
  if (model->row_of.size() != features) return corrupt("duplicate features");
  model->fingerprint = Fnv1a(bytes.data(), bytes.size(), 0);
  return std::make_unique<BuiltinEmbedder>(std::move(model));
}

std::string BuiltinEmbedder::Id() const {
  return absl::StrFormat("%s:%016x", kName, model_->fingerprint);
}

int BuiltinEmbedder::Dimension() const { return model_->dimension; }

int BuiltinEmbedder::FeatureCount() const { return static_cast<int>(model_->hashes.size()); }

absl::StatusOr<std::vector<Vector>> BuiltinEmbedder::Embed(const std::vector<std::string>& texts) {
  std::vector<Vector> out;
  out.reserve(texts.size());
  for (const std::string& text : texts) out.push_back(model_->Embed(text));
  return out;
}

Vector BuiltinEmbedder::EmbedOne(absl::string_view text) const { return model_->Embed(text); }

}  // namespace flywheel::clustering::engine
