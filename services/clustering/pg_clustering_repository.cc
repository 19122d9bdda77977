#include "services/clustering/pg_clustering_repository.h"

#include <algorithm>
#include <limits>
#include <map>
#include <pqxx/pqxx>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/db/pg_array.h"
#include "common/db/transaction.h"
#include "common/status/status_macros.h"

namespace flywheel::clustering {
namespace {

// Times travel as microseconds since the epoch, in both directions.
#define MICROS(col) "(extract(epoch FROM " col ") * 1000000)::int8"
#define TS(n) "('epoch'::timestamptz + $" #n "::int8 * interval '1 microsecond')"
// Arrays come back as one text with this separator (stripped from stored text).
#define SEP "E'\\x1f'"
constexpr char kSep = '\x1f';

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time Micros(const pqxx::field& f) { return absl::FromUnixMicros(f.as<int64_t>()); }
std::optional<absl::Time> OptionalMicros(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return Micros(f);
}
std::string Bytes(const pqxx::field& f) { return pqxx::binarystring(f).str(); }
std::string Hex(const std::string& bytes) { return absl::BytesToHexString(bytes); }
std::string Num(double v) { return absl::StrFormat("%.17g", v); }

std::string Clean(const std::string& s) {
  std::string out = s;
  out.erase(std::remove(out.begin(), out.end(), kSep), out.end());
  return out;
}
std::string JoinClean(const std::vector<std::string>& values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += kSep;
    out += Clean(values[i]);
  }
  return out;
}
std::vector<std::string> SplitSep(const std::string& s) {
  if (s.empty()) return {};
  return absl::StrSplit(s, kSep);
}
std::vector<double> SplitDoubles(const std::string& s) {
  std::vector<double> out;
  for (const auto& part : SplitSep(s)) {
    double v = 0;
    if (!absl::SimpleAtod(part, &v)) v = 0;
    out.push_back(v);
  }
  return out;
}

template <typename T>
std::string IntArray(const std::vector<T>& values) {
  std::vector<int64_t> wide(values.begin(), values.end());
  return db::NumberArray(wide);
}

constexpr char kClusteringColumns[] =
    "c.version, c.state, c.trigger, coalesce(c.request_id, ''), coalesce(c.request_hash, ''), "
    MICROS("c.create_time") ", " MICROS("c.start_time") ", " MICROS("c.end_time") ", "
    MICROS("c.window_start") ", " MICROS("c.window_end") ", c.params, c.progress, "
    "c.member_count, c.unassigned_count, c.theme_count, c.group_count, c.matched_count, "
    "c.new_count, c.retired_count, c.previous_version, c.error_message, c.theme_generation, "
    "c.streaming_count, c.project_id, c.hidden_theme_count";

ClusteringRecord ClusteringFromRow(const pqxx::row& row) {
  ClusteringRecord c;
  c.version = row[0].as<int64_t>();
  c.state = static_cast<v1::ClusteringState>(row[1].as<int>());
  c.trigger = static_cast<v1::ClusteringTrigger>(row[2].as<int>());
  c.request_id = row[3].as<std::string>();
  c.request_hash = row[4].as<std::string>();
  c.create_time = Micros(row[5]);
  c.start_time = OptionalMicros(row[6]);
  c.end_time = OptionalMicros(row[7]);
  c.window_start = Micros(row[8]);
  c.window_end = Micros(row[9]);
  c.params.ParseFromString(Bytes(row[10]));
  c.progress.ParseFromString(Bytes(row[11]));
  c.member_count = row[12].as<int64_t>();
  c.unassigned_count = row[13].as<int64_t>();
  c.theme_count = row[14].as<int32_t>();
  c.group_count = row[15].as<int32_t>();
  c.matched_count = row[16].as<int32_t>();
  c.new_count = row[17].as<int32_t>();
  c.retired_count = row[18].as<int32_t>();
  c.previous_version = row[19].as<int64_t>();
  c.error_message = row[20].as<std::string>();
  c.theme_generation = row[21].as<int64_t>();
  c.streaming_assigned_count = row[22].as<int64_t>();
  c.project_id = row[23].as<std::string>();
  c.hidden_theme_count = row[24].as<int32_t>();
  return c;
}

constexpr char kTraceColumns[] =
    "t.trace_id, t.flagged, t.feed_sequence, " MICROS("t.flag_time") ", " MICROS(
        "t.create_time") ", t.user_key, t.session_id, t.user_id, t.feature_area, t.model, "
                         "t.model_version, t.prompt_version, t.signal_classes, t.input_text, "
                         "t.output_head, array_to_string(t.comments, " SEP ")";

TraceRecord TraceFromRow(const pqxx::row& row) {
  TraceRecord t;
  t.trace_id = row[0].as<std::string>();
  t.flagged = row[1].as<bool>();
  t.feed_sequence = row[2].as<int64_t>();
  t.flag_time = Micros(row[3]);
  t.create_time = Micros(row[4]);
  t.user_key = row[5].as<std::string>();
  t.session_id = row[6].as<std::string>();
  t.user_id = row[7].as<std::string>();
  t.feature_area = row[8].as<std::string>();
  t.model = row[9].as<std::string>();
  t.model_version = row[10].as<std::string>();
  t.prompt_version = row[11].as<std::string>();
  t.signal_classes = row[12].as<int>();
  t.input_text = row[13].as<std::string>();
  t.output_head = row[14].as<std::string>();
  t.comments = SplitSep(row[15].as<std::string>());
  return t;
}

constexpr char kClusterColumns[] =
    "cv.cluster_id, cv.version, cv.level, cv.state, c.state, cv.parent_id, cv.name, "
    "cv.description, array_to_string(cv.keyword_terms, " SEP "), array_to_string("
    "cv.keyword_weights, " SEP "), array_to_string(cv.key_phrases, " SEP "), array_to_string("
    "cv.example_trace_ids, " SEP "), array_to_string(cv.example_snippets, " SEP "), "
    "array_to_string(cv.example_similarities, " SEP "), cv.centroid, " MICROS(
        "cv.update_time") ", c.operator_name, c.name_pinned, c.operator_description, "
                          "coalesce(c.merged_into, ''), array_to_string(c.split_into, " SEP
    "), c.created_version, c.last_seen_version, c.etag_seq, " MICROS("c.update_time");

constexpr char kClusterFrom[] =
    " FROM clustering.cluster_versions cv JOIN clustering.clusters c ON c.project_id = "
    "cv.project_id AND c.cluster_id = cv.cluster_id ";

ClusterRecord ClusterFromRow(const pqxx::row& row) {
  ClusterRecord c;
  c.cluster_id = row[0].as<std::string>();
  c.version = row[1].as<int64_t>();
  c.level = static_cast<v1::ClusterLevel>(row[2].as<int>());
  c.state = static_cast<v1::ClusterState>(row[3].as<int>());
  c.current_state = static_cast<v1::ClusterState>(row[4].as<int>());
  c.parent_id = row[5].as<std::string>();
  c.name = row[6].as<std::string>();
  c.description = row[7].as<std::string>();
  const std::vector<std::string> terms = SplitSep(row[8].as<std::string>());
  const std::vector<double> weights = SplitDoubles(row[9].as<std::string>());
  for (size_t i = 0; i < terms.size(); ++i) {
    c.keywords.emplace_back(terms[i], i < weights.size() ? weights[i] : 0.0);
  }
  c.key_phrases = SplitSep(row[10].as<std::string>());
  const std::vector<std::string> ids = SplitSep(row[11].as<std::string>());
  const std::vector<std::string> snippets = SplitSep(row[12].as<std::string>());
  const std::vector<double> sims = SplitDoubles(row[13].as<std::string>());
  for (size_t i = 0; i < ids.size(); ++i) {
    c.examples.push_back(
        {ids[i], i < snippets.size() ? snippets[i] : "", i < sims.size() ? sims[i] : 0.0});
  }
  c.centroid = Bytes(row[14]);
  c.update_time = Micros(row[15]);
  if (!row[16].is_null()) c.operator_name = row[16].as<std::string>();
  c.name_pinned = row[17].as<bool>();
  if (!row[18].is_null()) c.operator_description = row[18].as<std::string>();
  c.merged_into = row[19].as<std::string>();
  c.split_into = SplitSep(row[20].as<std::string>());
  c.created_version = row[21].as<int64_t>();
  c.last_seen_version = row[22].as<int64_t>();
  c.etag_seq = row[23].as<int64_t>();
  c.stable_update_time = Micros(row[24]);
  return c;
}

constexpr char kMembershipInsert[] =
    "INSERT INTO clustering.memberships (project_id, version, trace_id, cluster_id, similarity, "
    "nearest_cluster_id, source, embedding) SELECT $1, $2, u.t, NULLIF(u.c, ''), u.s, u.n, "
    "u.src, u.e FROM unnest($3::text[], $4::text[], $5::float8[], $6::text[], $7::int2[], "
    "$8::bytea[]) AS u(t, c, s, n, src, e) ";

// Runs the membership insert `statement` over `assignments` in chunks. Returns rows written.
int64_t InsertAssignments(pqxx::transaction_base& tx, const char* statement,
                          const std::string& project, int64_t version,
                          const std::vector<Assignment>& assignments, bool count_assigned) {
  constexpr size_t kChunk = 4000;
  int64_t written = 0;
  for (size_t from = 0; from < assignments.size(); from += kChunk) {
    const size_t to = std::min(assignments.size(), from + kChunk);
    std::vector<std::string> t, c, n, e;
    std::vector<double> s;
    std::vector<int> src;
    for (size_t i = from; i < to; ++i) {
      const Assignment& a = assignments[i];
      t.push_back(a.trace_id);
      c.push_back(a.cluster_id);
      s.push_back(a.similarity);
      n.push_back(a.nearest_cluster_id);
      src.push_back(static_cast<int>(a.source));
      e.push_back(a.embedding);
    }
    pqxx::result r =
        tx.exec_prepared(statement, project, version, db::TextArray(t), db::TextArray(c),
                         db::NumberArray(s), db::TextArray(n), IntArray(src), db::ByteaArray(e));
    for (const auto& row : r) {
      if (!count_assigned || !row[0].is_null()) ++written;
    }
  }
  return written;
}

}  // namespace

