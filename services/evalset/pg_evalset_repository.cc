#include "services/evalset/pg_evalset_repository.h"

#include <array>
#include <charconv>
#include <pqxx/pqxx>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/db/pg_array.h"
#include "common/db/transaction.h"
#include "common/status/status_macros.h"

namespace flywheel::evalset {
namespace {

// Times travel as microseconds since the epoch. date_part() is float8 (extract() is numeric and
// costs ~40% of a snapshot read); microsecond epochs stay below 2^53, so rounding is exact.
#define MICROS(col) "round(date_part('epoch', " col ") * 1000000)::int8"

constexpr char kSetColumns[] =
    "eval_set_id, display_name, description, input_schema, expected_output_schema, archived, "
    "latest_version, case_count, etag_seq, " MICROS("create_time") ", " MICROS(
        "update_time") ", " MICROS("archive_time");

constexpr char kVersionColumns[] =
    "v.eval_set_id, v.version, " MICROS("v.create_time") ", v.change_kind, v.added_count, "
    "v.updated_count, v.retired_count, v.note, v.case_count, v.content_digest, "
    "array_to_string(array(SELECT t.tag FROM evals.version_tags t WHERE t.project_id = "
    "v.project_id AND t.eval_set_id = v.eval_set_id AND t.version = v.version ORDER BY t.tag), "
    "',')";

constexpr char kCaseColumns[] =
    "r.case_id, coalesce(c.case_key, ''), r.content, r.content_digest, r.revision, "
    "c.added_version, r.from_version, c.retired_version, " MICROS("c.create_time") ", " MICROS(
        "r.revision_time");

constexpr char kCaseFrom[] =
    " FROM evals.case_revisions r JOIN evals.cases c ON c.project_id = r.project_id AND "
    "c.eval_set_id = r.eval_set_id AND c.case_id = r.case_id ";

// The snapshot of version $3: revisions live at it.
constexpr char kLiveAt[] =
    " r.project_id = $1 AND r.eval_set_id = $2 AND r.from_version <= $3 AND "
    "(r.to_version IS NULL OR r.to_version > $3) ";

constexpr char kRunColumns[] =
    "run_id, eval_set_id, version, requested_ref, candidate_label, metadata, state, "
    "failure_reason, " MICROS("create_time") ", " MICROS("complete_time") ", summary";

constexpr char kResultColumns[] =
    "case_id, content, case_revision, theme_id, theme_name, " MICROS("record_time");

// Sorts after every valid id (ids use only characters below '~'), as "no upper bound".
constexpr char kNoUpperBound[] = "~";

// Nullable bytea parameters travel as text: "" for NULL, "x<hex>" for a value, so one
// statement signature serves both (the value is still a bound parameter, never SQL text).
std::string NullableBytes(const std::optional<std::string>& bytes) {
  if (!bytes.has_value()) return "";
  return absl::StrCat("x", absl::BytesToHexString(*bytes));
}
#define NULLABLE_BYTEA(n) \
  "CASE WHEN $" #n " = '' THEN NULL ELSE decode(substr($" #n ", 2), 'hex') END"

template <typename T>
std::string IntArrayLiteral(const std::vector<T>& values) {
  std::vector<std::string> parts;
  for (T v : values) parts.push_back(absl::StrCat(static_cast<int>(v)));
  return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
}

std::string OptionalNumber(const std::optional<double>& v) {
  return v ? absl::StrFormat("%.17g", *v) : std::string();
}

std::string Bytes(const pqxx::field& field) { return pqxx::binarystring(field).str(); }

std::optional<std::string> OptionalBytes(const pqxx::field& field) {
  if (field.is_null()) return std::nullopt;
  return Bytes(field);
}

absl::Time Micros(const pqxx::field& field) { return absl::FromUnixMicros(field.as<int64_t>()); }

SetRecord SetFromRow(const pqxx::row& row) {
  SetRecord s;
  s.eval_set_id = row[0].as<std::string>();
  s.display_name = row[1].as<std::string>();
  s.description = row[2].as<std::string>();
  s.input_schema = OptionalBytes(row[3]);
  s.expected_output_schema = OptionalBytes(row[4]);
  s.archived = row[5].as<bool>();
  s.latest_version = row[6].as<int64_t>();
  s.case_count = row[7].as<int64_t>();
  s.etag_seq = row[8].as<int64_t>();
  s.create_time = Micros(row[9]);
  s.update_time = Micros(row[10]);
  if (!row[11].is_null()) s.archive_time = Micros(row[11]);
  return s;
}

VersionRecord VersionFromRow(const pqxx::row& row) {
  VersionRecord v;
  v.eval_set_id = row[0].as<std::string>();
  v.version = row[1].as<int64_t>();
  v.create_time = Micros(row[2]);
  v.change_kind = static_cast<v1::VersionChangeKind>(row[3].as<int>());
  v.added_count = row[4].as<int64_t>();
  v.updated_count = row[5].as<int64_t>();
  v.retired_count = row[6].as<int64_t>();
  v.note = row[7].as<std::string>();
  v.case_count = row[8].as<int64_t>();
  v.content_digest = row[9].as<std::string>();
  const std::string tags = row[10].as<std::string>();
  if (!tags.empty()) v.tags = absl::StrSplit(tags, ',');
  return v;
}

// Snapshot reads decode up to 100k rows per stream, so the hot fields skip libpqxx's
// conversions (each allocates): integers via from_chars, bytea hex decoded into a reused buffer.
int64_t FastInt(const pqxx::field& field) {
  int64_t value = 0;
  std::from_chars(field.c_str(), field.c_str() + field.size(), value);
  return value;
}

// Hex digit values; 0 for anything else (Postgres only ever sends valid hex).
constexpr std::array<uint8_t, 256> kHexValues = [] {
  std::array<uint8_t, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[c] = static_cast<uint8_t>(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) table[c] = static_cast<uint8_t>(c - 'a' + 10);
  for (int c = 'A'; c <= 'F'; ++c) table[c] = static_cast<uint8_t>(c - 'A' + 10);
  return table;
}();

// Parses a bytea column holding a serialized message. Postgres sends bytea as "\x<hex>" (the
// default bytea_output); anything else goes through libpq's decoder.
bool ParseByteaMessage(const pqxx::field& field, google::protobuf::Message* message) {
  const char* text = field.c_str();
  const size_t size = field.size();
  if (size < 2 || text[0] != '\\' || text[1] != 'x') {
    const pqxx::binarystring bytes(field);
    return message->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
  }
  thread_local std::string buffer;
  buffer.resize((size - 2) / 2);
  for (size_t i = 0; i < buffer.size(); ++i) {
    buffer[i] = static_cast<char>((kHexValues[static_cast<uint8_t>(text[2 + 2 * i])] << 4) |
                                  kHexValues[static_cast<uint8_t>(text[3 + 2 * i])]);
  }
  return message->ParseFromArray(buffer.data(), static_cast<int>(buffer.size()));
}

void SetMicros(int64_t micros, google::protobuf::Timestamp* time) {
  time->set_seconds(micros / 1000000);
  time->set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
}

v1::Case CaseFromRow(const pqxx::row& row, const std::string& eval_set_id) {
  v1::Case c;
  ParseByteaMessage(row[2], &c);
  c.set_case_id(row[0].c_str(), row[0].size());
  c.set_eval_set_id(eval_set_id);
  c.set_case_key(row[1].c_str(), row[1].size());
  c.set_content_digest(row[3].c_str(), row[3].size());
  c.set_revision(static_cast<int32_t>(FastInt(row[4])));
  c.set_added_version(FastInt(row[5]));
  c.set_revision_version(FastInt(row[6]));
  c.set_retired_version(FastInt(row[7]));
  SetMicros(FastInt(row[8]), c.mutable_create_time());
  SetMicros(FastInt(row[9]), c.mutable_revision_time());
  return c;
}

RunRecord RunFromRow(const pqxx::row& row) {
  RunRecord r;
  r.run_id = row[0].as<std::string>();
  r.eval_set_id = row[1].as<std::string>();
  r.version = row[2].as<int64_t>();
  r.requested_ref = row[3].as<std::string>();
  r.candidate_label = row[4].as<std::string>();
  r.metadata = OptionalBytes(row[5]);
  r.state = static_cast<v1::RunState>(row[6].as<int>());
  r.failure_reason = row[7].as<std::string>();
  r.create_time = Micros(row[8]);
  if (!row[9].is_null()) r.complete_time = Micros(row[9]);
  r.summary = OptionalBytes(row[10]);
  return r;
}

ResultFacts FactsFromRow(const pqxx::row& row) {
  ResultFacts f;
  f.case_id = row[0].as<std::string>();
  f.verdict = static_cast<v1::Verdict>(row[1].as<int>());
  if (!row[2].is_null()) f.score = row[2].as<double>();
  if (!row[3].is_null()) f.latency_us = row[3].as<int64_t>();
  if (!row[4].is_null()) f.cost_micros = row[4].as<int64_t>();
  f.case_revision = row[5].as<int32_t>();
  f.theme_id = row[6].as<std::string>();
  f.theme_name = row[7].as<std::string>();
  return f;
}

v1::CaseResult ResultFromRow(const pqxx::row& row, const std::string& run_id) {
  v1::CaseResult r;
  const pqxx::binarystring content(row[1]);
  r.ParseFromArray(content.data(), static_cast<int>(content.size()));
  r.set_case_id(row[0].as<std::string>());
  r.set_run_id(run_id);
  r.set_case_revision(row[2].as<int32_t>());
  if (!row[3].as<std::string>().empty()) {
    r.mutable_theme()->set_theme_id(row[3].as<std::string>());
    r.mutable_theme()->set_name(row[4].as<std::string>());
  }
  const int64_t recorded = row[5].as<int64_t>();
  r.mutable_record_time()->set_seconds(recorded / 1000000);
  r.mutable_record_time()->set_nanos(static_cast<int32_t>(recorded % 1000000) * 1000);
  return r;
}

std::vector<ThemeCount> ThemeCountsFromRows(const pqxx::result& rows) {
  std::vector<ThemeCount> out;
  for (const auto& row : rows) {
    out.push_back(
        ThemeCount{row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<int64_t>()});
  }
  return out;
}

std::string Serialized(const google::protobuf::Message& message) {
  return message.SerializeAsString();
}

class PgSetWriteTx final : public SetWriteTx {
 public:
  PgSetWriteTx(pqxx::transaction_base& tx, std::string project, SetRecord set)
      : tx_(tx), project_(std::move(project)), set_(std::move(set)) {}

