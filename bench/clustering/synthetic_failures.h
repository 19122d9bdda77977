#pragma once

// Seeded generator of synthetic flagged traces grouped into known failure themes (the labelled
// data of the clustering benchmarks; documented in docs/clustering.md).
//
// Each theme is a (user intent, failure) pair with several phrasings of the user input, the start
// of the assistant's output and feedback comments. Templates have slots ({product}, {num}, {id},
// {url}, {lang}, {city}, {file}, {person}) filled at random, so masking matters. Themes share
// vocabulary on purpose: several themes share an intent (e.g. refunds) with different failures,
// and several share a failure (e.g. hallucination) across intents. Each trace also gets random
// chit-chat, and a share of traces has no comment or an off-topic sentence.

#include <cstdint>
#include <string>
#include <vector>

#include "services/clustering/engine/text.h"

namespace flywheel::clustering::bench {

struct SyntheticTrace {
  engine::TraceText text;
  int theme = 0;  // ground-truth theme index
};

struct SyntheticOptions {
  int count = 10000;
  uint64_t seed = 1;
  // Themes [0, late_themes_from) appear throughout; the others only in the second half of the
  // sequence (new failure modes emerging over time). -1: all themes throughout.
  int late_themes_from = -1;
  double comment_probability = 0.7;
  double noise_probability = 0.15;  // an unrelated sentence appended to the input
};

// Number of themes the generator knows.
int SyntheticThemeCount();
// Short name of a theme (e.g. "refund amount wrong").
std::string SyntheticThemeName(int theme);

// Traces in "time" order (index = arrival order), themes drawn with fixed unequal weights.
std::vector<SyntheticTrace> GenerateSyntheticTraces(const SyntheticOptions& options);

}  // namespace flywheel::clustering::bench
