#include "services/clustering/engine/engine.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/clustering/engine/random.h"

namespace flywheel::clustering::engine {
namespace {

using ::flywheel::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// ---------------------------------------------------------------------------------------------
// Masking and tokenization
// ---------------------------------------------------------------------------------------------

TEST(MaskTextTest, UrlsEmailsUuidsHexAndNumbersBecomePlaceholders) {
  EXPECT_EQ(MaskText("see https://example.com/a?b=1 now"), "see <url> now");
  EXPECT_EQ(MaskText("mail bob.smith+x@corp.example.org."), "mail <email>.");
  EXPECT_EQ(MaskText("id 123e4567-e89b-12d3-a456-426614174000 failed"), "id <uuid> failed");
  EXPECT_EQ(MaskText("commit deadbeef42 and 0x1F"), "commit <hex> and <hex>");
  EXPECT_EQ(MaskText("took 3.5 s on 2024-01-05 at 12:30:00"), "took <num> s on <num> at <num>");
  EXPECT_EQ(MaskText("open /var/log/app.log please"), "open <path> please");
  EXPECT_EQ(MaskText("order #1234 (qty 10)"), "order #<num> (qty <num>)");
  EXPECT_EQ(MaskText("see ord_3f2a9c81d4 and req_id_123e4567-e89b-12d3-a456-426614174000"),
            "see <hex> and <uuid>");
}

TEST(MaskTextTest, WordsWithDigitsAndPlainTextAreKept) {
  EXPECT_EQ(MaskText("gpt4 utf8 e2e tests"), "gpt4 utf8 e2e tests");
  EXPECT_EQ(MaskText("The refund policy is unclear."), "The refund policy is unclear.");
  EXPECT_EQ(MaskText("café naïve"), "café naïve");
}

TEST(MaskTextTest, NumbersWithShortUnitsAreMaskedWhole) {
  EXPECT_EQ(MaskText("latency 250ms and 5GB"), "latency <num> and <num>");
}

TEST(TokenizeTest, LowercasesSplitsAndKeepsPlaceholders) {
  EXPECT_THAT(
      Tokenize("Hello, World! <num> items; don't stop_now ord_<hex> __init__ _"),
      ElementsAre("hello", "world", "<num>", "items", "dont", "stop_now", "ord", "<hex>", "init"));
}

TEST(TokenizeTest, UnicodePunctuationSeparatesAndCurlyApostropheJoins) {
  EXPECT_THAT(Tokenize("wait\xE2\x80\x94what? it\xE2\x80\x99s caf\xC3\xA9\xC2\xA0ok"),
              ElementsAre("wait", "what", "its", "caf\xC3\xA9", "ok"));
}

TEST(PrepareTextTest, CombinesMaskedPartsAndCapsLengths) {
  TraceText trace;
  trace.input = "Refund order 12345 please";
  trace.output = std::string(1000, 'x');
  trace.comments = {"wrong amount", "see https://x.io"};
  std::string text = PrepareText(trace);
  EXPECT_THAT(text, HasSubstr("Refund order <num> please | "));
  EXPECT_THAT(text, HasSubstr(" | wrong amount | see <url>"));
  EXPECT_THAT(text, Not(HasSubstr(std::string(301, 'x'))));
  EXPECT_EQ(PrepareText(TraceText{}), "");
}

TEST(PrepareTextTest, CutsOnUtf8Boundaries) {
  TraceText trace;
  trace.input = "\xC3\xA9\xC3\xA9\xC3\xA9";  // 6 bytes
  PrepareOptions options;
  options.max_input_bytes = 3;
  EXPECT_EQ(PrepareText(trace, options), "\xC3\xA9");
}

// ---------------------------------------------------------------------------------------------
// Synthetic corpora
// ---------------------------------------------------------------------------------------------

// Texts from `topics` distinct vocabularies plus shared filler words.
std::vector<std::string> TopicCorpus(int topics, int per_topic, uint64_t seed,
                                     std::vector<int>* labels) {
  static const std::vector<std::vector<std::string>> kVocab = {
      {"refund", "invoice", "charged", "payment", "billing", "card", "subscription", "price"},
      {"password", "login", "reset", "account", "locked", "signin", "credentials", "twofactor"},
      {"python", "exception", "traceback", "function", "compile", "syntax", "variable", "loop"},
      {"recipe", "oven", "bake", "flour", "sugar", "dinner", "cooking", "ingredients"},
      {"flight", "airport", "booking", "luggage", "delayed", "hotel", "travel", "passport"},
      {"translate", "french", "spanish", "german", "grammar", "language", "sentence", "wording"}};
  static const std::vector<std::string> kFiller = {"the", "answer",  "was",   "wrong", "assistant",
                                                   "not", "helpful", "again", "my",    "please"};
  Rng rng(seed);
  std::vector<std::string> texts;
  for (int i = 0; i < per_topic; ++i) {
    for (int t = 0; t < topics; ++t) {
      std::vector<std::string> words;
      for (int w = 0; w < 10; ++w) {
        words.push_back(rng.Uniform(3) == 0 ? kFiller[rng.Uniform(kFiller.size())]
                                            : kVocab[t][rng.Uniform(kVocab[t].size())]);
      }
      texts.push_back(absl::StrJoin(words, " "));
      if (labels != nullptr) labels->push_back(t);
    }
  }
  return texts;
}

// Well-separated clusters of unit vectors around random directions.
std::vector<Vector> Blobs(int k, int per_cluster, int dim, float noise, uint64_t seed,
                          std::vector<int>* labels) {
  Rng rng(seed);
  std::vector<Vector> centers(k, Vector(dim));
  for (Vector& c : centers) {
    for (float& x : c) x = static_cast<float>(rng.Normal());
    NormalizeInPlace(c);
  }
  std::vector<Vector> points;
  for (int i = 0; i < per_cluster; ++i) {
    for (int c = 0; c < k; ++c) {
      Vector p = centers[c];
      for (float& x : p) x += noise * static_cast<float>(rng.Normal()) / std::sqrt(float(dim));
      NormalizeInPlace(p);
      points.push_back(std::move(p));
      if (labels != nullptr) labels->push_back(c);
    }
  }
  return points;
}

// Fraction of points whose cluster's majority true label equals theirs (purity).
double Purity(const std::vector<int>& truth, const std::vector<int>& predicted) {
  std::map<int, std::map<int, int>> counts;
  for (size_t i = 0; i < truth.size(); ++i) ++counts[predicted[i]][truth[i]];
  int correct = 0;
  for (const auto& [cluster, by_label] : counts) {
    int best = 0;
    for (const auto& [label, count] : by_label) best = std::max(best, count);
    correct += best;
  }
  return static_cast<double>(correct) / truth.size();
}

// ---------------------------------------------------------------------------------------------
// Embedding
// ---------------------------------------------------------------------------------------------

BuiltinEmbedderOptions SmallOptions() {
  BuiltinEmbedderOptions options;
  options.dimension = 16;
  return options;
}

TEST(BuiltinEmbedderTest, SimilarTextsAreCloserThanUnrelatedOnes) {
  std::vector<std::string> corpus = TopicCorpus(4, 30, 7, nullptr);
  ASSERT_OK_AND_ASSIGN(auto embedder, BuiltinEmbedder::Fit(corpus, SmallOptions()));
  Vector billing1 = embedder->EmbedOne("I was charged twice on my card for the subscription");
  Vector billing2 = embedder->EmbedOne("wrong invoice: the payment price was charged again");
  Vector cooking = embedder->EmbedOne("how long should the flour and sugar bake in the oven");
  EXPECT_GT(Dot(billing1, billing2), Dot(billing1, cooking) + 0.3f);
  EXPECT_NEAR(Dot(billing1, billing1), 1.0f, 1e-4);
}

TEST(BuiltinEmbedderTest, EmptyTextGivesZeroVectorOfTheDimension) {
  ASSERT_OK_AND_ASSIGN(auto embedder,
                       BuiltinEmbedder::Fit(TopicCorpus(3, 10, 1, nullptr), SmallOptions()));
  Vector v = embedder->EmbedOne("");
  ASSERT_EQ(v.size(), 16u);
  EXPECT_TRUE(std::all_of(v.begin(), v.end(), [](float x) { return x == 0; }));
  EXPECT_EQ(embedder->Dimension(), 16);
}

TEST(BuiltinEmbedderTest, SerializeDeserializeRoundTripGivesIdenticalVectors) {
  std::vector<std::string> corpus = TopicCorpus(4, 20, 3, nullptr);
  BuiltinEmbedderOptions options = SmallOptions();
  options.remove_common_component = true;
  ASSERT_OK_AND_ASSIGN(auto embedder, BuiltinEmbedder::Fit(corpus, options));
  std::string bytes = embedder->Serialize();
  ASSERT_OK_AND_ASSIGN(auto restored, BuiltinEmbedder::Deserialize(bytes));
  EXPECT_EQ(restored->Id(), embedder->Id());
  EXPECT_EQ(restored->Serialize(), bytes);
  ASSERT_OK_AND_ASSIGN(auto a, embedder->Embed(corpus));
  ASSERT_OK_AND_ASSIGN(auto b, restored->Embed(corpus));
  EXPECT_EQ(a, b);
  EXPECT_EQ(embedder->EmbedOne("an unseen refund text"),
            restored->EmbedOne("an unseen refund text"));
}

TEST(BuiltinEmbedderTest, CorruptBytesAreInvalidArgument) {
  ASSERT_OK_AND_ASSIGN(auto embedder,
                       BuiltinEmbedder::Fit(TopicCorpus(3, 10, 1, nullptr), SmallOptions()));
  std::string bytes = embedder->Serialize();
  EXPECT_THAT(BuiltinEmbedder::Deserialize(bytes.substr(0, bytes.size() - 3)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(BuiltinEmbedder::Deserialize("nope"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(BuiltinEmbedder::Deserialize(bytes + "x"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(BuiltinEmbedderTest, FitIsDeterministicAndIdTracksTheModel) {
  std::vector<std::string> corpus = TopicCorpus(3, 15, 5, nullptr);
  ASSERT_OK_AND_ASSIGN(auto a, BuiltinEmbedder::Fit(corpus, SmallOptions()));
  ASSERT_OK_AND_ASSIGN(auto b, BuiltinEmbedder::Fit(corpus, SmallOptions()));
  EXPECT_EQ(a->Id(), b->Id());
  EXPECT_THAT(a->Id(), HasSubstr("builtin-tfidf-ngram-v1:"));
  std::vector<std::string> other = TopicCorpus(3, 15, 6, nullptr);
  ASSERT_OK_AND_ASSIGN(auto c, BuiltinEmbedder::Fit(other, SmallOptions()));
  EXPECT_NE(a->Id(), c->Id());
}

TEST(BuiltinEmbedderTest, TooSmallCorpusIsInvalidArgument) {
  EXPECT_THAT(BuiltinEmbedder::Fit({"only one"}, SmallOptions()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  BuiltinEmbedderOptions bad = SmallOptions();
  bad.dimension = 1;
  EXPECT_THAT(BuiltinEmbedder::Fit(TopicCorpus(2, 5, 1, nullptr), bad),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(BuiltinEmbedderTest, MaskedVariantsEmbedIdentically) {
  std::vector<std::string> corpus = TopicCorpus(3, 15, 5, nullptr);
  ASSERT_OK_AND_ASSIGN(auto embedder, BuiltinEmbedder::Fit(corpus, SmallOptions()));
  EXPECT_EQ(embedder->EmbedOne(MaskText("refund for order 1234 at https://a.com")),
            embedder->EmbedOne(MaskText("refund for order 98 at https://b.org/x")));
}

// ---------------------------------------------------------------------------------------------
// Vectors and assignment
// ---------------------------------------------------------------------------------------------

TEST(NearestCentroidTest, PicksMostSimilarAndAppliesThreshold) {
  std::vector<Vector> centroids = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
  Vector v = {0.1f, 0.9f, 0.0f};
  NormalizeInPlace(v);
  Nearest n = NearestCentroid(v, centroids, 0.5f);
  EXPECT_EQ(n.index, 1);
  EXPECT_GT(n.similarity, 0.9f);
  Nearest below = NearestCentroid(v, centroids, 0.999f);
  EXPECT_EQ(below.index, -1);
  EXPECT_FLOAT_EQ(below.similarity, n.similarity);
  EXPECT_EQ(NearestCentroid(v, {}, 0).index, -1);
}

TEST(TopCentroidsTest, OrdersBySimilarityAndTruncates) {
  std::vector<Vector> centroids = {{1, 0}, {0, 1}, {0.8f, 0.6f}};
  auto top = TopCentroids({1, 0}, centroids, 2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].index, 0);
  EXPECT_EQ(top[1].index, 2);
  EXPECT_EQ(TopCentroids({1, 0}, centroids, 10).size(), 3u);
}

TEST(MeanDirectionTest, IsUnitMeanOfSelectedPoints) {
  std::vector<Vector> points = {{1, 0}, {0, 1}, {-1, 0}};
  Vector m = MeanDirection(points, {0, 1});
  EXPECT_NEAR(m[0], std::sqrt(0.5f), 1e-6);
  EXPECT_NEAR(m[1], std::sqrt(0.5f), 1e-6);
  EXPECT_TRUE(MeanDirection(points, {}).empty());
}

// ---------------------------------------------------------------------------------------------
// k-means
// ---------------------------------------------------------------------------------------------

TEST(ClusterVectorsTest, RecoversWellSeparatedClustersAtGivenK) {
  std::vector<int> truth;
  std::vector<Vector> points = Blobs(6, 50, 32, 0.4f, 11, &truth);
  KMeansOptions options;
  options.k = 6;
  ASSERT_OK_AND_ASSIGN(ClusterResult result, ClusterVectors(points, options));
  EXPECT_EQ(result.centroids.size(), 6u);
  EXPECT_DOUBLE_EQ(Purity(truth, result.labels), 1.0);
  EXPECT_GT(result.silhouette, 0.3);
  EXPECT_NEAR(result.silhouette, Silhouette(points, result.labels), 1e-3);  // sample = all here
  for (size_t i = 0; i < points.size(); ++i) {
    EXPECT_NEAR(result.similarity[i], Dot(points[i], result.centroids[result.labels[i]]), 1e-4);
  }
}

TEST(ClusterVectorsTest, AutomaticKFindsTheTrueNumberOfClusters) {
  for (int k : {3, 7}) {
    std::vector<int> truth;
    std::vector<Vector> points = Blobs(k, 40, 24, 0.5f, 100 + k, &truth);
    KMeansOptions options;
    options.max_k = 12;
    ASSERT_OK_AND_ASSIGN(ClusterResult result, ClusterVectors(points, options));
    EXPECT_EQ(result.centroids.size(), static_cast<size_t>(k));
    EXPECT_GT(result.silhouette, 0.3);
  }
}

TEST(ClusterVectorsTest, SameSeedSameResultAndSampledPathWorks) {
  std::vector<int> truth;
  std::vector<Vector> points = Blobs(5, 200, 16, 0.5f, 3, &truth);
  KMeansOptions options;
  options.k = 5;
  options.restart_sample = 200;  // forces restarts on a sample + refinement on all points
  ASSERT_OK_AND_ASSIGN(ClusterResult a, ClusterVectors(points, options));
  ASSERT_OK_AND_ASSIGN(ClusterResult b, ClusterVectors(points, options));
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.centroids, b.centroids);
  EXPECT_DOUBLE_EQ(Purity(truth, a.labels), 1.0);
}

TEST(ClusterVectorsTest, WarmStartContinuesThePreviousThemesInOrder) {
  std::vector<int> truth;
  std::vector<Vector> points = Blobs(5, 40, 16, 0.6f, 8, &truth);
  KMeansOptions options;
  options.k = 5;
  ASSERT_OK_AND_ASSIGN(ClusterResult first, ClusterVectors(points, options));
  // A different seed alone may permute the themes; warm-started, theme i continues theme i.
  options.seed = 12345;
  options.initial_centroids = first.centroids;
  ASSERT_OK_AND_ASSIGN(ClusterResult second, ClusterVectors(points, options));
  EXPECT_EQ(second.labels, first.labels);
  // More themes than initial centroids: the missing ones are seeded by k-means++.
  options.k = 6;
  ASSERT_OK_AND_ASSIGN(ClusterResult more, ClusterVectors(points, options));
  EXPECT_EQ(more.centroids.size(), 6u);
}

TEST(ClusterVectorsTest, ZeroVectorsStayUnassigned) {
  std::vector<Vector> points = Blobs(2, 10, 8, 0.3f, 1, nullptr);
  points.push_back(Vector(8, 0.0f));
  KMeansOptions options;
  options.k = 2;
  ASSERT_OK_AND_ASSIGN(ClusterResult result, ClusterVectors(points, options));
  EXPECT_EQ(result.labels.back(), -1);
}

TEST(ClusterVectorsTest, BadInputIsInvalidArgument) {
  KMeansOptions options;
  options.k = 5;
  EXPECT_THAT(ClusterVectors(Blobs(2, 1, 4, 0.1f, 1, nullptr), options),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ClusterVectors({}, options), StatusIs(absl::StatusCode::kInvalidArgument));
  options.k = 1;
  EXPECT_THAT(ClusterVectors({{1, 0}, {0, 1, 0}}, options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ClusterVectorsTest, EmbedThenClusterRecoversTextTopics) {
  std::vector<int> truth;
  std::vector<std::string> corpus = TopicCorpus(6, 40, 21, &truth);
  BuiltinEmbedderOptions embed_options;
  embed_options.dimension = 32;
  ASSERT_OK_AND_ASSIGN(auto embedder, BuiltinEmbedder::Fit(corpus, embed_options));
  ASSERT_OK_AND_ASSIGN(auto vectors, embedder->Embed(corpus));
  KMeansOptions options;
  options.k = 6;
  ASSERT_OK_AND_ASSIGN(ClusterResult result, ClusterVectors(vectors, options));
  EXPECT_GT(Purity(truth, result.labels), 0.95);
}

// ---------------------------------------------------------------------------------------------
// Hierarchy
// ---------------------------------------------------------------------------------------------

TEST(GroupThemesTest, GroupsNearbyCentroidsTogether) {
  // Two families of three themes each.
  std::vector<Vector> centroids = {{1, 0.1f, 0, 0}, {1, -0.1f, 0, 0}, {1, 0, 0.1f, 0},
                                   {0, 0, 0.1f, 1}, {0, 0.1f, 0, 1},  {0, -0.1f, 0, 1}};
  for (Vector& c : centroids) NormalizeInPlace(c);
  ASSERT_OK_AND_ASSIGN(Hierarchy h, GroupThemes(centroids, 2, 1));
  ASSERT_EQ(h.parent_centroids.size(), 2u);
  EXPECT_EQ(h.parent_of_theme[0], h.parent_of_theme[1]);
  EXPECT_EQ(h.parent_of_theme[0], h.parent_of_theme[2]);
  EXPECT_EQ(h.parent_of_theme[3], h.parent_of_theme[4]);
  EXPECT_NE(h.parent_of_theme[0], h.parent_of_theme[3]);
  EXPECT_GT(Dot(h.parent_centroids[h.parent_of_theme[0]], centroids[0]), 0.9f);
}

TEST(GroupThemesTest, AutomaticGroupCountIsAboutSqrtK) {
  std::vector<Vector> centroids = Blobs(16, 1, 8, 0.0f, 9, nullptr);
  ASSERT_OK_AND_ASSIGN(Hierarchy h, GroupThemes(centroids, 0, 1));
  EXPECT_EQ(h.parent_centroids.size(), 4u);
  std::set<int> used(h.parent_of_theme.begin(), h.parent_of_theme.end());
  EXPECT_EQ(used.size(), 4u);
  EXPECT_THAT(GroupThemes({}, 0, 1), StatusIs(absl::StatusCode::kInvalidArgument));
}

// ---------------------------------------------------------------------------------------------
// Stable ids
// ---------------------------------------------------------------------------------------------

TEST(MatchCentroidsTest, OneToOneGreedyAboveThreshold) {
  std::vector<Vector> previous = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
  std::vector<Vector> fresh = {
      {0, 0.99f, 0.14f}, {0.98f, 0.2f, 0}, {0.97f, 0.24f, 0}, {0.6f, 0.6f, 0.53f}};
  for (Vector& v : fresh) NormalizeInPlace(v);
  std::vector<int> match = MatchCentroids(previous, fresh, 0.7);
  // fresh[1] is the closest to previous[0]; fresh[2] loses (one-to-one); fresh[3] is below 0.7.
  EXPECT_THAT(match, ElementsAre(1, 0, -1, -1));
  EXPECT_THAT(MatchCentroids(previous, fresh, 0.995), ElementsAre(-1, -1, -1, -1));
}

TEST(MatchCentroidsTest, EmptyPreviousCentroidsAreNeverMatched) {
  EXPECT_THAT(MatchCentroids({Vector{}, {1, 0}}, {{1, 0}}, 0.5), ElementsAre(1));
}

TEST(MatchByMembersTest, JaccardOneToOneWithThreshold) {
  // previous: theme 0 = {0..9}, theme 1 = {10..19}; fresh: theme 0 = {10..19}, theme 1 = {0..7},
  // theme 2 = {8, 9}.
  std::vector<int> previous(20), fresh(20);
  for (int i = 0; i < 20; ++i) {
    previous[i] = i < 10 ? 0 : 1;
    fresh[i] = i < 8 ? 1 : (i < 10 ? 2 : 0);
  }
  EXPECT_THAT(MatchByMembers(previous, fresh, 2, 3, 0.7), ElementsAre(1, 0, -1));
  EXPECT_THAT(MatchByMembers(previous, fresh, 2, 3, 0.9), ElementsAre(1, -1, -1));
}

TEST(MatchThemesAcrossVersionsTest, KeepsIdsWhenTheEmbedderIsRefitted) {
  // Version 1: fit, cluster. Version 2: a shifted window, a NEW model (different space),
  // previous themes re-expressed from their members in the new window.
  std::vector<int> truth;
  std::vector<std::string> corpus = TopicCorpus(5, 60, 31, &truth);  // 300 texts, interleaved
  std::vector<std::string> window1(corpus.begin(), corpus.begin() + 200);
  std::vector<std::string> window2(corpus.begin() + 100, corpus.end());
  BuiltinEmbedderOptions embed_options;
  embed_options.dimension = 24;
  KMeansOptions options;
  options.k = 5;
  ASSERT_OK_AND_ASSIGN(auto model1, BuiltinEmbedder::Fit(window1, embed_options));
  ASSERT_OK_AND_ASSIGN(auto v1, model1->Embed(window1));
  ASSERT_OK_AND_ASSIGN(ClusterResult r1, ClusterVectors(v1, options));
  embed_options.seed = 99;
  ASSERT_OK_AND_ASSIGN(auto model2, BuiltinEmbedder::Fit(window2, embed_options));
  ASSERT_NE(model1->Id(), model2->Id());
  ASSERT_OK_AND_ASSIGN(auto v2, model2->Embed(window2));
  options.seed = 77;
  ASSERT_OK_AND_ASSIGN(ClusterResult r2, ClusterVectors(v2, options));
  // Previous labels of the window2 traces (-1 for the traces that were not in window1).
  std::vector<int> previous_labels(window2.size(), -1);
  for (size_t i = 0; i < 100; ++i) previous_labels[i] = r1.labels[100 + i];
  std::vector<int> match = MatchThemesAcrossVersions(v2, previous_labels, 5, r2.centroids, 0.7);
  std::set<int> kept;
  for (size_t f = 0; f < match.size(); ++f) {
    ASSERT_GE(match[f], 0) << "fresh theme " << f << " lost its id";
    kept.insert(match[f]);
    // The matched previous theme holds the same topic as the fresh one.
    int fresh_member = -1, previous_member = -1;
    for (size_t i = 0; i < 100; ++i) {
      if (r2.labels[i] == static_cast<int>(f) && fresh_member < 0) fresh_member = i;
    }
    for (size_t i = 0; i < 200; ++i) {
      if (r1.labels[i] == match[f] && previous_member < 0) previous_member = i;
    }
    ASSERT_GE(fresh_member, 0);
    EXPECT_EQ(truth[100 + fresh_member], truth[previous_member]);
  }
  EXPECT_EQ(kept.size(), 5u);
  // Old-space centroids compared directly with new-space ones are meaningless (the reason for
  // the helper): the spaces differ, so at least the dimensions' meaning is not shared.
  EXPECT_THAT(PreviousCentroidsInNewSpace(v2, std::vector<int>(v2.size(), -1), 2),
              ElementsAre(Vector{}, Vector{}));
}

// ---------------------------------------------------------------------------------------------
// Naming
// ---------------------------------------------------------------------------------------------

TEST(DescribeThemesTest, KeywordsComeFromTheThemesOwnDistinctiveWords) {
  std::vector<std::string> texts = {
      "the refund for my invoice was wrong", "refund request ignored, invoice missing",
      "invoice total wrong and no refund",   "refund invoice error again please",
      "login fails after password reset",    "password reset email never arrives for login",
      "cannot login, password reset loops",  "password reset then login locked",
      "the weather is nice today <num>",
  };
  std::vector<int> labels = {0, 0, 0, 0, 1, 1, 1, 1, -1};
  auto themes = DescribeThemes(texts, labels, 2, {}, {}, 4, 3);
  ASSERT_EQ(themes.size(), 2u);
  std::vector<std::string> words0, words1;
  for (const auto& [term, weight] : themes[0].keywords) {
    words0.push_back(term);
    EXPECT_GT(weight, 0);
  }
  for (const auto& [term, weight] : themes[1].keywords) words1.push_back(term);
  ASSERT_GE(words0.size(), 2u);
  ASSERT_GE(words1.size(), 2u);
  EXPECT_THAT(std::vector<std::string>(words0.begin(), words0.begin() + 2),
              ::testing::UnorderedElementsAre("refund", "invoice"));
  EXPECT_THAT(std::vector<std::string>(words1.begin(), words1.begin() + 2),
              ::testing::IsSupersetOf({"password"}));
  for (const std::string& w : words0) {
    EXPECT_THAT(w, Not(HasSubstr("password")));
    EXPECT_NE(w, "the");
    EXPECT_NE(w, "<num>");
  }
  EXPECT_THAT(themes[1].phrases, ::testing::Contains("password reset"));
  EXPECT_THAT(themes[0].name, HasSubstr(" / "));
  EXPECT_TRUE(themes[0].representatives.empty());
}

TEST(DescribeThemesTest, RepresentativesAreNearestTheCentroid) {
  std::vector<std::string> texts = {"a b", "c d", "e f"};
  std::vector<Vector> points = {{1, 0}, {0.6f, 0.8f}, {0.8f, 0.6f}};
  auto themes = DescribeThemes(texts, {0, 0, 0}, 1, points, {{1, 0}}, 5, 2);
  EXPECT_THAT(themes[0].representatives, ElementsAre(0, 2));
}

}  // namespace
}  // namespace flywheel::clustering::engine
