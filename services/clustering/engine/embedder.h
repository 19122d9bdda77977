#pragma once

// Embedders: the interface, and the builtin offline embedder (hashed word + character n-gram
// TF-IDF reduced to a dense vector by a truncated SVD fitted on the corpus: LSA).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/clustering/engine/vector.h"

namespace flywheel::clustering::engine {

class Embedder {
 public:
  virtual ~Embedder() = default;
  // Identity of the vector space: changes whenever the vector space changes (for the builtin
  // embedder: a fingerprint of the fitted model). Embeddings with different Ids are not comparable.
  virtual std::string Id() const = 0;
  virtual int Dimension() const = 0;
  // One unit vector (or all zeros for empty text) per text, in order.
  virtual absl::StatusOr<std::vector<Vector>> Embed(const std::vector<std::string>& texts) = 0;
};

struct BuiltinEmbedderOptions {
  int dimension = 128;  // output dimension (<= number of fit documents - 1 is effective)
  // Features: word unigrams, word bigrams, character n-grams of words (with boundary marks).
  bool word_bigrams = true;
  int char_ngram_min = 3;  // 0 disables character n-grams
  int char_ngram_max = 5;
  double char_weight = 1.0;         // weight of the char n-gram block relative to the word block
  int max_features = 40000;         // most frequent features kept (by document frequency)
  int min_document_count = 2;       // features in fewer fit documents are dropped
  double max_document_share = 0.5;  // features in more than this share of documents are dropped
  int max_fit_documents = 12000;    // the SVD is fitted on a seeded sample of at most this many
  int power_iterations = 4;         // randomized SVD power iterations
  // Components are scaled by singular_value^singular_power before normalization (0: whitened,
  // 1: sklearn TruncatedSVD's U*Sigma). Values above 1 emphasize the strongest topics, which
  // clusters better on our benchmarks (bench/clustering_quality): default 1.5.
  double singular_power = 1.5;
  // Remove the projection on the first principal direction of the embedded corpus (SIF-style
  // common-component removal).
  bool remove_common_component = false;
  uint64_t seed = 42;
};

// Fitted on a corpus; Embed/EmbedOne are thread-safe (const) after Fit/Deserialize.
// The model is refitted at every re-clustering: see engine.h about stable ids.
class BuiltinEmbedder final : public Embedder {
 public:
  // INVALID_ARGUMENT when the corpus has fewer than 2 non-empty texts or options are out of range.
  static absl::StatusOr<std::unique_ptr<BuiltinEmbedder>> Fit(
      const std::vector<std::string>& corpus, const BuiltinEmbedderOptions& options);
  // Compact bytes (vocabulary hashes, IDF and the int8-quantized projection). Deserialize gives
  // a model whose vectors are bit-identical.
  std::string Serialize() const;
  // INVALID_ARGUMENT for truncated or corrupt bytes.
  static absl::StatusOr<std::unique_ptr<BuiltinEmbedder>> Deserialize(absl::string_view bytes);

  // "builtin-tfidf-ngram-v1" (the embedder kind, for display).
  static constexpr absl::string_view kName = "builtin-tfidf-ngram-v1";
  // kName + ":" + 16 hex digits of the model fingerprint.
  std::string Id() const override;
  int Dimension() const override;
  absl::StatusOr<std::vector<Vector>> Embed(const std::vector<std::string>& texts) override;
  Vector EmbedOne(absl::string_view text) const;
  int FeatureCount() const;

  struct Model;  // implementation detail
  explicit BuiltinEmbedder(std::unique_ptr<Model> model);
  ~BuiltinEmbedder() override;

 private:
  std::unique_ptr<Model> model_;
};

}  // namespace flywheel::clustering::engine