PgClusteringRepository::PgClusteringRepository(db::ConnectionPool* pool, Logger* logger)
    : pool_(pool), logger_(logger) {
  auto reg = [&](const char* name, std::string sql) { pool_->RegisterStatement(name, sql); };
  // ---- settings
  reg("cl_get_settings", "SELECT settings, etag_seq, " MICROS(
                             "update_time") " FROM clustering.settings WHERE project_id = $1");
  reg("cl_lock_settings",
      "SELECT etag_seq FROM clustering.settings WHERE project_id = $1 FOR UPDATE");
  reg("cl_put_settings",
      "INSERT INTO clustering.settings AS s (project_id, settings) VALUES ($1, decode($2, "
      "'hex')) ON CONFLICT (project_id) DO UPDATE SET settings = EXCLUDED.settings, etag_seq = "
      "s.etag_seq + 1, update_time = now() RETURNING s.etag_seq, " MICROS("s.update_time"));
  // ---- feed
  reg("cl_claim_lease",
      "INSERT INTO clustering.feed_cursors AS f (project_id, lease_owner, lease_expires) VALUES "
      "($1, $2, now() + $3::int8 * interval '1 millisecond') ON CONFLICT (project_id) DO UPDATE "
      "SET lease_owner = EXCLUDED.lease_owner, lease_expires = EXCLUDED.lease_expires WHERE "
      "f.lease_owner IS NULL OR f.lease_owner = EXCLUDED.lease_owner OR f.lease_expires < now() "
      "RETURNING f.after_sequence");
  reg("cl_release_lease",
      "UPDATE clustering.feed_cursors SET lease_owner = NULL, lease_expires = NULL WHERE "
      "project_id = $1 AND lease_owner = $2");
  reg("cl_lock_cursor",
      "SELECT after_sequence, coalesce(lease_owner, ''), coalesce(lease_expires > now(), false) "
      "FROM clustering.feed_cursors WHERE project_id = $1 FOR UPDATE");
  reg("cl_advance_cursor",
      "UPDATE clustering.feed_cursors SET after_sequence = $2, processed_total = processed_total "
      "+ $3, update_time = now() WHERE project_id = $1");
  reg("cl_get_cursor", "SELECT after_sequence FROM clustering.feed_cursors WHERE project_id = $1");
  reg("cl_count_flagged",
      "SELECT count(*) FROM clustering.traces WHERE project_id = $1 AND flagged");
  reg("cl_publish_lock_shared",
      "SELECT pg_advisory_xact_lock_shared(hashtext('clustering.publish'), hashtext($1))");
  reg("cl_publish_lock",
      "SELECT pg_advisory_xact_lock(hashtext('clustering.publish'), hashtext($1))");
  reg("cl_latest_generation",
      "SELECT version, theme_generation FROM clustering.clusterings WHERE project_id = $1 AND "
      "state = 3 ORDER BY version DESC LIMIT 1");
  reg("cl_upsert_traces",
      "INSERT INTO clustering.traces AS t (project_id, trace_id, flagged, feed_sequence, "
      "flag_time, create_time, user_key, session_id, user_id, feature_area, model, "
      "model_version, prompt_version, signal_classes, input_text, output_head, comments) "
      "SELECT $1, u.id, true, u.seq, 'epoch'::timestamptz + u.ft * interval '1 microsecond', "
      "'epoch'::timestamptz + u.ct * interval '1 microsecond', u.uk, u.sid, u.uid, u.fa, u.m, "
      "u.mv, u.pv, u.sc, u.it, u.oh, CASE WHEN u.cm = '' THEN '{}'::text[] ELSE "
      "string_to_array(u.cm, " SEP
      ") END FROM unnest($2::text[], $3::int8[], $4::int8[], "
      "$5::int8[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], "
      "$12::text[], $13::int2[], $14::text[], $15::text[], $16::text[]) AS u(id, seq, ft, ct, "
      "uk, sid, uid, fa, m, mv, pv, sc, it, oh, cm) ON CONFLICT (project_id, trace_id) DO UPDATE "
      "SET flagged = true, feed_sequence = EXCLUDED.feed_sequence, flag_time = "
      "EXCLUDED.flag_time, create_time = EXCLUDED.create_time, user_key = EXCLUDED.user_key, "
      "session_id = EXCLUDED.session_id, user_id = EXCLUDED.user_id, feature_area = "
      "EXCLUDED.feature_area, model = EXCLUDED.model, model_version = EXCLUDED.model_version, "
      "prompt_version = EXCLUDED.prompt_version, signal_classes = EXCLUDED.signal_classes, "
      "input_text = EXCLUDED.input_text, output_head = EXCLUDED.output_head, comments = "
      "EXCLUDED.comments WHERE t.feed_sequence <= EXCLUDED.feed_sequence");
  reg("cl_retract_traces",
      "UPDATE clustering.traces SET flagged = false WHERE project_id = $1 AND trace_id = "
      "ANY($2::text[])");
  reg("cl_retract_memberships",
      "DELETE FROM clustering.memberships WHERE project_id = $1 AND trace_id = ANY($2::text[])");
  reg("cl_insert_streaming",
      absl::StrCat(kMembershipInsert,
                   "ON CONFLICT (project_id, version, trace_id) DO NOTHING RETURNING cluster_id"));
  reg("cl_add_streaming_count",
      "UPDATE clustering.clusterings SET streaming_count = streaming_count + $3 WHERE "
      "project_id = $1 AND version = $2");
  // ---- clusterings
  reg("cl_get_clustering", absl::StrCat("SELECT ", kClusteringColumns,
                                        " FROM clustering.clusterings c WHERE c.project_id = $1 "
                                        "AND c.version = $2"));
  reg("cl_latest_clustering",
      absl::StrCat("SELECT ", kClusteringColumns,
                   " FROM clustering.clusterings c WHERE c.project_id = $1 AND c.state = 3 "
                   "ORDER BY c.version DESC LIMIT 1"));
  reg("cl_list_clusterings",
      absl::StrCat(
          "SELECT ", kClusteringColumns,
          " FROM clustering.clusterings c WHERE c.project_id = $1 AND "
          "(cardinality($2::int[]) = 0 OR c.state = ANY($2::int[])) AND "
          "(cardinality($3::int[]) = 0 OR c.trigger = ANY($3::int[])) AND ($4::int8 = 0 OR "
          "c.version < $4::int8) ORDER BY c.version DESC LIMIT $5"));
  reg("cl_lock_create",
      "SELECT pg_advisory_xact_lock(hashtext('clustering.create'), hashtext($1))");
  reg("cl_find_request",
      absl::StrCat("SELECT ", kClusteringColumns,
                   " FROM clustering.clusterings c WHERE c.project_id = $1 AND c.request_id = $2 "
                   "AND c.create_time > now() - interval '24 hours' ORDER BY c.version DESC "
                   "LIMIT 1"));
  reg("cl_find_active", absl::StrCat("SELECT ", kClusteringColumns,
                                     " FROM clustering.clusterings c WHERE c.project_id = $1 AND "
                                     "c.state IN (1, 2)"));
  reg("cl_count_on_demand",
      "SELECT count(*) FROM clustering.clusterings WHERE project_id = $1 AND trigger = 2 AND "
      "create_time > now() - interval '1 hour'");
  reg("cl_insert_clustering",
      absl::StrCat("INSERT INTO clustering.clusterings AS c (project_id, version, state, "
                   "trigger, request_id, request_hash, window_start, window_end, params, "
                   "progress) SELECT $1, coalesce(max(version), 0) + 1, 1, $2, NULLIF($3, ''), "
                   "NULLIF($4, ''), " TS(5) ", " TS(
                       6) ", decode($7, 'hex'), decode($8, 'hex') "
                          "FROM clustering.clusterings WHERE project_id = $1 RETURNING ",
                   kClusteringColumns));
  reg("cl_claim_pending",
      absl::StrCat("UPDATE clustering.clusterings c SET state = 2, worker = $1, start_time = "
                   "now(), heartbeat_time = now() WHERE (c.project_id, c.version) = (SELECT "
                   "project_id, version FROM clustering.clusterings WHERE state = 1 ORDER BY "
                   "create_time LIMIT 1 FOR UPDATE SKIP LOCKED) AND c.state = 1 RETURNING ",
                   kClusteringColumns));
  reg("cl_update_progress",
      "UPDATE clustering.clusterings SET progress = decode($4, 'hex'), params = decode($5, "
      "'hex'), heartbeat_time = now() WHERE project_id = $1 AND version = $2 AND worker = $3 AND "
      "state = 2");
  reg("cl_fail_clustering",
      "UPDATE clustering.clusterings SET state = 4, end_time = now(), error_message = $3 WHERE "
      "project_id = $1 AND version = $2 AND state IN (1, 2)");
  reg("cl_fail_stale",
      "UPDATE clustering.clusterings SET state = 4, end_time = now(), error_message = 'the "
      "worker stopped reporting progress' WHERE state = 2 AND heartbeat_time < now() - $1::int8 "
      "* interval '1 millisecond'");
  reg("cl_last_scheduled",
      "SELECT " MICROS("max(create_time)") " FROM clustering.clusterings WHERE project_id = $1 "
                                           "AND trigger = 1");
  reg("cl_count_clusterings", "SELECT count(*) FROM clustering.clusterings WHERE project_id = $1");
  reg("cl_load_window",
      absl::StrCat("SELECT ", kTraceColumns,
                   " FROM clustering.traces t WHERE t.project_id = $1 AND t.flagged AND "
                   "t.create_time >= " TS(2) " AND t.create_time < " TS(
                       3) " ORDER BY t.create_time, t.trace_id LIMIT $4"));
  // ---- publish
  reg("cl_lock_job",
      "SELECT state, coalesce(worker, '') FROM clustering.clusterings WHERE project_id = $1 AND "
      "version = $2 FOR UPDATE");
  reg("cl_members_of_version",
      "SELECT trace_id, cluster_id FROM clustering.memberships WHERE project_id = $1 AND "
      "version = $2 AND cluster_id IS NOT NULL");
  reg("cl_rows_of_version", absl::StrCat("SELECT ", kClusterColumns, kClusterFrom,
                                         "WHERE cv.project_id = $1 AND cv.version = $2"));
  reg("cl_insert_ids",
      "INSERT INTO clustering.clusters (project_id, cluster_id, level, state, created_version, "
      "last_seen_version) SELECT $1, u.id, u.lv, 1, $2, $2 FROM unnest($3::text[], $4::int2[]) "
      "AS u(id, lv) ON CONFLICT (project_id, cluster_id) DO NOTHING");
  reg("cl_touch_ids",
      "UPDATE clustering.clusters SET state = 1, last_seen_version = $2, operator_name = CASE "
      "WHEN name_pinned THEN operator_name ELSE NULL END, update_time = now() WHERE project_id = "
      "$1 AND cluster_id = ANY($3::text[])");
  reg("cl_retire_ids",
      "UPDATE clustering.clusters SET state = 4, update_time = now() WHERE project_id = $1 AND "
      "cluster_id = ANY($2::text[]) AND state = 1");
  reg("cl_insert_row",
      "INSERT INTO clustering.cluster_versions (project_id, version, cluster_id, level, state, "
      "parent_id, name, description, keyword_terms, keyword_weights, key_phrases, "
      "example_trace_ids, example_snippets, example_similarities, centroid) VALUES ($1, $2, $3, "
      "$4, $5, $6, $7, $8, $9::text[], $10::float8[], $11::text[], $12::text[], $13::text[], "
      "$14::float8[], decode($15, 'hex'))");
  reg("cl_insert_model",
      "INSERT INTO clustering.embedder_models (project_id, version, embedder_name, embedder_id, "
      "dimension, model) VALUES ($1, $2, $3, $4, $5, decode($6, 'hex')) ON CONFLICT (project_id, "
      "version) DO UPDATE SET model = EXCLUDED.model, embedder_id = EXCLUDED.embedder_id, "
      "dimension = EXCLUDED.dimension, embedder_name = EXCLUDED.embedder_name");
  reg("cl_insert_recluster",
      absl::StrCat(kMembershipInsert,
                   "ON CONFLICT (project_id, version, trace_id) DO UPDATE SET cluster_id = "
                   "EXCLUDED.cluster_id, similarity = EXCLUDED.similarity, nearest_cluster_id = "
                   "EXCLUDED.nearest_cluster_id, source = EXCLUDED.source, embedding = "
                   "EXCLUDED.embedding, assign_time = now() RETURNING cluster_id"));
  reg("cl_late_traces",
      absl::StrCat(
          "SELECT ", kTraceColumns,
          " FROM clustering.traces t WHERE t.project_id = $1 AND t.flagged AND "
          "t.seen_time >= " TS(
              3) " AND NOT EXISTS (SELECT 1 FROM "
                 "clustering.memberships m WHERE m.project_id = t.project_id AND m.version = "
                 "$2 AND m.trace_id = t.trace_id)"));
  reg("cl_finish_publish",
      "UPDATE clustering.clusterings SET state = 3, end_time = now(), heartbeat_time = now(), "
      "member_count = $3, unassigned_count = $4, theme_count = $5, group_count = $6, "
      "matched_count = $7, new_count = $8, retired_count = $9, previous_version = $10, params = "
      "decode($11, 'hex'), progress = decode($12, 'hex'), streaming_count = $13, "
      "hidden_theme_count = $14 WHERE "
      "project_id = $1 AND version = $2");
  // ---- models and clusters
  reg("cl_get_model",
      "SELECT embedder_name, embedder_id, dimension, model FROM clustering.embedder_models WHERE "
      "project_id = $1 AND version = $2");
  reg("cl_theme_counts",
      "SELECT m.cluster_id, count(*), count(DISTINCT t.user_key) FROM clustering.memberships m "
      "JOIN clustering.traces t ON t.project_id = m.project_id AND t.trace_id = m.trace_id "
      "WHERE m.project_id = $1 AND m.version = $2 AND m.cluster_id IS NOT NULL GROUP BY "
      "m.cluster_id");
  reg("cl_group_counts",
      "SELECT cv.parent_id, count(*), count(DISTINCT t.user_key) FROM clustering.memberships m "
      "JOIN clustering.cluster_versions cv ON cv.project_id = m.project_id AND cv.version = "
      "m.version AND cv.cluster_id = m.cluster_id JOIN clustering.traces t ON t.project_id = "
      "m.project_id AND t.trace_id = m.trace_id WHERE m.project_id = $1 AND m.version = $2 AND "
      "cv.parent_id <> '' GROUP BY cv.parent_id");
  reg("cl_one_theme_counts",
      "SELECT count(*), count(DISTINCT t.user_key) FROM clustering.memberships m JOIN "
      "clustering.traces t ON t.project_id = m.project_id AND t.trace_id = m.trace_id WHERE "
      "m.project_id = $1 AND m.version = $2 AND m.cluster_id = $3");
  reg("cl_one_group_counts",
      "SELECT count(*), count(DISTINCT t.user_key) FROM clustering.cluster_versions cv JOIN "
      "clustering.memberships m ON m.project_id = cv.project_id AND m.version = cv.version AND "
      "m.cluster_id = cv.cluster_id JOIN clustering.traces t ON t.project_id = m.project_id AND "
      "t.trace_id = m.trace_id WHERE cv.project_id = $1 AND cv.version = $2 AND cv.parent_id = "
      "$3");
  reg("cl_get_row",
      absl::StrCat("SELECT ", kClusterColumns, kClusterFrom,
                   "WHERE cv.project_id = $1 AND cv.cluster_id = $2 AND "
                   "($3::int8 = 0 OR cv.version = $3::int8) ORDER BY cv.version DESC LIMIT 1"));
  reg("cl_lock_cluster",
      "SELECT etag_seq FROM clustering.clusters WHERE project_id = $1 AND cluster_id = $2 FOR "
      "UPDATE");
  reg("cl_update_attributes",
      "UPDATE clustering.clusters SET operator_name = CASE WHEN $3 THEN NULLIF($4, '') ELSE "
      "operator_name END, name_pinned = CASE WHEN $5 THEN $6 ELSE name_pinned END, "
      "operator_description = CASE WHEN $7 THEN NULLIF($8, '') ELSE operator_description END, "
      "etag_seq = etag_seq + 1, update_time = now() WHERE project_id = $1 AND cluster_id = $2");
  reg("cl_record_merged",
      "INSERT INTO clustering.merged_members (project_id, version, trace_id, source_id) SELECT "
      "project_id, version, trace_id, cluster_id FROM clustering.memberships WHERE project_id = "
      "$1 AND version = $2 AND cluster_id = ANY($3::text[]) ON CONFLICT DO NOTHING");
  reg("cl_merged_members",
      "SELECT mm.trace_id, mm.source_id, coalesce(c.merged_into, '') FROM "
      "clustering.merged_members mm JOIN clustering.clusters c ON c.project_id = mm.project_id "
      "AND c.cluster_id = mm.source_id WHERE mm.project_id = $1 AND mm.version = $2 AND "
      "c.state = 2");
  reg("cl_move_members",
      "UPDATE clustering.memberships SET cluster_id = $3, source = 3, assign_time = now() WHERE "
      "project_id = $1 AND version = $2 AND cluster_id = ANY($4::text[])");
  reg("cl_reparent",
      "UPDATE clustering.cluster_versions SET parent_id = $3, update_time = now() WHERE "
      "project_id = $1 AND version = $2 AND parent_id = ANY($4::text[])");
  reg("cl_mark_rows",
      "UPDATE clustering.cluster_versions SET state = $3, update_time = now() WHERE project_id = "
      "$1 AND version = $2 AND cluster_id = ANY($4::text[])");
  reg("cl_mark_merged",
      "UPDATE clustering.clusters SET state = 2, merged_into = $2, etag_seq = etag_seq + 1, "
      "update_time = now() WHERE project_id = $1 AND (cluster_id = ANY($3::text[]) OR "
      "merged_into = ANY($3::text[]))");
  reg("cl_touch_cluster",
      "UPDATE clustering.clusters SET update_time = now() WHERE project_id = $1 AND cluster_id = "
      "$2");
  reg("cl_touch_row",
      "UPDATE clustering.cluster_versions SET update_time = now() WHERE project_id = $1 AND "
      "version = $2 AND cluster_id = $3");
  reg("cl_bump_generation",
      "UPDATE clustering.clusterings SET theme_generation = theme_generation + 1 WHERE "
      "project_id = $1 AND version = $2");
  reg("cl_mark_split",
      "UPDATE clustering.clusters SET state = 3, split_into = $3::text[], etag_seq = etag_seq + "
      "1, update_time = now() WHERE project_id = $1 AND cluster_id = $2");
  reg("cl_reassign",
      "UPDATE clustering.memberships m SET cluster_id = u.c, similarity = u.s, source = 3, "
      "assign_time = now() FROM unnest($3::text[], $4::text[], $5::float8[]) AS u(t, c, s) "
      "WHERE m.project_id = $1 AND m.version = $2 AND m.trace_id = u.t");
  reg("cl_store_split",
      "INSERT INTO clustering.split_requests (project_id, request_id, cluster_id, k, response) "
      "VALUES ($1, $2, $3, $4, decode($5, 'hex')) ON CONFLICT (project_id, request_id) DO UPDATE "
      "SET cluster_id = EXCLUDED.cluster_id, k = EXCLUDED.k, response = EXCLUDED.response, "
      "create_time = now()");
  reg("cl_find_split",
      "SELECT cluster_id, k, response FROM clustering.split_requests WHERE project_id = $1 AND "
      "request_id = $2 AND create_time > now() - interval '24 hours'");
  // ---- members
  constexpr char kMemberSelect[] =
      "SELECT m.trace_id, m.cluster_id, m.similarity, " MICROS("m.assign_time") ", m.source, " MICROS(
          "t.create_time") " FROM clustering.memberships m JOIN clustering.traces t ON "
                           "t.project_id = m.project_id AND t.trace_id = m.trace_id WHERE "
                           "m.project_id = $1 AND m.version = $2 AND m.cluster_id = "
                           "ANY($3::text[]) AND ($4 = 0 OR m.source = $4) ";
  reg("cl_members_by_similarity",
      absl::StrCat(kMemberSelect,
                   "AND (NOT $5 OR m.similarity < $6::float8 OR (m.similarity = $6::float8 AND "
                   "m.trace_id > $7)) ORDER BY m.similarity DESC, m.trace_id LIMIT $8"));
  reg("cl_members_by_time",
      absl::StrCat(
          kMemberSelect,
          "AND (NOT $5 OR m.assign_time < " TS(6) " OR (m.assign_time = " TS(
              6) " AND m.trace_id > $7)) ORDER BY m.assign_time DESC, m.trace_id LIMIT $8"));
  reg("cl_get_membership",
      "SELECT version, coalesce(cluster_id, ''), similarity, nearest_cluster_id, source, " MICROS(
          "assign_time") ", embedding FROM clustering.memberships WHERE project_id = $1 AND "
                         "trace_id = $2 AND version = $3");
  reg("cl_trace_seen",
      "SELECT 1 FROM clustering.traces WHERE project_id = $1 AND trace_id = $2 AND flagged");
  reg("cl_load_embedded",
      "SELECT m.trace_id, coalesce(m.cluster_id, ''), m.embedding, " MICROS(
          "t.create_time") ", t.user_key, CASE WHEN $8 THEN t.input_text ELSE '' END FROM "
                           "clustering.memberships m JOIN clustering.traces t ON t.project_id = "
                           "m.project_id AND t.trace_id = m.trace_id WHERE m.project_id = $1 AND "
                           "m.version = $2 AND ((cardinality($3::text[]) = 0 AND m.cluster_id IS "
                           "NOT NULL) OR m.cluster_id = ANY($3::text[]) OR ($4 AND m.cluster_id "
                           "IS NULL)) AND (NOT $5 OR (t.create_time >= " TS(
                               6) " AND t.create_time < " TS(7) "))");
  // ---- stats
  reg("cl_stats_rows",
      "SELECT t.trace_id, " MICROS(
          "t.create_time") ", t.user_key, t.signal_classes, t.feature_area, t.model_version, "
                           "t.prompt_version, coalesce((SELECT m.cluster_id FROM "
                           "clustering.memberships m WHERE m.project_id = t.project_id AND "
                           "m.trace_id = t.trace_id ORDER BY m.version DESC LIMIT 1), '') FROM "
                           "clustering.traces t WHERE t.project_id = $1 AND t.flagged AND "
                           "t.create_time >= " TS(2) " AND t.create_time < " TS(3));
  reg("cl_first_seen",
      "SELECT cv.cluster_id, " MICROS(
          "min(t.create_time)") " FROM clustering.cluster_versions cv JOIN "
                                "clustering.memberships m ON m.project_id = cv.project_id AND "
                                "m.version = cv.version AND m.cluster_id = cv.cluster_id JOIN "
                                "clustering.traces t ON t.project_id = m.project_id AND "
                                "t.trace_id = m.trace_id WHERE cv.project_id = $1 AND "
                                "cv.cluster_id = ANY($2::text[]) GROUP BY cv.cluster_id");
}

