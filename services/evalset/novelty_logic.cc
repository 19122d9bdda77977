// FindNearestCases: exact nearest-neighbour search of query texts over live cases.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "services/evalset/case_content.h"
#include "services/evalset/evalset_logic.h"
#include "services/evalset/ids.h"

namespace flywheel::evalset {
namespace {

constexpr int kMaxTexts = 100;
constexpr size_t kMaxTextBytes = 32 * 1024;
constexpr int kMaxSets = 100;

}  // namespace

absl::StatusOr<std::shared_ptr<const CaseIndex>> EvalSetLogic::NoveltyIndex(
    const std::string& project, const SetRecord& set) {
  // A set version is immutable, so its vectors are cached under (project, set, version).
  const std::string key =
      absl::StrCat(project, "\x1f", set.eval_set_id, "\x1f", set.latest_version);
  if (auto cached = novelty_cache_.Get(key)) return cached;
  ASSIGN_OR_RETURN(std::vector<CaseText> texts,
                   repository_->LatestCaseTexts(project, set.eval_set_id));
  auto index = std::make_shared<CaseIndex>();
  index->reserve(texts.size());
  for (CaseText& t : texts) {
    IndexedCase c;
    c.vector = EmbedText(t.input_text);
    c.input_snippet = Snippet(t.input_text, 200);
    c.case_id = std::move(t.case_id);
    c.theme_id = std::move(t.theme_id);
    c.theme_name = std::move(t.theme_name);
    index->push_back(std::move(c));
  }
  std::shared_ptr<const CaseIndex> result = std::move(index);
  novelty_cache_.Put(key, result);
  return result;
}

absl::StatusOr<v1::FindNearestCasesResponse> EvalSetLogic::FindNearestCases(
    const std::string& project, const v1::FindNearestCasesRequest& request) {
  if (request.texts_size() < 1 || request.texts_size() > kMaxTexts) {
    return absl::InvalidArgumentError("texts: 1..100 texts");
  }
  for (int i = 0; i < request.texts_size(); ++i) {
    if (request.texts(i).empty() || request.texts(i).size() > kMaxTextBytes) {
      return absl::InvalidArgumentError(absl::StrCat("texts[", i, "]: must be 1 byte..32 KiB"));
    }
  }
  if (request.eval_set_ids_size() > kMaxSets) {
    return absl::InvalidArgumentError("eval_set_ids: at most 100");
  }
  const int k = request.k() == 0 ? 5 : request.k();
  if (k < 1 || k > 50) return absl::InvalidArgumentError("k: must be in 1..50");
  if (!(request.min_similarity() >= 0 && request.min_similarity() <= 1)) {
    return absl::InvalidArgumentError("min_similarity: must be in [0, 1]");
  }
  std::vector<SetRecord> sets;
  if (request.eval_set_ids_size() > 0) {
    for (int i = 0; i < request.eval_set_ids_size(); ++i) {
      RETURN_IF_ERROR(ValidateId(absl::StrCat("eval_set_ids[", i, "]"), request.eval_set_ids(i)));
      ASSIGN_OR_RETURN(SetRecord set, repository_->GetSet(project, request.eval_set_ids(i)));
      sets.push_back(std::move(set));
    }
  } else {
    std::string after;
    while (true) {
      ASSIGN_OR_RETURN(std::vector<SetRecord> page,
                       repository_->ListSets(project, after, /*show_archived=*/false, 1000));
      if (page.empty()) break;
      after = page.back().eval_set_id;
      for (SetRecord& s : page) sets.push_back(std::move(s));
      if (page.size() < 1000) break;
    }
  }
  std::sort(sets.begin(), sets.end(),
            [](const SetRecord& a, const SetRecord& b) { return a.eval_set_id < b.eval_set_id; });
  sets.erase(std::unique(sets.begin(), sets.end(),
                         [](const SetRecord& a, const SetRecord& b) {
                           return a.eval_set_id == b.eval_set_id;
                         }),
             sets.end());
  std::vector<std::pair<const SetRecord*, std::shared_ptr<const CaseIndex>>> indexes;
  for (const SetRecord& set : sets) {
    if (set.latest_version == 0) continue;
    ASSIGN_OR_RETURN(auto index, NoveltyIndex(project, set));
    indexes.emplace_back(&set, std::move(index));
  }

  struct Match {
    double similarity;
    const SetRecord* set;
    const IndexedCase* c;
  };
  auto better = [](const Match& a, const Match& b) {
    if (a.similarity != b.similarity) return a.similarity > b.similarity;
    if (a.set->eval_set_id != b.set->eval_set_id) return a.set->eval_set_id < b.set->eval_set_id;
    return a.c->case_id < b.c->case_id;
  };
  v1::FindNearestCasesResponse response;
  response.set_embedder(kEmbedderName);
  for (int i = 0; i < request.texts_size(); ++i) {
    const SparseVector query = EmbedText(request.texts(i));
    // A bounded heap of the k best so far (worst on top).
    std::vector<Match> best;
    for (const auto& [set, index] : indexes) {
      for (const IndexedCase& c : *index) {
        const double similarity = CosineSimilarity(query, c.vector);
        if (similarity < request.min_similarity()) continue;
        Match m{similarity, set, &c};
        if (best.size() < static_cast<size_t>(k)) {
          best.push_back(m);
          std::push_heap(best.begin(), best.end(), better);
        } else if (better(m, best.front())) {
          std::pop_heap(best.begin(), best.end(), better);
          best.back() = m;
          std::push_heap(best.begin(), best.end(), better);
        }
      }
    }
    std::sort(best.begin(), best.end(), better);
    v1::NearestCases* nearest = response.add_results();
    nearest->set_index(i);
    for (const Match& m : best) {
      v1::CaseMatch* match = nearest->add_matches();
      match->set_eval_set_id(m.set->eval_set_id);
      match->set_case_id(m.c->case_id);
      match->set_similarity(m.similarity);
      if (!m.c->theme_id.empty()) {
        match->mutable_theme()->set_theme_id(m.c->theme_id);
        match->mutable_theme()->set_name(m.c->theme_name);
      }
      match->set_input_snippet(m.c->input_snippet);
    }
  }
  return response;
}

}  // namespace flywheel::evalset
