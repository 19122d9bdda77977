#pragma once

// OpenAI-compatible HTTP clients (libcurl): an Embedder over POST {base_url}/embeddings and a
// contrastive theme namer over POST {base_url}/chat/completions. CMake target
// clustering_engine_http.
//
// Errors: UNAVAILABLE when the endpoint cannot be reached, times out, or answers 429/5xx after
// the retries (message names the URL and the cause); INVALID_ARGUMENT when it answers 4xx or a
// body that is not the expected JSON; all messages are free of the api key.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/clustering/engine/embedder.h"

namespace flywheel::clustering::engine {

struct OpenAiEndpoint {
  std::string base_url;  // e.g. "https://api.openai.com/v1" (no trailing "/embeddings")
  std::string model;
  std::string api_key;  // sent as "Authorization: Bearer <api_key>" when non-empty
  absl::Duration timeout = absl::Seconds(30);  // per request
  int max_retries = 2;  // extra attempts on connection errors, timeouts, 429 and 5xx
  absl::Duration retry_backoff = absl::Milliseconds(500);  // doubled per retry
};

struct OpenAiEmbedderOptions {
  OpenAiEndpoint endpoint;
  int dimension = 0;  // sent as "dimensions" when > 0; 0: the model's native dimension
  int batch_size = 256;
};

class OpenAiEmbedder final : public Embedder {
 public:
  explicit OpenAiEmbedder(OpenAiEmbedderOptions options);
  ~OpenAiEmbedder() override;
  // "openai-compatible:<model>" (+ ":<dimension>" when a dimension is requested).
  std::string Id() const override;
  // The requested dimension, or the one observed in the last successful response (0 before).
  int Dimension() const override;
  // Vectors are L2-normalized, in input order; requests carry at most batch_size texts. Empty
  // texts are not sent: they get all-zero vectors. Thread-safe.
  absl::StatusOr<std::vector<Vector>> Embed(const std::vector<std::string>& texts) override;

 private:
  OpenAiEmbedderOptions options_;
  mutable std::atomic<int> observed_dimension_{0};
};

// Contrastive naming input: examples from inside the theme and from the nearest other themes.
struct NamingRequest {
  std::vector<std::string> keywords;
  std::vector<std::string> in_theme_examples;
  std::vector<std::string> out_of_theme_examples;  // nearest out-of-theme examples
  std::string language = "en";
};

struct NamingResult {
  std::string name;         // short (<= 80 bytes), no trailing period
  std::string description;  // one line
};

class ChatNamer {
 public:
  explicit ChatNamer(OpenAiEndpoint endpoint);
  // "openai-compatible:<model>".
  std::string Id() const;
  // Asks for a JSON object {"name": ..., "description": ...}; tolerant of code fences.
  absl::StatusOr<NamingResult> Name(const NamingRequest& request) const;

 private:
  OpenAiEndpoint endpoint_;
};

}  // namespace flywheel::clustering::engine