// ---------------------------------------------------------------------------------------------
// Settings

absl::StatusOr<std::optional<SettingsRecord>> PgClusteringRepository::GetSettings(
    const std::string& project) {
  std::optional<SettingsRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.reset();
        pqxx::result r = tx.exec_prepared("cl_get_settings", project);
        if (r.empty()) return absl::OkStatus();
        SettingsRecord s;
        s.settings.ParseFromString(Bytes(r[0][0]));
        s.etag_seq = r[0][1].as<int64_t>();
        s.update_time = Micros(r[0][2]);
        out = std::move(s);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<SettingsRecord> PgClusteringRepository::PutSettings(
    const std::string& project, const v1::ClusteringSettings& settings,
    std::optional<int64_t> expected_etag_seq) {
  SettingsRecord out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result lock = tx.exec_prepared("cl_lock_settings", project);
        const int64_t current = lock.empty() ? 0 : lock[0][0].as<int64_t>();
        if (expected_etag_seq.has_value() && *expected_etag_seq != current) {
          return absl::AbortedError("etag mismatch: settings changed since read");
        }
        pqxx::row r =
            tx.exec_prepared1("cl_put_settings", project, Hex(settings.SerializeAsString()));
        out.settings = settings;
        out.etag_seq = r[0].as<int64_t>();
        out.update_time = Micros(r[1]);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Feed

absl::StatusOr<std::optional<int64_t>> PgClusteringRepository::ClaimFeedLease(
    const std::string& project, const std::string& owner, absl::Duration ttl) {
  std::optional<int64_t> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.reset();
        pqxx::result r =
            tx.exec_prepared("cl_claim_lease", project, owner, absl::ToInt64Milliseconds(ttl));
        if (!r.empty()) out = r[0][0].as<int64_t>();
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::Status PgClusteringRepository::ReleaseFeedLease(const std::string& project,
                                                      const std::string& owner) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        tx.exec_prepared("cl_release_lease", project, owner);
        return absl::OkStatus();
      },
      logger_);
}

