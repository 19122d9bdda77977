#pragma once

// Builtin theme naming: class-based TF-IDF (c-TF-IDF) keywords, characteristic phrases and
// representative examples.

#include <string>
#include <utility>
#include <vector>

#include "services/clustering/engine/vector.h"

namespace flywheel::clustering::engine {

struct ThemeDescription {
  std::vector<std::pair<std::string, double>> keywords;  // term, c-TF-IDF weight (> 0), desc
  std::vector<std::string> phrases;                      // 2-4 word n-grams, up to 5
  std::string name;                                      // top 3 keywords joined by " / "
  std::vector<int> representatives;  // indexes into texts, nearest the centroid first
};

// One description per theme 0..k-1. texts[i] has labels[i] (-1: unassigned, used only as
// background). `points`/`centroids` pick representatives; pass empty `points` to skip them.
// Stop words and MaskText placeholders are never keywords.
std::vector<ThemeDescription> DescribeThemes(const std::vector<std::string>& texts,
                                             const std::vector<int>& labels, int k,
                                             const std::vector<Vector>& points,
                                             const std::vector<Vector>& centroids, int keywords = 8,
                                             int examples = 3);

}  // namespace flywheel::clustering::engine
