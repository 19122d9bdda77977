// clustering_quality_bench: clusters labelled texts with the engine at a given k, for
// bench/clustering_quality/quality.py (which computes the metrics for it and for scikit-learn on
// the same texts).
//
//   clustering_quality_bench --input texts.tsv --k 12 --output labels.txt [knobs]
//     texts.tsv: one "label<TAB>text" per line; labels.txt gets one predicted theme per line.
//   clustering_quality_bench --synthetic 6000 --seed 7 --output synthetic.tsv
//     writes the synthetic failure-theme set (bench/clustering/synthetic_failures.h) as
//     "theme<TAB>PrepareText(trace)" lines.

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "bench/clustering/synthetic_failures.h"
#include "services/clustering/engine/engine.h"

namespace engine = flywheel::clustering::engine;
namespace bench = flywheel::clustering::bench;

namespace {

int Usage() {
  std::cerr << "usage: clustering_quality_bench --input F --k K --output F [--dimension D] "
               "[--singular_power P] [--char_weight W] [--common 0|1] [--max_features N] "
               "[--restarts R] [--seed S]\n"
               "       clustering_quality_bench --synthetic N [--seed S] --output F\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string input, output;
  int k = 0, synthetic = 0;
  engine::BuiltinEmbedderOptions embed;
  engine::KMeansOptions kmeans;
  kmeans.restarts = 10;
  uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    std::string value = argv[i + 1];
    double number = 0;
    if (!absl::SimpleAtod(value, &number) && flag != "--input" && flag != "--output") {
      return Usage();
    }
    if (flag == "--input") {
      input = value;
    } else if (flag == "--output") {
      output = value;
    } else if (flag == "--k") {
      k = static_cast<int>(number);
    } else if (flag == "--synthetic") {
      synthetic = static_cast<int>(number);
    } else if (flag == "--dimension") {
      embed.dimension = static_cast<int>(number);
    } else if (flag == "--singular_power") {
      embed.singular_power = number;
    } else if (flag == "--char_weight") {
      embed.char_weight = number;
    } else if (flag == "--common") {
      embed.remove_common_component = number != 0;
    } else if (flag == "--max_features") {
      embed.max_features = static_cast<int>(number);
    } else if (flag == "--char_min") {
      embed.char_ngram_min = static_cast<int>(number);
    } else if (flag == "--bigrams") {
      embed.word_bigrams = number != 0;
    } else if (flag == "--restarts") {
      kmeans.restarts = static_cast<int>(number);
    } else if (flag == "--seed") {
      seed = static_cast<uint64_t>(number);
    } else {
      return Usage();
    }
  }
  if (output.empty()) return Usage();
  if (synthetic > 0) {
    bench::SyntheticOptions options;
    options.count = synthetic;
    options.seed = seed;
    std::ofstream out(output);
    for (const bench::SyntheticTrace& trace : bench::GenerateSyntheticTraces(options)) {
      std::string text = absl::StrReplaceAll(engine::PrepareText(trace.text),
                                             {{"\t", " "}, {"\n", " "}, {"\r", " "}});
      out << trace.theme << '\t' << text << '\n';
    }
    return out.good() ? 0 : 1;
  }
  if (input.empty() || k < 2) return Usage();
  std::ifstream in(input);
  std::vector<std::string> texts;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits('\t', 1));
    texts.push_back(engine::MaskText(parts.size() > 1 ? parts[1] : ""));
  }
  auto start = std::chrono::steady_clock::now();
  embed.seed = seed;
  auto embedder = engine::BuiltinEmbedder::Fit(texts, embed);
  if (!embedder.ok()) {
    std::cerr << embedder.status() << "\n";
    return 1;
  }
  auto vectors = (*embedder)->Embed(texts);
  kmeans.k = k;
  kmeans.seed = seed;
  auto result = engine::ClusterVectors(*vectors, kmeans);
  if (!result.ok()) {
    std::cerr << result.status() << "\n";
    return 1;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::ofstream out(output);
  for (int label : result->labels) out << label << '\n';
  std::cerr << "engine: " << texts.size() << " texts, " << (*embedder)->FeatureCount()
            << " features, " << seconds << " s\n";
  return out.good() ? 0 : 1;
}