absl::StatusOr<CommitOutcome> PgClusteringRepository::CommitFeedBatch(const std::string& project,
                                                                      const std::string& owner,
                                                                      const FeedBatch& batch) {
  CommitOutcome outcome = CommitOutcome::kCommitted;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        outcome = CommitOutcome::kCommitted;
        // Publishing takes this lock exclusively: a batch lands either wholly before a publish
        // (which then assigns its traces as late arrivals) or after it (and sees the new latest).
        tx.exec_prepared("cl_publish_lock_shared", project);
        pqxx::result cursor = tx.exec_prepared("cl_lock_cursor", project);
        if (cursor.empty() || cursor[0][0].as<int64_t>() != batch.expected_cursor ||
            cursor[0][1].as<std::string>() != owner || !cursor[0][2].as<bool>()) {
          outcome = CommitOutcome::kLostLease;
          return absl::OkStatus();
        }
        pqxx::result latest = tx.exec_prepared("cl_latest_generation", project);
        const int64_t latest_version = latest.empty() ? 0 : latest[0][0].as<int64_t>();
        const int64_t generation = latest.empty() ? 0 : latest[0][1].as<int64_t>();
        if (latest_version != batch.version ||
            (latest_version != 0 && generation != batch.theme_generation)) {
          outcome = CommitOutcome::kStaleVersion;
          return absl::OkStatus();
        }
        if (!batch.flagged.empty()) {
          std::vector<std::string> id, uk, sid, uid, fa, m, mv, pv, it, oh, cm;
          std::vector<int64_t> seq, ft, ct;
          std::vector<int> sc;
          for (const TraceRecord& t : batch.flagged) {
            id.push_back(t.trace_id);
            seq.push_back(t.feed_sequence);
            ft.push_back(ToMicros(t.flag_time));
            ct.push_back(ToMicros(t.create_time));
            uk.push_back(t.user_key);
            sid.push_back(t.session_id);
            uid.push_back(t.user_id);
            fa.push_back(t.feature_area);
            m.push_back(t.model);
            mv.push_back(t.model_version);
            pv.push_back(t.prompt_version);
            sc.push_back(t.signal_classes);
            it.push_back(t.input_text);
            oh.push_back(t.output_head);
            cm.push_back(JoinClean(t.comments));
          }
          tx.exec_prepared("cl_upsert_traces", project, db::TextArray(id), db::NumberArray(seq),
                           db::NumberArray(ft), db::NumberArray(ct), db::TextArray(uk),
                           db::TextArray(sid), db::TextArray(uid), db::TextArray(fa),
                           db::TextArray(m), db::TextArray(mv), db::TextArray(pv), IntArray(sc),
                           db::TextArray(it), db::TextArray(oh), db::TextArray(cm));
        }
        if (!batch.unflagged.empty()) {
          tx.exec_prepared("cl_retract_traces", project, db::TextArray(batch.unflagged));
          tx.exec_prepared("cl_retract_memberships", project, db::TextArray(batch.unflagged));
        }
        if (batch.version != 0 && !batch.assignments.empty()) {
          const int64_t assigned = InsertAssignments(tx, "cl_insert_streaming", project,
                                                     batch.version, batch.assignments, true);
          if (assigned > 0) {
            tx.exec_prepared("cl_add_streaming_count", project, batch.version, assigned);
          }
        }
        tx.exec_prepared("cl_advance_cursor", project, batch.next_cursor,
                         static_cast<int64_t>(batch.flagged.size() + batch.unflagged.size()));
        return absl::OkStatus();
      },
      logger_));
  return outcome;
}