  const SetRecord& set() const override { return set_; }

  absl::Status SaveSetFields(const SetRecord& set) override {
    set_ = SetFromRow(tx_.exec_prepared1(
        "evals_save_set", project_, set_.eval_set_id, set.display_name, set.description,
        NullableBytes(set.input_schema), NullableBytes(set.expected_output_schema), set.archived));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<CaseIdentity>> FindCases(
      const std::vector<std::string>& case_ids,
      const std::vector<std::string>& case_keys) override {
    std::vector<CaseIdentity> out;
    if (case_ids.empty() && case_keys.empty()) return out;
    for (const auto& row : tx_.exec_prepared("evals_find_cases", project_, set_.eval_set_id,
                                             db::TextArray(case_ids), db::TextArray(case_keys))) {
      out.push_back(CaseIdentity{row[0].as<std::string>(), row[1].as<std::string>(),
                                 row[2].as<int64_t>(), row[3].as<int64_t>(), row[4].as<int32_t>(),
                                 row[5].as<std::string>()});
    }
    return out;
  }

  absl::StatusOr<v1::Case> GetLatestCase(const std::string& case_id) override {
    pqxx::result rows = tx_.exec_prepared("evals_latest_case", project_, set_.eval_set_id, case_id);
    if (rows.empty()) return absl::NotFoundError(absl::StrCat("case ", case_id, ": not found"));
    return CaseFromRow(rows[0], set_.eval_set_id);
  }

  absl::Status InsertCases(const std::vector<NewCase>& cases, int64_t version) override {
    // Columns travel as parallel text arrays (bound parameters), unnested in SQL: one round
    // trip per table instead of one per case.
    std::vector<std::string> ids, keys, digests, contents, theme_ids, theme_names, tags, inputs;
    for (const NewCase& c : cases) {
      const RevisionWrite& r = c.revision;
      ids.push_back(r.case_id);
      keys.push_back(c.case_key);
      digests.push_back(r.content_digest);
      contents.push_back(absl::BytesToHexString(Serialized(r.content)));
      theme_ids.push_back(r.content.theme().theme_id());
      theme_names.push_back(r.content.theme().name());
      // Case tags cannot contain commas (their charset excludes them).
      tags.push_back(absl::StrJoin(r.content.tags(), ","));
      inputs.push_back(r.input_text);
    }
    tx_.exec_prepared("evals_insert_cases", project_, set_.eval_set_id, version, db::TextArray(ids),
                      db::TextArray(keys), db::TextArray(digests));
    tx_.exec_prepared("evals_insert_first_revisions", project_, set_.eval_set_id, version,
                      db::TextArray(ids), db::TextArray(contents), db::TextArray(digests),
                      db::TextArray(theme_ids), db::TextArray(theme_names), db::TextArray(tags),
                      db::TextArray(inputs));
    return absl::OkStatus();
  }

  absl::Status ReviseCase(const RevisionWrite& revision, int64_t version) override {
    tx_.exec_prepared("evals_close_revision", project_, set_.eval_set_id, revision.case_id,
                      version);
    tx_.exec_prepared("evals_set_revision_count", project_, set_.eval_set_id, revision.case_id,
                      revision.revision);
    InsertRevision(revision, version);
    return absl::OkStatus();
  }

  absl::Status RetireCase(const std::string& case_id, int64_t version) override {
    tx_.exec_prepared("evals_close_revision", project_, set_.eval_set_id, case_id, version);
    tx_.exec_prepared("evals_retire_case", project_, set_.eval_set_id, case_id, version);
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> LiveCaseCount() override {
    return tx_.exec_prepared1("evals_live_count", project_, set_.eval_set_id)[0].as<int64_t>();
  }

  absl::StatusOr<VersionRecord> CreateVersion(const VersionRecord& record) override {
    tx_.exec_prepared("evals_insert_version", project_, set_.eval_set_id, record.version,
                      static_cast<int>(record.change_kind), record.added_count,
                      record.updated_count, record.retired_count, record.note);
    set_ = SetFromRow(
        tx_.exec_prepared1("evals_set_latest", project_, set_.eval_set_id, record.version));
    return GetVersion(record.version);
  }

  absl::StatusOr<VersionRecord> GetVersion(int64_t version) override {
    pqxx::result rows = tx_.exec_prepared("evals_get_version", project_, set_.eval_set_id, version);
    if (rows.empty()) return absl::NotFoundError("version: no such version");
    return VersionFromRow(rows[0]);
  }

  absl::StatusOr<std::optional<int64_t>> GetTag(const std::string& tag) override {
    pqxx::result rows = tx_.exec_prepared("evals_get_tag", project_, set_.eval_set_id, tag);
    if (rows.empty()) return std::optional<int64_t>();
    return std::optional<int64_t>(rows[0][0].as<int64_t>());
  }

  absl::StatusOr<int64_t> CountTags() override {
    return tx_.exec_prepared1("evals_count_tags", project_, set_.eval_set_id)[0].as<int64_t>();
  }

  absl::Status PutTag(const std::string& tag, int64_t version) override {
    tx_.exec_prepared("evals_put_tag", project_, set_.eval_set_id, tag, version);
    set_ = SetFromRow(tx_.exec_prepared1("evals_touch_set", project_, set_.eval_set_id));
    return absl::OkStatus();
  }

  absl::Status DeleteTag(const std::string& tag) override {
    tx_.exec_prepared("evals_delete_tag", project_, set_.eval_set_id, tag);
    set_ = SetFromRow(tx_.exec_prepared1("evals_touch_set", project_, set_.eval_set_id));
    return absl::OkStatus();
  }

 private:
  void InsertRevision(const RevisionWrite& revision, int64_t version) {
    const pqxx::binarystring content(Serialized(revision.content));
    std::vector<std::string> tags(revision.content.tags().begin(), revision.content.tags().end());
    tx_.exec_prepared("evals_insert_revision", project_, set_.eval_set_id, revision.case_id,
                      revision.revision, version, content, revision.content_digest,
                      revision.content.theme().theme_id(), revision.content.theme().name(),
                      db::TextArray(tags), revision.input_text);
  }

  pqxx::transaction_base& tx_;
  const std::string project_;
  SetRecord set_;
};

class PgRunWriteTx final : public RunWriteTx {
 public:
  PgRunWriteTx(pqxx::transaction_base& tx, std::string project, RunRecord run)
      : tx_(tx), project_(std::move(project)), run_(std::move(run)) {}

  const RunRecord& run() const override { return run_; }

  absl::StatusOr<std::map<std::string, PinnedCase>> PinnedCases(
      const std::vector<std::string>& case_ids) override {
    std::map<std::string, PinnedCase> out;
    if (case_ids.empty()) return out;
    for (const auto& row : tx_.exec_prepared("evals_pinned_cases", project_, run_.eval_set_id,
                                             run_.version, db::TextArray(case_ids))) {
      out[row[0].as<std::string>()] =
          PinnedCase{row[1].as<int32_t>(), row[2].as<std::string>(), row[3].as<std::string>()};
    }
    return out;
  }

  absl::StatusOr<std::map<std::string, std::string>> ResultDigests(
      const std::vector<std::string>& case_ids) override {
    std::map<std::string, std::string> out;
    if (case_ids.empty()) return out;
    for (const auto& row : tx_.exec_prepared("evals_result_digests", project_, run_.run_id,
                                             db::TextArray(case_ids))) {
      out[row[0].as<std::string>()] = row[1].as<std::string>();
    }
    return out;
  }

  absl::Status UpsertResult(const ResultWrite& result) override {
    const v1::CaseResult& c = result.content;
    const pqxx::binarystring content(Serialized(c));
    const std::string score = c.has_score() ? absl::StrFormat("%.17g", c.score()) : "";
    const std::string latency =
        c.has_latency() ? absl::StrCat(c.latency().seconds() * 1000000 + c.latency().nanos() / 1000)
                        : "";
    const std::string cost = c.has_cost_micros() ? absl::StrCat(c.cost_micros()) : "";
    pqxx::result written;
    if (result.replaces_digest.has_value()) {
      written =
          tx_.exec_prepared("evals_replace_result", project_, run_.run_id, result.case_id,
                            static_cast<int>(c.verdict()), score, latency, cost, content,
                            result.content_digest, result.pinned.revision, result.pinned.theme_id,
                            result.pinned.theme_name, *result.replaces_digest);
    } else {
      written = tx_.exec_prepared("evals_insert_result", project_, run_.run_id, result.case_id,
                                  static_cast<int>(c.verdict()), score, latency, cost, content,
                                  result.content_digest, result.pinned.revision,
                                  result.pinned.theme_id, result.pinned.theme_name);
    }
    if (written.affected_rows() == 0) {
      return absl::AbortedError("a result of this case was written concurrently: retry");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<ResultFacts>> AllResults() override {
    std::vector<ResultFacts> out;
    for (const auto& row : tx_.exec_prepared("evals_result_facts", project_, run_.run_id)) {
      out.push_back(FactsFromRow(row));
    }
    return out;
  }

  absl::StatusOr<std::vector<ThemeCount>> PinnedThemeCounts() override {
    return ThemeCountsFromRows(
        tx_.exec_prepared("evals_theme_counts", project_, run_.eval_set_id, run_.version));
  }

  absl::Status FinishRun(v1::RunState state, const std::string& failure_reason,
                         const std::string& summary) override {
    tx_.exec_prepared("evals_finish_run", project_, run_.run_id, static_cast<int>(state),
                      failure_reason, pqxx::binarystring(summary));
    return absl::OkStatus();
  }

 private:
  pqxx::transaction_base& tx_;
  const std::string project_;
  RunRecord run_;
};

}  // namespace

PgEvalSetRepository::PgEvalSetRepository(db::ConnectionPool* pool, Logger* logger)
    : pool_(pool), logger_(logger) {
  auto reg = [&](const char* name, std::string sql) { pool_->RegisterStatement(name, sql); };
  // ---- sets
  reg("evals_lock_project_sets",
      "SELECT pg_advisory_xact_lock(hashtext('evals.eval_sets'), hashtext($1))");
  reg("evals_count_sets", "SELECT count(*) FROM evals.eval_sets WHERE project_id = $1");
  reg("evals_insert_set",
      absl::StrCat("INSERT INTO evals.eval_sets (project_id, eval_set_id, display_name, "
                   "description, input_schema, expected_output_schema) VALUES ($1, $2, $3, $4, ",
                   NULLABLE_BYTEA(5), ", ", NULLABLE_BYTEA(6),
                   ") ON CONFLICT DO NOTHING RETURNING ", kSetColumns));
  reg("evals_get_set", absl::StrCat("SELECT ", kSetColumns,
                                    " FROM evals.eval_sets WHERE "
                                    "project_id = $1 AND eval_set_id = $2"));
  reg("evals_lock_set", absl::StrCat("SELECT ", kSetColumns,
                                     " FROM evals.eval_sets WHERE "
                                     "project_id = $1 AND eval_set_id = $2 FOR UPDATE"));
  reg("evals_list_sets",
      absl::StrCat("SELECT ", kSetColumns,
                   " FROM evals.eval_sets WHERE project_id = $1 AND "
                   "eval_set_id > $2 AND ($3 OR NOT archived) ORDER BY eval_set_id LIMIT $4"));
  reg("evals_save_set",
      absl::StrCat("UPDATE evals.eval_sets SET display_name = $3, description = $4, "
                   "input_schema = ",
                   NULLABLE_BYTEA(5), ", expected_output_schema = ", NULLABLE_BYTEA(6),
                   ", archived = $7, archive_time = CASE WHEN $7 THEN "
                   "coalesce(archive_time, now()) ELSE NULL END, etag_seq = etag_seq + 1, "
                   "update_time = now() WHERE project_id = $1 AND eval_set_id = $2 RETURNING ",
                   kSetColumns));
  reg("evals_touch_set",
      absl::StrCat("UPDATE evals.eval_sets SET update_time = now() WHERE project_id = $1 AND "
                   "eval_set_id = $2 RETURNING ",
                   kSetColumns));
  reg("evals_set_latest",
      absl::StrCat("UPDATE evals.eval_sets s SET latest_version = $3, case_count = "
                   "(SELECT case_count FROM evals.set_versions v WHERE v.project_id = $1 AND "
                   "v.eval_set_id = $2 AND v.version = $3), update_time = now() WHERE "
                   "s.project_id = $1 AND s.eval_set_id = $2 RETURNING ",
                   kSetColumns));
  // ---- cases
  reg("evals_find_cases",
      "SELECT case_id, coalesce(case_key, ''), added_version, retired_version, revision_count, "
      "first_content_digest FROM evals.cases WHERE project_id = $1 AND eval_set_id = $2 AND "
      "(case_id = ANY($3::text[]) OR case_key = ANY($4::text[]))");
  reg("evals_latest_case",
      absl::StrCat("SELECT ", kCaseColumns, kCaseFrom,
                   "WHERE r.project_id = $1 AND r.eval_set_id = $2 AND r.case_id = $3 AND "
                   "r.to_version IS NULL"));
  reg("evals_insert_cases",
      "INSERT INTO evals.cases (project_id, eval_set_id, case_id, case_key, added_version, "
      "first_content_digest) SELECT $1, $2, u.case_id, NULLIF(u.case_key, ''), $3, u.digest "
      "FROM unnest($4::text[], $5::text[], $6::text[]) AS u(case_id, case_key, digest)");
  reg("evals_insert_first_revisions",
      "INSERT INTO evals.case_revisions (project_id, eval_set_id, case_id, revision, "
      "from_version, content, content_digest, theme_id, theme_name, tags, input_text) "
      "SELECT $1, $2, u.case_id, 1, $3, decode(u.content, 'hex'), u.digest, u.theme_id, "
      "u.theme_name, CASE WHEN u.tags = '' THEN '{}'::text[] ELSE string_to_array(u.tags, ',') "
      "END, u.input_text FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], "
      "$8::text[], $9::text[], $10::text[]) AS u(case_id, content, digest, theme_id, "
      "theme_name, tags, input_text)");
  reg("evals_insert_revision",
      "INSERT INTO evals.case_revisions (project_id, eval_set_id, case_id, revision, "
      "from_version, content, content_digest, theme_id, theme_name, tags, input_text) VALUES "
      "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text[], $11)");
  reg("evals_close_revision",
      "UPDATE evals.case_revisions SET to_version = $4 WHERE project_id = $1 AND "
      "eval_set_id = $2 AND case_id = $3 AND to_version IS NULL");
  reg("evals_set_revision_count",
      "UPDATE evals.cases SET revision_count = $4 WHERE project_id = $1 AND eval_set_id = $2 "
      "AND case_id = $3");
  reg("evals_retire_case",
      "UPDATE evals.cases SET retired_version = $4 WHERE project_id = $1 AND eval_set_id = $2 "
      "AND case_id = $3 AND retired_version = 0");
  reg("evals_live_count",
      "SELECT count(*) FROM evals.case_revisions WHERE project_id = $1 AND eval_set_id = $2 AND "
      "to_version IS NULL");
  // ---- versions and tags. The digest is computed where the rows are (see evalset.proto):
  // SHA-256 over "<case_id>\t<case digest>\n" of the live cases in bytewise case_id order.
  reg("evals_insert_version",
      "INSERT INTO evals.set_versions (project_id, eval_set_id, version, change_kind, "
      "added_count, updated_count, retired_count, note, case_count, content_digest) "
      "SELECT $1, $2, $3, $4, $5, $6, $7, $8, count(*), 'sha256:' || encode(sha256(convert_to("
      "coalesce(string_agg(case_id || E'\\t' || content_digest || E'\\n', '' ORDER BY case_id), "
      "''), 'UTF8')), 'hex') FROM evals.case_revisions WHERE project_id = $1 AND "
      "eval_set_id = $2 AND to_version IS NULL");
  reg("evals_get_version",
      absl::StrCat("SELECT ", kVersionColumns,
                   " FROM evals.set_versions v WHERE "
                   "v.project_id = $1 AND v.eval_set_id = $2 AND v.version = $3"));
  reg("evals_list_versions",
      absl::StrCat("SELECT ", kVersionColumns,
                   " FROM evals.set_versions v WHERE "
                   "v.project_id = $1 AND v.eval_set_id = $2 AND ($3 = 0 OR v.version < $3) AND "
                   "(NOT $4 OR EXISTS (SELECT 1 FROM evals.version_tags t WHERE t.project_id = "
                   "v.project_id AND t.eval_set_id = v.eval_set_id AND t.version = v.version)) "
                   "ORDER BY v.version DESC LIMIT $5"));
  reg("evals_get_tag",
      "SELECT version FROM evals.version_tags WHERE project_id = $1 AND eval_set_id = $2 AND "
      "tag = $3");
  reg("evals_count_tags",
      "SELECT count(*) FROM evals.version_tags WHERE project_id = $1 AND eval_set_id = $2");
  reg("evals_put_tag",
      "INSERT INTO evals.version_tags (project_id, eval_set_id, tag, version) VALUES "
      "($1, $2, $3, $4) ON CONFLICT (project_id, eval_set_id, tag) DO UPDATE SET version = "
      "EXCLUDED.version, update_time = now()");
  reg("evals_delete_tag",
      "DELETE FROM evals.version_tags WHERE project_id = $1 AND eval_set_id = $2 AND tag = $3");
  // ---- snapshots
  reg("evals_case_at",
      absl::StrCat("SELECT ", kCaseColumns, kCaseFrom, "WHERE", kLiveAt, "AND r.case_id = $4"));
  reg("evals_cases_at",
      absl::StrCat("SELECT ", kCaseColumns, kCaseFrom, "WHERE", kLiveAt,
                   "AND r.case_id > $4 AND (cardinality($5::text[]) = 0 OR "
                   "r.theme_id = ANY($5::text[])) AND r.tags @> $6::text[] "
                   // Repeated on `c` so both sides of the join start at the page's position
                   // (otherwise a merge join re-reads cases from the start on every page).
                   "AND c.project_id = $1 AND c.eval_set_id = $2 AND c.case_id > $4 "
                   // An upper bound always (see kNoUpperBound) keeps the range in the index
                   // condition of the generic plan Postgres switches to after a few pages.
                   "AND r.case_id <= $8 AND c.case_id <= $8 "
                   "ORDER BY r.case_id LIMIT $7"));
  reg("evals_page_bounds",
      absl::StrCat("SELECT case_id FROM (SELECT r.case_id, row_number() OVER (ORDER BY "
                   "r.case_id) AS n FROM evals.case_revisions r WHERE",
                   kLiveAt,
                   "AND r.case_id > $4 AND (cardinality($5::text[]) = 0 OR "
                   "r.theme_id = ANY($5::text[])) AND r.tags @> $6::text[]) t "
                   "WHERE n % $7 = 0 ORDER BY case_id"));
  reg("evals_count_at", absl::StrCat("SELECT count(*) FROM evals.case_revisions r WHERE", kLiveAt,
                                     "AND r.case_id > $4 AND (cardinality($5::text[]) = 0 OR "
                                     "r.theme_id = ANY($5::text[])) AND r.tags @> $6::text[]"));
  reg("evals_inputs_at",
      absl::StrCat("SELECT r.case_id, r.input_text FROM evals.case_revisions r WHERE", kLiveAt,
                   "AND r.case_id = ANY($4::text[])"));
  reg("evals_latest_texts",
      "SELECT case_id, theme_id, theme_name, input_text FROM evals.case_revisions WHERE "
      "project_id = $1 AND eval_set_id = $2 AND to_version IS NULL ORDER BY case_id");
  reg("evals_theme_counts",
      absl::StrCat("SELECT r.theme_id, max(r.theme_name), count(*) FROM evals.case_revisions r "
                   "WHERE",
                   kLiveAt, "GROUP BY r.theme_id"));
  // ---- runs and results
  reg("evals_insert_run",
      absl::StrCat("INSERT INTO evals.runs (project_id, run_id, eval_set_id, version, "
                   "requested_ref, candidate_label, metadata, state) VALUES ($1, $2, $3, $4, $5, "
                   "$6, ",
                   NULLABLE_BYTEA(7), ", $8) ON CONFLICT DO NOTHING"));
  reg("evals_get_run", absl::StrCat("SELECT ", kRunColumns,
                                    " FROM evals.runs WHERE "
                                    "project_id = $1 AND run_id = $2"));
  reg("evals_lock_run", absl::StrCat("SELECT ", kRunColumns,
                                     " FROM evals.runs WHERE "
                                     "project_id = $1 AND run_id = $2 FOR UPDATE"));
  reg("evals_share_run", absl::StrCat("SELECT ", kRunColumns,
                                      " FROM evals.runs WHERE "
                                      "project_id = $1 AND run_id = $2 FOR SHARE"));
  reg("evals_list_runs",
      absl::StrCat(
          "SELECT ", kRunColumns,
          " FROM evals.runs WHERE project_id = $1 AND ($2 = '' OR "
          "eval_set_id = $2) AND ($3 = '' OR candidate_label = $3) AND (cardinality($4::int[]) = 0 "
          "OR state = ANY($4::int[])) AND (NULLIF($5, '') IS NULL OR create_time >= "
          "'epoch'::timestamptz + NULLIF($5, '')::int8 * interval '1 microsecond') AND "
          "(NULLIF($6, '') IS NULL OR create_time < 'epoch'::timestamptz + NULLIF($6, '')::int8 * "
          "interval '1 microsecond') AND (NULLIF($7, '') IS NULL OR (create_time, run_id) < "
          "('epoch'::timestamptz + NULLIF($7, '')::int8 * interval '1 microsecond', $8)) "
          "ORDER BY create_time DESC, run_id DESC LIMIT $9"));
  reg("evals_pinned_cases",
      absl::StrCat("SELECT r.case_id, r.revision, r.theme_id, r.theme_name FROM "
                   "evals.case_revisions r WHERE",
                   kLiveAt, "AND r.case_id = ANY($4::text[])"));
  reg("evals_result_digests",
      "SELECT case_id, content_digest FROM evals.results WHERE project_id = $1 AND run_id = $2 "
      "AND case_id = ANY($3::text[])");
  constexpr char kResultValues[] =
      "($1, $2, $3, $4, NULLIF($5, '')::float8, NULLIF($6, '')::int8, NULLIF($7, '')::int8, $8, "
      "$9, $10, $11, $12)";
  reg("evals_insert_result",
      absl::StrCat("INSERT INTO evals.results (project_id, run_id, case_id, verdict, score, "
                   "latency_us, cost_micros, content, content_digest, case_revision, theme_id, "
                   "theme_name) VALUES ",
                   kResultValues, " ON CONFLICT DO NOTHING"));
  reg("evals_replace_result",
      "UPDATE evals.results SET verdict = $4, score = NULLIF($5, '')::float8, latency_us = "
      "NULLIF($6, '')::int8, cost_micros = NULLIF($7, '')::int8, content = $8, content_digest = "
      "$9, case_revision = $10, theme_id = $11, theme_name = $12, record_time = now() WHERE "
      "project_id = $1 AND run_id = $2 AND case_id = $3 AND content_digest = $13");
  reg("evals_result_facts",
      "SELECT case_id, verdict, score, latency_us, cost_micros, case_revision, theme_id, "
      "theme_name FROM evals.results WHERE project_id = $1 AND run_id = $2 ORDER BY case_id");
  reg("evals_finish_run",
      "UPDATE evals.runs SET state = $3, failure_reason = $4, summary = $5, complete_time = "
      "now() WHERE project_id = $1 AND run_id = $2");
  reg("evals_list_results",
      absl::StrCat("SELECT ", kResultColumns,
                   " FROM evals.results WHERE project_id = $1 AND "
                   "run_id = $2 AND case_id > $3 AND (cardinality($4::int[]) = 0 OR verdict = "
                   "ANY($4::int[])) AND (cardinality($5::text[]) = 0 OR theme_id = "
                   "ANY($5::text[])) AND (NULLIF($6, '') IS NULL OR score >= NULLIF($6, "
                   "'')::float8) AND (NULLIF($7, '') IS NULL OR score <= NULLIF($7, '')::float8) "
                   "ORDER BY case_id LIMIT $8"));
  reg("evals_results_for", absl::StrCat("SELECT ", kResultColumns,
                                        " FROM evals.results WHERE project_id = $1 AND "
                                        "run_id = $2 AND case_id = ANY($3::text[])"));
}

absl::StatusOr<SetRecord> PgEvalSetRepository::InsertSet(const std::string& project_id,
                                                         const SetRecord& set, int64_t max_sets) {
  SetRecord out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        // Serializes creators of one project so the limit holds under concurrency.
        tx.exec_prepared("evals_lock_project_sets", project_id);
        pqxx::result rows = tx.exec_prepared(
            "evals_insert_set", project_id, set.eval_set_id, set.display_name, set.description,
            NullableBytes(set.input_schema), NullableBytes(set.expected_output_schema));
        if (rows.empty()) return absl::AlreadyExistsError("eval_set_id taken");
        const int64_t count = tx.exec_prepared1("evals_count_sets", project_id)[0].as<int64_t>();
        if (count > max_sets) {
          return absl::ResourceExhaustedError(
              absl::StrCat("the project already has ", max_sets, " eval sets"));
        }
        out = SetFromRow(rows[0]);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<SetRecord> PgEvalSetRepository::GetSet(const std::string& project_id,
                                                      const std::string& eval_set_id) {
  SetRecord out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result rows = tx.exec_prepared("evals_get_set", project_id, eval_set_id);
        if (rows.empty()) return absl::NotFoundError("eval set not found");
        out = SetFromRow(rows[0]);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<SetRecord>> PgEvalSetRepository::ListSets(const std::string& project_id,
                                                                     const std::string& after_id,
                                                                     bool show_archived,
                                                                     int limit) {
  std::vector<SetRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row :
             tx.exec_prepared("evals_list_sets", project_id, after_id, show_archived, limit)) {
          out.push_back(SetFromRow(row));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::Status PgEvalSetRepository::WriteSet(const std::string& project_id,
                                           const std::string& eval_set_id,
                                           const std::function<absl::Status(SetWriteTx&)>& body) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result rows = tx.exec_prepared("evals_lock_set", project_id, eval_set_id);
        if (rows.empty()) return absl::NotFoundError("eval set not found");
        PgSetWriteTx write(tx, project_id, SetFromRow(rows[0]));
        return body(write);
      },
      logger_);
}

absl::StatusOr<VersionRecord> PgEvalSetRepository::GetVersion(const std::string& project_id,
                                                              const std::string& eval_set_id,
                                                              int64_t version) {
  VersionRecord out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result rows = tx.exec_prepared("evals_get_version", project_id, eval_set_id, version);
        if (rows.empty()) return absl::NotFoundError("version: no such version");
        out = VersionFromRow(rows[0]);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<int64_t> PgEvalSetRepository::GetTaggedVersion(const std::string& project_id,
                                                              const std::string& eval_set_id,
                                                              const std::string& tag) {
  int64_t out = 0;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result rows = tx.exec_prepared("evals_get_tag", project_id, eval_set_id, tag);
        if (rows.empty()) return absl::NotFoundError("version.tag: no such tag");
        out = rows[0][0].as<int64_t>();
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<VersionRecord>> PgEvalSetRepository::ListVersions(
    const std::string& project_id, const std::string& eval_set_id, int64_t before_version,
    bool tagged_only, int limit) {
  std::vector<VersionRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared("evals_list_versions", project_id, eval_set_id,
                                                before_version, tagged_only, limit)) {
          out.push_back(VersionFromRow(row));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::optional<v1::Case>> PgEvalSetRepository::GetCaseAt(
    const std::string& project_id, const std::string& eval_set_id, const std::string& case_id,
    int64_t version) {
  std::optional<v1::Case> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.reset();
        pqxx::result rows =
            tx.exec_prepared("evals_case_at", project_id, eval_set_id, version, case_id);
        if (!rows.empty()) out = CaseFromRow(rows[0], eval_set_id);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<v1::Case>> PgEvalSetRepository::ListCasesAt(
    const std::string& project_id, const std::string& eval_set_id, const SnapshotQuery& query,
    int limit) {
  std::vector<v1::Case> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        pqxx::result rows = tx.exec_prepared(
            "evals_cases_at", project_id, eval_set_id, query.version, query.after_case_id,
            db::TextArray(query.theme_ids), db::TextArray(query.tags), limit,
            query.through_case_id.empty() ? kNoUpperBound : query.through_case_id);
        out.reserve(rows.size());
        for (const auto& row : rows) out.push_back(CaseFromRow(row, eval_set_id));
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<int64_t> PgEvalSetRepository::CountCasesAt(const std::string& project_id,
                                                          const std::string& eval_set_id,
                                                          const SnapshotQuery& query) {
  int64_t out = 0;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out = tx.exec_prepared1("evals_count_at", project_id, eval_set_id, query.version,
                                query.after_case_id, db::TextArray(query.theme_ids),
                                db::TextArray(query.tags))[0]
                  .as<int64_t>();
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<std::string>> PgEvalSetRepository::PageBoundaries(
    const std::string& project_id, const std::string& eval_set_id, const SnapshotQuery& query,
    int page_rows) {
  std::vector<std::string> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared(
                 "evals_page_bounds", project_id, eval_set_id, query.version, query.after_case_id,
                 db::TextArray(query.theme_ids), db::TextArray(query.tags), page_rows)) {
          out.push_back(row[0].as<std::string>());
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> PgEvalSetRepository::InputTextsAt(
    const std::string& project_id, const std::string& eval_set_id, int64_t version,
    const std::vector<std::string>& case_ids) {
  std::map<std::string, std::string> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared("evals_inputs_at", project_id, eval_set_id, version,
                                                db::TextArray(case_ids))) {
          out[row[0].as<std::string>()] = row[1].as<std::string>();
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<CaseText>> PgEvalSetRepository::LatestCaseTexts(
    const std::string& project_id, const std::string& eval_set_id) {
  std::vector<CaseText> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared("evals_latest_texts", project_id, eval_set_id)) {
          out.push_back(CaseText{eval_set_id, row[0].as<std::string>(), row[1].as<std::string>(),
                                 row[2].as<std::string>(), row[3].as<std::string>()});
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::Status PgEvalSetRepository::InsertRun(const std::string& project_id, const RunRecord& run) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result result =
            tx.exec_prepared("evals_insert_run", project_id, run.run_id, run.eval_set_id,
                             run.version, run.requested_ref, run.candidate_label,
                             NullableBytes(run.metadata), static_cast<int>(run.state));
        if (result.affected_rows() == 0) return absl::AlreadyExistsError("run_id taken");
        return absl::OkStatus();
      },
      logger_);
}

absl::StatusOr<RunRecord> PgEvalSetRepository::GetRun(const std::string& project_id,
                                                      const std::string& run_id) {
  RunRecord out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result rows = tx.exec_prepared("evals_get_run", project_id, run_id);
        if (rows.empty()) return absl::NotFoundError("run not found");
        out = RunFromRow(rows[0]);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<RunRecord>> PgEvalSetRepository::ListRuns(const std::string& project_id,
                                                                     const RunQuery& query,
                                                                     int limit) {
  std::vector<RunRecord> out;
  const std::string from =
      query.created_from ? absl::StrCat(absl::ToUnixMicros(*query.created_from)) : "";
  const std::string before =
      query.created_before ? absl::StrCat(absl::ToUnixMicros(*query.created_before)) : "";
  const std::string after_time =
      query.after ? absl::StrCat(absl::ToUnixMicros(query.after->first)) : "";
  const std::string after_id = query.after ? query.after->second : "";
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared(
                 "evals_list_runs", project_id, query.eval_set_id, query.candidate_label,
                 IntArrayLiteral(query.states), from, before, after_time, after_id, limit)) {
          out.push_back(RunFromRow(row));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::Status PgEvalSetRepository::WriteRun(const std::string& project_id, const std::string& run_id,
                                           bool exclusive,
                                           const std::function<absl::Status(RunWriteTx&)>& body) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result rows =
            tx.exec_prepared(exclusive ? "evals_lock_run" : "evals_share_run", project_id, run_id);
        if (rows.empty()) return absl::NotFoundError("run not found");
        PgRunWriteTx write(tx, project_id, RunFromRow(rows[0]));
        return body(write);
      },
      logger_);
}

absl::StatusOr<std::vector<ResultFacts>> PgEvalSetRepository::RunResults(
    const std::string& project_id, const std::string& run_id) {
  std::vector<ResultFacts> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared("evals_result_facts", project_id, run_id)) {
          out.push_back(FactsFromRow(row));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<ThemeCount>> PgEvalSetRepository::ThemeCountsAt(
    const std::string& project_id, const std::string& eval_set_id, int64_t version) {
  std::vector<ThemeCount> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out = ThemeCountsFromRows(
            tx.exec_prepared("evals_theme_counts", project_id, eval_set_id, version));
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<v1::CaseResult>> PgEvalSetRepository::ListResults(
    const std::string& project_id, const std::string& run_id, const ResultQuery& query, int limit) {
  std::vector<v1::CaseResult> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared(
                 "evals_list_results", project_id, run_id, query.after_case_id,
                 IntArrayLiteral(query.verdicts), db::TextArray(query.theme_ids),
                 OptionalNumber(query.min_score), OptionalNumber(query.max_score), limit)) {
          out.push_back(ResultFromRow(row, run_id));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::map<std::string, v1::CaseResult>> PgEvalSetRepository::ResultsFor(
    const std::string& project_id, const std::string& run_id,
    const std::vector<std::string>& case_ids) {
  std::map<std::string, v1::CaseResult> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row :
             tx.exec_prepared("evals_results_for", project_id, run_id, db::TextArray(case_ids))) {
          v1::CaseResult r = ResultFromRow(row, run_id);
          out[r.case_id()] = std::move(r);
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

}  // namespace flywheel::evalset