absl::StatusOr<int64_t> PgClusteringRepository::FeedCursor(const std::string& project) {
  int64_t out = 0;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result r = tx.exec_prepared("cl_get_cursor", project);
        out = r.empty() ? 0 : r[0][0].as<int64_t>();
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<int64_t> PgClusteringRepository::CountFlaggedTraces(const std::string& project) {
  int64_t out = 0;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out = tx.exec_prepared1("cl_count_flagged", project)[0].as<int64_t>();
        return absl::OkStatus();
      },
      logger_));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Clusterings

absl::StatusOr<std::optional<ClusteringRecord>> PgClusteringRepository::LatestClustering(
    const std::string& project) {
  std::optional<ClusteringRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.reset();
        pqxx::result r = tx.exec_prepared("cl_latest_clustering", project);
        if (!r.empty()) out = ClusteringFromRow(r[0]);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<ClusteringRecord> PgClusteringRepository::GetClustering(const std::string& project,
                                                                       int64_t version) {
  ClusteringRecord out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result r = tx.exec_prepared("cl_get_clustering", project, version);
        if (r.empty()) return absl::NotFoundError("clustering version not found");
        out = ClusteringFromRow(r[0]);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<ClusteringRecord>> PgClusteringRepository::ListClusterings(
    const std::string& project, const std::vector<int>& states, const std::vector<int>& triggers,
    int64_t before_version, int limit) {
  std::vector<ClusteringRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared("cl_list_clusterings", project, IntArray(states),
                                                IntArray(triggers), before_version, limit)) {
          out.push_back(ClusteringFromRow(row));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<CreateResult> PgClusteringRepository::CreateClustering(
    const ClusteringRecord& pending, int max_on_demand_per_hour) {
  CreateResult out;
  const std::string& project = pending.project_id;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        tx.exec_prepared("cl_lock_create", project);
        if (!pending.request_id.empty()) {
          pqxx::result r = tx.exec_prepared("cl_find_request", project, pending.request_id);
          if (!r.empty()) {
            ClusteringRecord first = ClusteringFromRow(r[0]);
            if (first.request_hash != pending.request_hash) {
              return absl::AlreadyExistsError("request_id was used with different parameters");
            }
            out = {std::move(first), true};
            return absl::OkStatus();
          }
        }
        pqxx::result active = tx.exec_prepared("cl_find_active", project);
        if (!active.empty()) {
          out = {ClusteringFromRow(active[0]), false};
          return absl::OkStatus();
        }
        if (pending.trigger == v1::CLUSTERING_TRIGGER_ON_DEMAND) {
          const int64_t recent = tx.exec_prepared1("cl_count_on_demand", project)[0].as<int64_t>();
          if (recent >= max_on_demand_per_hour) {
            return absl::ResourceExhaustedError(
                "too many on-demand re-clusterings in the last hour");
          }
        }
        pqxx::row r = tx.exec_prepared1(
            "cl_insert_clustering", project, static_cast<int>(pending.trigger), pending.request_id,
            pending.request_hash, ToMicros(pending.window_start), ToMicros(pending.window_end),
            Hex(pending.params.SerializeAsString()), Hex(pending.progress.SerializeAsString()));
        out = {ClusteringFromRow(r), true};
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::optional<ClusteringRecord>> PgClusteringRepository::ClaimPendingClustering(
    const std::string& worker) {
  std::optional<ClusteringRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.reset();
        pqxx::result r = tx.exec_prepared("cl_claim_pending", worker);
        if (!r.empty()) out = ClusteringFromRow(r[0]);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<bool> PgClusteringRepository::UpdateProgress(const std::string& project,
                                                            int64_t version,
                                                            const std::string& worker,
                                                            const v1::ClusteringProgress& progress,
                                                            const v1::ClusteringParams& params) {
  bool out = false;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result r =
            tx.exec_prepared("cl_update_progress", project, version, worker,
                             Hex(progress.SerializeAsString()), Hex(params.SerializeAsString()));
        out = r.affected_rows() > 0;
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::Status PgClusteringRepository::FailClustering(const std::string& project, int64_t version,
                                                    const std::string& message) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        tx.exec_prepared("cl_fail_clustering", project, version, message);
        return absl::OkStatus();
      },
      logger_);
}

absl::StatusOr<int> PgClusteringRepository::FailStaleClusterings(absl::Duration stale) {
  int out = 0;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out = static_cast<int>(
            tx.exec_prepared("cl_fail_stale", absl::ToInt64Milliseconds(stale)).affected_rows());
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::optional<absl::Time>> PgClusteringRepository::LastScheduledTime(
    const std::string& project) {
  std::optional<absl::Time> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out = OptionalMicros(tx.exec_prepared1("cl_last_scheduled", project)[0]);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<int64_t> PgClusteringRepository::CountClusterings(const std::string& project) {
  int64_t out = 0;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out = tx.exec_prepared1("cl_count_clusterings", project)[0].as<int64_t>();
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<TraceRecord>> PgClusteringRepository::LoadWindow(
    const std::string& project, absl::Time start, absl::Time end, size_t limit) {
  std::vector<TraceRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared("cl_load_window", project, ToMicros(start),
                                                ToMicros(end), static_cast<int64_t>(limit))) {
          out.push_back(TraceFromRow(row));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::Status PgClusteringRepository::PublishClustering(
    const std::string& project, int64_t version, const std::string& worker, absl::Time load_time,
    const std::function<absl::StatusOr<PublishPlan>(const PublishContext&)>& plan_fn,
    const LateAssigner& late) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        tx.exec_prepared("cl_publish_lock", project);
        pqxx::result job = tx.exec_prepared("cl_lock_job", project, version);
        if (job.empty() || job[0][0].as<int>() != v1::CLUSTERING_STATE_RUNNING ||
            job[0][1].as<std::string>() != worker) {
          return absl::FailedPreconditionError("the clustering job is no longer running here");
        }
        PublishContext context;
        pqxx::result latest = tx.exec_prepared("cl_latest_generation", project);
        context.previous_version = latest.empty() ? 0 : latest[0][0].as<int64_t>();
        if (context.previous_version != 0) {
          for (const auto& row :
               tx.exec_prepared("cl_members_of_version", project, context.previous_version)) {
            context.previous_members.emplace_back(row[0].as<std::string>(),
                                                  row[1].as<std::string>());
          }
          for (const auto& row :
               tx.exec_prepared("cl_rows_of_version", project, context.previous_version)) {
            ClusterRecord c = ClusterFromRow(row);
            if (c.state == v1::CLUSTER_STATE_ACTIVE) context.previous_clusters.push_back(c);
          }
          for (const auto& row :
               tx.exec_prepared("cl_merged_members", project, context.previous_version)) {
            context.merged_members.push_back(
                {row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>()});
          }
        }
        ASSIGN_OR_RETURN(PublishPlan plan, plan_fn(context));
        std::vector<std::string> new_ids;
        std::vector<int> new_levels;
        for (const ClusterRecord& c : plan.clusters) {
          if (std::find(plan.new_ids.begin(), plan.new_ids.end(), c.cluster_id) !=
              plan.new_ids.end()) {
            new_ids.push_back(c.cluster_id);
            new_levels.push_back(static_cast<int>(c.level));
          }
        }
        tx.exec_prepared("cl_insert_ids", project, version, db::TextArray(new_ids),
                         IntArray(new_levels));
        std::vector<std::string> active_ids;
        for (const ClusterRecord& c : plan.clusters) {
          if (c.state == v1::CLUSTER_STATE_ACTIVE) active_ids.push_back(c.cluster_id);
        }
        tx.exec_prepared("cl_touch_ids", project, version, db::TextArray(active_ids));
        tx.exec_prepared("cl_retire_ids", project, db::TextArray(plan.retired_ids));
        for (const ClusterRecord& c : plan.clusters) {
          std::vector<std::string> terms, ids, snippets;
          std::vector<double> weights, sims;
          for (const auto& [term, weight] : c.keywords) {
            terms.push_back(Clean(term));
            weights.push_back(weight);
          }
          for (const auto& e : c.examples) {
            ids.push_back(e.trace_id);
            snippets.push_back(Clean(e.snippet));
            sims.push_back(e.similarity);
          }
          std::vector<std::string> phrases;
          for (const auto& p : c.key_phrases) phrases.push_back(Clean(p));
          tx.exec_prepared("cl_insert_row", project, version, c.cluster_id,
                           static_cast<int>(c.level), static_cast<int>(c.state), c.parent_id,
                           c.name, c.description, db::TextArray(terms), db::NumberArray(weights),
                           db::TextArray(phrases), db::TextArray(ids), db::TextArray(snippets),
                           db::NumberArray(sims), Hex(c.centroid));
        }
        tx.exec_prepared("cl_insert_model", project, version, plan.model.embedder_name,
                         plan.model.embedder_id, plan.model.dimension, Hex(plan.model.model));
        InsertAssignments(tx, "cl_insert_recluster", project, version, plan.assignments, false);
        std::vector<TraceRecord> late_traces;
        for (const auto& row : tx.exec_prepared("cl_late_traces", project, version,
                                                ToMicros(load_time - absl::Minutes(1)))) {
          late_traces.push_back(TraceFromRow(row));
        }
        int64_t streaming = 0;
        if (!late_traces.empty()) {
          ASSIGN_OR_RETURN(std::vector<Assignment> late_assignments, late(late_traces, plan));
          streaming = InsertAssignments(tx, "cl_insert_streaming", project, version,
                                        late_assignments, true);
        }
        v1::ClusteringProgress progress;
        progress.set_phase(v1::CLUSTERING_PHASE_PUBLISHING);
        progress.set_fraction_done(1.0);
        tx.exec_prepared("cl_finish_publish", project, version, plan.member_count,
                         plan.unassigned_count, plan.theme_count, plan.group_count,
                         plan.matched_count, static_cast<int32_t>(plan.new_ids.size()),
                         static_cast<int32_t>(plan.retired_ids.size()), context.previous_version,
                         Hex(plan.params.SerializeAsString()), Hex(progress.SerializeAsString()),
                         streaming, plan.hidden_theme_count);
        return absl::OkStatus();
      },
      logger_);
}

// ---------------------------------------------------------------------------------------------
// Models and clusters

absl::StatusOr<std::optional<ModelRecord>> PgClusteringRepository::GetModel(
    const std::string& project, int64_t version) {
  std::optional<ModelRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.reset();
        pqxx::result r = tx.exec_prepared("cl_get_model", project, version);
        if (r.empty()) return absl::OkStatus();
        ModelRecord m;
        m.embedder_name = r[0][0].as<std::string>();
        m.embedder_id = r[0][1].as<std::string>();
        m.dimension = r[0][2].as<int>();
        m.model = Bytes(r[0][3]);
        out = std::move(m);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<ClusterRecord>> PgClusteringRepository::ListClusterRows(
    const std::string& project, int64_t version) {
  std::vector<ClusterRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {db::Isolation::kRepeatableRead},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        std::map<std::string, std::pair<int64_t, int64_t>> themes, groups;
        for (const auto& row : tx.exec_prepared("cl_theme_counts", project, version)) {
          themes[row[0].as<std::string>()] = {row[1].as<int64_t>(), row[2].as<int64_t>()};
        }
        for (const auto& row : tx.exec_prepared("cl_group_counts", project, version)) {
          groups[row[0].as<std::string>()] = {row[1].as<int64_t>(), row[2].as<int64_t>()};
        }
        for (const auto& row : tx.exec_prepared("cl_rows_of_version", project, version)) {
          ClusterRecord c = ClusterFromRow(row);
          const auto& counts = c.level == v1::CLUSTER_LEVEL_GROUP ? groups : themes;
          auto it = counts.find(c.cluster_id);
          if (it != counts.end()) {
            c.member_count = it->second.first;
            c.distinct_users = it->second.second;
          }
          out.push_back(std::move(c));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::optional<ClusterRecord>> PgClusteringRepository::GetClusterRow(
    const std::string& project, const std::string& cluster_id, int64_t version) {
  std::optional<ClusterRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {db::Isolation::kRepeatableRead},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.reset();
        pqxx::result r = tx.exec_prepared("cl_get_row", project, cluster_id, version);
        if (r.empty()) return absl::OkStatus();
        ClusterRecord c = ClusterFromRow(r[0]);
        pqxx::row counts = tx.exec_prepared1(
            c.level == v1::CLUSTER_LEVEL_GROUP ? "cl_one_group_counts" : "cl_one_theme_counts",
            project, c.version, cluster_id);
        c.member_count = counts[0].as<int64_t>();
        c.distinct_users = counts[1].as<int64_t>();
        out = std::move(c);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::Status PgClusteringRepository::UpdateClusterAttributes(const std::string& project,
                                                             const std::string& cluster_id,
                                                             const AttributeUpdate& update) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result lock = tx.exec_prepared("cl_lock_cluster", project, cluster_id);
        if (lock.empty()) return absl::NotFoundError("cluster not found");
        if (update.expected_etag_seq.has_value() &&
            *update.expected_etag_seq != lock[0][0].as<int64_t>()) {
          return absl::AbortedError("etag mismatch: the cluster changed since read");
        }
        tx.exec_prepared("cl_update_attributes", project, cluster_id, update.set_name,
                         update.name.value_or(""), update.set_name_pinned, update.name_pinned,
                         update.set_description, update.description.value_or(""));
        return absl::OkStatus();
      },
      logger_);
}

namespace {

absl::Status CheckLatest(pqxx::transaction_base& tx, const std::string& project, int64_t version) {
  pqxx::result latest = tx.exec_prepared("cl_latest_generation", project);
  if (latest.empty() || latest[0][0].as<int64_t>() != version) {
    return absl::AbortedError("a newer clustering was published meanwhile; re-read and retry");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int64_t> PgClusteringRepository::MergeClusters(
    const std::string& project, int64_t version, const std::vector<std::string>& sources,
    const std::string& target) {
  int64_t moved = 0;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        tx.exec_prepared("cl_publish_lock", project);
        RETURN_IF_ERROR(CheckLatest(tx, project, version));
        const std::string ids = db::TextArray(sources);
        tx.exec_prepared("cl_record_merged", project, version, ids);
        moved = static_cast<int64_t>(
            tx.exec_prepared("cl_move_members", project, version, target, ids).affected_rows());
        tx.exec_prepared("cl_reparent", project, version, target, ids);
        tx.exec_prepared("cl_mark_rows", project, version,
                         static_cast<int>(v1::CLUSTER_STATE_MERGED), ids);
        tx.exec_prepared("cl_mark_merged", project, target, ids);
        tx.exec_prepared("cl_touch_cluster", project, target);
        tx.exec_prepared("cl_touch_row", project, version, target);
        tx.exec_prepared("cl_bump_generation", project, version);
        return absl::OkStatus();
      },
      logger_));
  return moved;
}

absl::Status PgClusteringRepository::ApplySplit(const std::string& project, int64_t version,
                                                const std::string& cluster_id,
                                                const SplitPlan& plan,
                                                const std::string& response) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        tx.exec_prepared("cl_publish_lock", project);
        RETURN_IF_ERROR(CheckLatest(tx, project, version));
        pqxx::result row = tx.exec_prepared("cl_get_row", project, cluster_id, version);
        if (row.empty() || ClusterFromRow(row[0]).state != v1::CLUSTER_STATE_ACTIVE) {
          return absl::FailedPreconditionError("the theme is not ACTIVE in the latest clustering");
        }
        std::vector<std::string> ids;
        std::vector<int> levels;
        for (const ClusterRecord& c : plan.children) {
          ids.push_back(c.cluster_id);
          levels.push_back(static_cast<int>(v1::CLUSTER_LEVEL_THEME));
        }
        tx.exec_prepared("cl_insert_ids", project, version, db::TextArray(ids), IntArray(levels));
        for (const ClusterRecord& c : plan.children) {
          std::vector<std::string> terms, ex_ids, snippets;
          std::vector<double> weights, sims;
          for (const auto& [term, weight] : c.keywords) {
            terms.push_back(Clean(term));
            weights.push_back(weight);
          }
          for (const auto& e : c.examples) {
            ex_ids.push_back(e.trace_id);
            snippets.push_back(Clean(e.snippet));
            sims.push_back(e.similarity);
          }
          std::vector<std::string> phrases;
          for (const auto& p : c.key_phrases) phrases.push_back(Clean(p));
          tx.exec_prepared("cl_insert_row", project, version, c.cluster_id,
                           static_cast<int>(v1::CLUSTER_LEVEL_THEME),
                           static_cast<int>(v1::CLUSTER_STATE_ACTIVE), c.parent_id, c.name,
                           c.description, db::TextArray(terms), db::NumberArray(weights),
                           db::TextArray(phrases), db::TextArray(ex_ids), db::TextArray(snippets),
                           db::NumberArray(sims), Hex(c.centroid));
        }
        std::vector<std::string> t, c;
        std::vector<double> s;
        for (const Assignment& a : plan.assignments) {
          t.push_back(a.trace_id);
          c.push_back(a.cluster_id);
          s.push_back(a.similarity);
        }
        tx.exec_prepared("cl_reassign", project, version, db::TextArray(t), db::TextArray(c),
                         db::NumberArray(s));
        tx.exec_prepared("cl_mark_rows", project, version,
                         static_cast<int>(v1::CLUSTER_STATE_SPLIT), db::TextArray({cluster_id}));
        tx.exec_prepared("cl_mark_split", project, cluster_id, db::TextArray(ids));
        tx.exec_prepared("cl_bump_generation", project, version);
        if (!plan.request_id.empty()) {
          tx.exec_prepared("cl_store_split", project, plan.request_id, cluster_id, plan.k,
                           Hex(response));
        }
        return absl::OkStatus();
      },
      logger_);
}

absl::StatusOr<std::optional<SplitRequestRecord>> PgClusteringRepository::FindSplitRequest(
    const std::string& project, const std::string& request_id) {
  std::optional<SplitRequestRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.reset();
        pqxx::result r = tx.exec_prepared("cl_find_split", project, request_id);
        if (r.empty()) return absl::OkStatus();
        out = SplitRequestRecord{r[0][0].as<std::string>(), r[0][1].as<int32_t>(), Bytes(r[0][2])};
        return absl::OkStatus();
      },
      logger_));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Members

absl::StatusOr<std::vector<MemberRecord>> PgClusteringRepository::ListMembers(
    const std::string& project, const MemberQuery& query) {
  std::vector<MemberRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        pqxx::result r;
        const std::string ids = db::TextArray(query.cluster_ids);
        const int source = static_cast<int>(query.source);
        if (query.order == v1::MEMBER_ORDER_ASSIGN_TIME_DESC) {
          const bool has = query.after_assign_micros.has_value();
          r = tx.exec_prepared("cl_members_by_time", project, query.version, ids, source, has,
                               has ? query.after_assign_micros->first : int64_t{0},
                               has ? query.after_assign_micros->second : std::string(),
                               query.limit);
        } else {
          const bool has = query.after_similarity.has_value();
          r = tx.exec_prepared("cl_members_by_similarity", project, query.version, ids, source, has,
                               Num(has ? query.after_similarity->first : 0.0),
                               has ? query.after_similarity->second : std::string(), query.limit);
        }
        for (const auto& row : r) {
          MemberRecord m;
          m.trace_id = row[0].as<std::string>();
          m.cluster_id = row[1].as<std::string>();
          m.similarity = row[2].as<double>();
          m.assign_time = Micros(row[3]);
          m.source = static_cast<v1::AssignmentSource>(row[4].as<int>());
          m.trace_create_time = Micros(row[5]);
          out.push_back(std::move(m));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::optional<MembershipRecord>> PgClusteringRepository::GetMembership(
    const std::string& project, const std::string& trace_id, int64_t version) {
  std::optional<MembershipRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.reset();
        pqxx::result r = tx.exec_prepared("cl_get_membership", project, trace_id, version);
        if (r.empty()) return absl::OkStatus();
        MembershipRecord m;
        m.version = r[0][0].as<int64_t>();
        m.cluster_id = r[0][1].as<std::string>();
        m.similarity = r[0][2].as<double>();
        m.nearest_cluster_id = r[0][3].as<std::string>();
        m.source = static_cast<v1::AssignmentSource>(r[0][4].as<int>());
        m.assign_time = Micros(r[0][5]);
        m.embedding = Bytes(r[0][6]);
        out = std::move(m);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
PgClusteringRepository::ListAssignments(const std::string& project, int64_t version) {
  std::vector<std::pair<std::string, std::string>> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared("cl_members_of_version", project, version)) {
          out.emplace_back(row[0].as<std::string>(), row[1].as<std::string>());
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<bool> PgClusteringRepository::TraceSeen(const std::string& project,
                                                       const std::string& trace_id) {
  bool out = false;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out = !tx.exec_prepared("cl_trace_seen", project, trace_id).empty();
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<EmbeddedTrace>> PgClusteringRepository::LoadEmbedded(
    const std::string& project, int64_t version, const std::vector<std::string>& cluster_ids,
    bool include_unassigned, std::optional<absl::Time> start, std::optional<absl::Time> end,
    bool with_text) {
  std::vector<EmbeddedTrace> out;
  const bool ranged = start.has_value() || end.has_value();
  const int64_t from = start ? ToMicros(*start) : std::numeric_limits<int64_t>::min() / 2;
  const int64_t to = end ? ToMicros(*end) : std::numeric_limits<int64_t>::max() / 2;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row :
             tx.exec_prepared("cl_load_embedded", project, version, db::TextArray(cluster_ids),
                              include_unassigned, ranged, from, to, with_text)) {
          EmbeddedTrace e;
          e.trace_id = row[0].as<std::string>();
          e.cluster_id = row[1].as<std::string>();
          e.embedding = Bytes(row[2]);
          e.create_time = Micros(row[3]);
          e.user_key = row[4].as<std::string>();
          e.text = row[5].as<std::string>();
          out.push_back(std::move(e));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Stats

absl::StatusOr<std::vector<StatsRow>> PgClusteringRepository::LoadStatsRows(
    const std::string& project, absl::Time start, absl::Time end) {
  std::vector<StatsRow> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row :
             tx.exec_prepared("cl_stats_rows", project, ToMicros(start), ToMicros(end))) {
          StatsRow s;
          s.trace_id = row[0].as<std::string>();
          s.create_time = Micros(row[1]);
          s.user_key = row[2].as<std::string>();
          s.signal_classes = row[3].as<int>();
          s.feature_area = row[4].as<std::string>();
          s.model_version = row[5].as<std::string>();
          s.prompt_version = row[6].as<std::string>();
          s.cluster_id = row[7].as<std::string>();
          out.push_back(std::move(s));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, absl::Time>>> PgClusteringRepository::FirstSeen(
    const std::string& project, const std::vector<std::string>& cluster_ids) {
  std::vector<std::pair<std::string, absl::Time>> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row :
             tx.exec_prepared("cl_first_seen", project, db::TextArray(cluster_ids))) {
          out.emplace_back(row[0].as<std::string>(), Micros(row[1]));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

}  // namespace flywheel::clustering
