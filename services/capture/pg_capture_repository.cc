#include "services/capture/pg_capture_repository.h"

#include <openssl/sha.h>

#include <algorithm>
#include <map>
#include <pqxx/pqxx>
#include <pqxx/tablewriter>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/db/pg_array.h"
#include "common/db/transaction.h"
#include "services/capture/validation.h"

namespace flywheel::capture {
namespace {

using db::ByteaArray;
using db::NumberArray;
using db::TextArray;

// Timestamps cross the wire as integer microseconds since the epoch (exact, no time zones).
constexpr char kFromMicros[] = "(timestamptz 'epoch' + (%s) * interval '1 microsecond')";
std::string FromMicros(const std::string& expression) {
  std::string out = kFromMicros;
  out.replace(out.find("%s"), 2, expression);
  return out;
}
std::string Micros(const std::string& column) {
  return absl::StrCat("(extract(epoch FROM ", column, ") * 1000000)::int8");
}

int64_t ToMicros(absl::Time time) { return absl::ToUnixMicros(time); }
absl::Time FromMicrosValue(int64_t micros) { return absl::FromUnixMicros(micros); }

// Advisory lock class for "one labeler per project".
constexpr int kLabelLockClass = 0x4c41424c;  // "LABL"

std::string Bytes(const pqxx::field& field) { return pqxx::binarystring(field).str(); }

template <typename Message>
Message Parse(const pqxx::field& field) {
  Message message;
  message.ParseFromString(Bytes(field));
  return message;
}

// Thumbs and ratings as comparable values for coverage weighting (see the migration).
std::optional<int> ValueKey(const v1::Signal& signal) {
  switch (KindOf(signal)) {
    case v1::SIGNAL_KIND_RATING:
      return signal.explicit_feedback().rating();
    case v1::SIGNAL_KIND_THUMBS_UP:
      return 10;
    case v1::SIGNAL_KIND_THUMBS_DOWN:
      return 11;
    default:
      return std::nullopt;
  }
}

// Stable id of a (rejected, chosen) pair, so rebuilding a chain is idempotent.
std::string PairId(const std::string& rejected, const std::string& chosen) {
  const std::string text = rejected + '\x1f' + chosen;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "pp_";
  for (size_t i = 0; i < 12; ++i) {
    id += kHex[static_cast<unsigned char>(digest[i]) >> 4];
    id += kHex[static_cast<unsigned char>(digest[i]) & 0xf];
  }
  return id;
}

bool IsExplicitKind(int kind) {
  return kind == v1::SIGNAL_KIND_THUMBS_UP || kind == v1::SIGNAL_KIND_THUMBS_DOWN ||
         kind == v1::SIGNAL_KIND_RATING || kind == v1::SIGNAL_KIND_COMMENT;
}

std::string Optional(const std::optional<double>& value) {
  return value.has_value() ? absl::StrCat(*value) : "";
}
std::string OptionalMicros(const std::optional<absl::Time>& value) {
  return value.has_value() ? absl::StrCat(ToMicros(*value)) : "";
}

struct Statement {
  const char* name;
  std::string sql;
};

std::vector<Statement> Statements() {
  const std::string receive = Micros("receive_time");
  return {
      // Single-item writes (unary CreateTrace / CreateSignal): one statement with scalar
      // parameters does the insert, the label-queue rows and the session activity, so a call is
      // one round trip inside its transaction and the plan cache settles on a generic plan (no
      // planning per call). The final SELECT reads the earlier row when the insert did nothing;
      // a row inserted concurrently after this statement's snapshot reads as all NULL and is
      // looked up again (cap_existing_*).
      {"cap_write_trace",
       "WITH ins AS (INSERT INTO capture.traces (project_id, trace_id, session_id, user_id, "
       "feature_area, model, model_version, prompt_template_id, prompt_version, start_time, "
       "end_time, content_sha256, redactions, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
       "$9, " +
           FromMicros("$10::int8") + ", " + FromMicros("$11::int8") +
           ", $12, $13, $14) ON CONFLICT (project_id, trace_id) DO NOTHING RETURNING "
           "receive_time), "
           // The trace itself and the previous trace of its session (its "next trace" changed).
           "queued AS (INSERT INTO capture.label_queue (project_id, trace_id) SELECT $1, x FROM "
           "(SELECT $2::text x FROM ins UNION SELECT p.trace_id FROM ins, LATERAL (SELECT "
           "trace_id FROM capture.traces p WHERE p.project_id = $1 AND p.session_id = $3 AND "
           "p.session_id <> '' AND (p.start_time, p.trace_id) < (" +
           FromMicros("$10::int8") +
           ", $2::text) ORDER BY p.start_time DESC, p.trace_id DESC LIMIT 1) p) q ORDER BY x), "
           "touched AS (INSERT INTO capture.session_activity AS a (project_id, session_id, "
           "last_trace_id, last_activity) SELECT $1, $3, $2, " +
           FromMicros("$11::int8") +
           " FROM ins WHERE $3 <> '' ON CONFLICT (project_id, session_id) DO UPDATE SET "
           "last_trace_id = excluded.last_trace_id, last_activity = excluded.last_activity "
           "WHERE excluded.last_activity >= a.last_activity) "
           "SELECT (SELECT " +
           Micros("receive_time") + " FROM ins), t.content_sha256 = $12, t.payload, " +
           Micros("t.receive_time") +
           " FROM (SELECT 1) one LEFT JOIN capture.traces t ON NOT EXISTS (SELECT 1 FROM ins) "
           "AND t.project_id = $1 AND t.trace_id = $2"},
      {"cap_write_signal",
       "WITH ins AS (INSERT INTO capture.signals (project_id, event_id, trace_id, session_id, "
       "user_id, signal_kind, actor, occur_time, value_key, content_sha256, redactions, payload) "
       "VALUES ($1, $2, $3, $4, $5, $6, $7, " +
           FromMicros("$8::int8") +
           ", NULLIF($9, '')::int2, $10, $11, $12) ON CONFLICT (project_id, event_id) DO NOTHING "
           "RETURNING receive_time), "
           // A trace's signal queues the trace (received or not); a session's signal queues every
           // trace of the session.
           "queued AS (INSERT INTO capture.label_queue (project_id, trace_id) SELECT $1, x FROM "
           "(SELECT $3::text x FROM ins WHERE $3 <> '' UNION SELECT t.trace_id FROM ins, "
           "capture.traces t WHERE t.project_id = $1 AND t.session_id = $4 AND t.session_id <> '') "
           "q ORDER BY x) "
           "SELECT (SELECT " +
           Micros("receive_time") + " FROM ins), s.content_sha256 = $10, s.payload, " +
           Micros("s.receive_time") +
           ", $3 <> '' AND EXISTS (SELECT 1 FROM capture.traces t WHERE t.project_id = $1 AND "
           "t.trace_id = $3) FROM (SELECT 1) one LEFT JOIN capture.signals s ON NOT EXISTS "
           "(SELECT 1 FROM ins) AND s.project_id = $1 AND s.event_id = $2"},
      // Batches: what is stored already (and the transaction's receive time), then COPY of the
      // new rows into the tables, then the label-queue and session rows from the batch's values.
      {"cap_batch_existing",
       "SELECT 0, trace_id, content_sha256, " + receive +
           ", payload FROM capture.traces WHERE project_id = $1 AND trace_id = ANY($2::text[]) "
           "UNION ALL SELECT 1, event_id, content_sha256, " +
           receive +
           ", payload FROM capture.signals WHERE project_id = $1 AND event_id = ANY($3::text[]) "
           "UNION ALL SELECT 2, trace_id, NULL, NULL, NULL FROM capture.traces WHERE "
           "project_id = $1 AND trace_id = ANY($4::text[]) "
           "UNION ALL SELECT 3, NULL, NULL, " +
           Micros("now()") + ", NULL"},
      {"cap_existing_traces",
       "SELECT trace_id, content_sha256, " + receive +
           ", payload FROM capture.traces WHERE project_id = $1 AND trace_id = ANY($2::text[])"},
      {"cap_existing_signals",
       "SELECT event_id, content_sha256, " + receive +
           ", payload, trace_id <> '' AND EXISTS (SELECT 1 FROM capture.traces t WHERE "
           "t.project_id = $1 AND t.trace_id = s.trace_id) FROM capture.signals s "
           "WHERE project_id = $1 AND event_id = ANY($2::text[])"},
      // Lookups through the partial indexes (traces_by_session, signals_by_trace,
      // signals_by_session, signals_by_user: `WHERE <column> <> ''`), here and in the read
      // statements below, repeat `<column> <> ''` even where the join or
      // the caller already implies it: the planner cannot prove an index predicate from a join
      // clause, a parameter or a long array, and without the index it reads every row of the
      // project once per input row.
      //
      // Queue the given traces, plus the previous trace of each new trace's session (its "next
      // trace" changed; the new traces are passed with their session and start, not re-read),
      // plus every trace of the given sessions (session-level signals). Runs after the batch's
      // rows are written, so a new trace's previous trace may be one of the batch.
      {"cap_queue",
       "INSERT INTO capture.label_queue (project_id, trace_id) "
       "SELECT $1, x FROM (SELECT unnest($2::text[]) x UNION "
       "SELECT p.trace_id FROM unnest($3::text[], $4::text[], $5::int8[]) c(trace_id, "
       "session_id, start_us) JOIN LATERAL (SELECT trace_id FROM capture.traces p WHERE "
       "p.project_id = $1 AND p.session_id = c.session_id AND p.session_id <> '' AND "
       "(p.start_time, p.trace_id) < (" +
           FromMicros("c.start_us") +
           ", c.trace_id) ORDER BY p.start_time DESC, p.trace_id DESC LIMIT 1) p ON true "
           "WHERE c.session_id <> '' "
           "UNION SELECT trace_id FROM capture.traces WHERE project_id = $1 AND "
           "session_id = ANY($6::text[]) AND session_id <> '') q ORDER BY x"},
      // Last activity of each session from the batch's new traces (passed, not re-read).
      {"cap_touch_sessions",
       "INSERT INTO capture.session_activity AS a (project_id, session_id, last_trace_id, "
       "last_activity) SELECT DISTINCT ON (session_id) $1, session_id, trace_id, " +
           FromMicros("end_us") +
           " FROM unnest($2::text[], $3::text[], $4::int8[], $5::int8[]) c(trace_id, session_id, "
           "start_us, end_us) WHERE session_id <> '' ORDER BY session_id, start_us DESC, "
           "trace_id DESC ON CONFLICT (project_id, session_id) DO UPDATE SET last_trace_id = "
           "excluded.last_trace_id, last_activity = excluded.last_activity "
           "WHERE excluded.last_activity >= a.last_activity"},
      {"cap_get_trace", "SELECT t.payload, " + Micros("t.receive_time") +
                            ", l.payload FROM capture.traces t LEFT JOIN capture.trace_labels l "
                            "ON l.project_id = t.project_id AND l.trace_id = t.trace_id "
                            "WHERE t.project_id = $1 AND t.trace_id = $2"},
      {"cap_trace_signals",
       "SELECT payload, r FROM (SELECT payload, " + receive +
           " r, occur_time, event_id FROM capture.signals WHERE project_id = $1 AND "
           "((trace_id = $2 AND trace_id <> '') OR ($3 <> '' AND session_id = $3 AND "
           "session_id <> '')) ORDER BY occur_time DESC, "
           "event_id DESC LIMIT $4) s ORDER BY occur_time, event_id"},
      {"cap_derived",
       "SELECT payload FROM capture.derived_signals WHERE project_id = $1 AND trace_id = $2 "
       "ORDER BY signal_kind"},
      {"cap_list_traces",
       "SELECT t.payload, " + Micros("t.receive_time") +
           ", l.payload FROM capture.traces t LEFT JOIN capture.trace_labels l "
           "ON l.project_id = t.project_id AND l.trace_id = t.trace_id "
           "WHERE t.project_id = $1 "
           "AND ($2 = '' OR t.start_time >= " +
           FromMicros("NULLIF($2, '')::int8") +
           ") "
           "AND ($3 = '' OR t.start_time < " +
           FromMicros("NULLIF($3, '')::int8") +
           ") "
           "AND (NOT $4::bool OR l.flagged) "
           "AND ($5 = '' OR t.feature_area = $5) AND ($6 = '' OR t.model = $6) "
           "AND ($7 = '' OR t.model_version = $7) AND ($8 = '' OR t.prompt_template_id = $8) "
           "AND ($9 = '' OR t.prompt_version = $9) AND ($10 = '' OR t.session_id = $10) "
           "AND ($11 = '' OR t.user_id = $11) "
           "AND ($12 = '' OR l.quality_score >= NULLIF($12, '')::float8) "
           "AND ($13 = '' OR l.quality_score <= NULLIF($13, '')::float8) "
           "AND (cardinality($14::int2[]) = 0 OR EXISTS (SELECT 1 FROM capture.signals s WHERE "
           "s.project_id = t.project_id AND s.trace_id = t.trace_id AND s.trace_id <> '' AND "
           "s.signal_kind = ANY($14::int2[])) OR EXISTS (SELECT 1 FROM capture.derived_signals d "
           "WHERE d.project_id = t.project_id AND d.trace_id = t.trace_id AND "
           "d.signal_kind = ANY($14::int2[]))) "
           "AND ($15 = '' OR (t.start_time, t.trace_id) < (" +
           FromMicros("NULLIF($15, '')::int8") +
           ", $16)) ORDER BY t.start_time DESC, t.trace_id DESC LIMIT $17"},
      {"cap_list_signals",
       "SELECT payload, " + receive + ", " + Micros("occur_time") +
           // One index lookup per way a signal can belong to the trace or session (an OR of
           // them, or an IN inside an OR, reads every signal of the project).
           ", event_id FROM capture.signals WHERE project_id = $1 AND event_id IN ("
           "SELECT event_id FROM capture.signals WHERE project_id = $1 AND $2 <> '' AND "
           "trace_id = $2 AND trace_id <> '' "
           "UNION ALL SELECT event_id FROM capture.signals WHERE project_id = $1 AND $3 <> '' "
           "AND session_id = $3 AND session_id <> '' "
           "UNION ALL SELECT s.event_id FROM capture.traces t JOIN capture.signals s ON "
           "s.project_id = t.project_id AND s.trace_id = t.trace_id AND s.trace_id <> '' WHERE "
           "t.project_id = $1 AND $3 <> '' AND t.session_id = $3 AND t.session_id <> '') "
           "AND (cardinality($4::int2[]) = 0 OR signal_kind = ANY($4::int2[])) "
           "AND ($5 = '' OR (occur_time, event_id) > (" +
           FromMicros("NULLIF($5, '')::int8") + ", $6)) ORDER BY occur_time, event_id LIMIT $7"},
      {"cap_read_feed",
       "SELECT f.sequence, f.trace_id, f.entry_type, " + Micros("f.flag_time") +
           ", f.quality_score, f.rule_set_version, f.reasons, t.payload "
           "FROM capture.flagged_feed f LEFT JOIN capture.traces t ON f.entry_type = 1 AND "
           "t.project_id = f.project_id AND t.trace_id = f.trace_id "
           "WHERE f.project_id = $1 AND f.sequence > $2 ORDER BY f.sequence LIMIT $3"},
      {"cap_feed_bounds",
       "SELECT coalesce((SELECT last_sequence FROM capture.feed_counters WHERE project_id = $1), "
       "0), coalesce((SELECT min(sequence) FROM capture.flagged_feed WHERE project_id = $1), 0)"},
      {"cap_comments",
       "SELECT trace_id, payload FROM capture.signals WHERE project_id = $1 AND "
       "trace_id <> '' AND trace_id = ANY($2::text[]) AND signal_kind IN (1, 2, 3, 4) "
       "ORDER BY occur_time DESC"},
      {"cap_rule_set",
       "SELECT payload FROM capture.rule_sets WHERE project_id = $1 AND ($2 = 0 OR version = $2) "
       "ORDER BY version DESC LIMIT 1"},
      {"cap_redaction_config",
       "SELECT payload FROM capture.redaction_configs WHERE project_id = $1"},
      // Labeling.
      {"cap_label_projects",
       "SELECT project_id FROM capture.label_queue GROUP BY project_id ORDER BY min(seq) "
       "LIMIT 100"},
      {"cap_label_lock", "SELECT pg_try_advisory_xact_lock($1, hashtext($2))"},
      {"cap_label_claim",
       "SELECT seq, trace_id FROM capture.label_queue WHERE project_id = $1 ORDER BY seq "
       "LIMIT $2"},
      {"cap_ev_traces",
       "SELECT payload, " + receive +
           " FROM capture.traces WHERE project_id = $1 AND trace_id = ANY($2::text[])"},
      {"cap_ev_signals",
       "SELECT payload, " + receive +
           " FROM capture.signals WHERE project_id = $1 AND ((trace_id <> '' AND "
           "trace_id = ANY($2::text[])) OR (session_id <> '' AND session_id = ANY($3::text[])))"},
      {"cap_ev_next",
       "SELECT c.trace_id, n.payload FROM capture.traces c JOIN LATERAL (SELECT payload FROM "
       "capture.traces n WHERE n.project_id = c.project_id AND n.session_id = c.session_id AND "
       "n.session_id <> '' AND (n.start_time, n.trace_id) > (c.start_time, c.trace_id) "
       "ORDER BY n.start_time, "
       "n.trace_id LIMIT 1) n ON true WHERE c.project_id = $1 AND c.trace_id = ANY($2::text[]) "
       "AND c.session_id <> ''"},
      {"cap_ev_sessions",
       "SELECT s.session_id, (SELECT count(*) FROM capture.traces t WHERE t.project_id = $1 AND "
       "t.session_id = s.session_id AND t.session_id <> ''), (SELECT " +
           Micros("last_activity") +
           " FROM capture.session_activity a WHERE a.project_id = $1 AND a.session_id = "
           "s.session_id) FROM unnest($2::text[]) s(session_id)"},
      {"cap_ev_raters",
       "SELECT user_id, count(*), count(value_key), count(DISTINCT value_key) FROM "
       "capture.signals WHERE project_id = $1 AND user_id <> '' AND user_id = ANY($2::text[]) "
       "AND signal_kind IN "
       "(1, 2, 3, 4) AND occur_time >= " +
           FromMicros("$3::int8") + " GROUP BY user_id"},
      {"cap_ev_labels",
       "SELECT trace_id, flagged, feed_sequence FROM capture.trace_labels WHERE project_id = $1 "
       "AND trace_id = ANY($2::text[])"},
      // Two statements: a CTE's DELETE and INSERT share one snapshot, so re-inserting a key
      // the same statement deletes would violate the primary key.
      {"cap_clear_derived",
       "DELETE FROM capture.derived_signals WHERE project_id = $1 AND trace_id = ANY($2::text[])"},
      {"cap_write_derived",
       "INSERT INTO capture.derived_signals (project_id, trace_id, signal_kind, occur_time, "
       "payload) SELECT $1, t, k, " +
           FromMicros("o") +
           ", p FROM unnest($2::text[], $3::int2[], $4::int8[], $5::bytea[]) u(t, k, o, p)"},
      {"cap_feed_take",
       "INSERT INTO capture.feed_counters AS c (project_id, last_sequence) VALUES ($1, $2) "
       "ON CONFLICT (project_id) DO UPDATE SET last_sequence = c.last_sequence + $2 "
       "RETURNING last_sequence"},
      {"cap_feed_append",
       "INSERT INTO capture.flagged_feed (project_id, sequence, trace_id, entry_type, flag_time, "
       "quality_score, rule_set_version, reasons) SELECT $1, s, t, e, " +
           FromMicros("ft") +
           ", q, v, r FROM unnest($2::int8[], $3::text[], $4::int2[], $5::int8[], $6::float8[], "
           "$7::int8[], $8::bytea[]) u(s, t, e, ft, q, v, r)"},
      {"cap_write_labels",
       "INSERT INTO capture.trace_labels (project_id, trace_id, quality_score, flagged, "
       "rule_set_version, label_time, feed_sequence, implicit_evidence, payload) "
       "SELECT $1, t, s, f, v, " +
           FromMicros("lt") +
           ", fs, i, p FROM unnest($2::text[], $3::float8[], $4::bool[], $5::int8[], $6::int8[], "
           "$7::int8[], $8::bool[], $9::bytea[]) u(t, s, f, v, lt, fs, i, p) "
           "ON CONFLICT (project_id, trace_id) DO UPDATE SET quality_score = "
           "excluded.quality_score, flagged = excluded.flagged, rule_set_version = "
           "excluded.rule_set_version, label_time = excluded.label_time, feed_sequence = "
           "excluded.feed_sequence, implicit_evidence = excluded.implicit_evidence, "
           "payload = excluded.payload"},
      {"cap_session_regenerations",
       "SELECT d.trace_id, d.payload, t.session_id, t.feature_area FROM capture.traces t JOIN "
       "capture.derived_signals d ON d.project_id = t.project_id AND d.trace_id = t.trace_id "
       "AND d.signal_kind = 31 WHERE t.project_id = $1 AND t.session_id <> '' AND "
       "t.session_id = ANY($2::text[])"},
      {"cap_write_pairs",
       "INSERT INTO capture.preference_pairs (project_id, pair_id, rejected_trace_id, "
       "chosen_trace_id, session_id, feature_area) SELECT $1, i, r, c, s, a FROM "
       "unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) u(i, r, c, s, a) "
       "ON CONFLICT (project_id, pair_id) DO NOTHING"},
      {"cap_label_done",
       "DELETE FROM capture.label_queue WHERE project_id = $1 AND seq = ANY($2::int8[])"},
      {"cap_store_rules",
       "INSERT INTO capture.rule_sets (project_id, version, abandonment_timeout_seconds, "
       "payload) VALUES ($1, $2, $3, $4)"},
      {"cap_list_rules",
       "SELECT payload FROM capture.rule_sets WHERE project_id = $1 ORDER BY version DESC"},
      {"cap_store_redaction",
       "INSERT INTO capture.redaction_configs AS c (project_id, version, payload) "
       "SELECT $1, $2, $3 WHERE $4 = 0 ON CONFLICT (project_id) DO NOTHING"},
      {"cap_update_redaction",
       "UPDATE capture.redaction_configs SET version = $2, payload = $3, updated_at = now() "
       "WHERE project_id = $1 AND version = $4"},
      {"cap_job_by_request",
       "SELECT job_id, request_sha256 FROM capture.relabel_jobs WHERE project_id = $1 AND "
       "request_id = $2"},
      {"cap_job_insert",
       "INSERT INTO capture.relabel_jobs (project_id, job_id, request_id, request_sha256, "
       "rule_set_version, window_start, window_end, dry_run, state) VALUES ($1, $2, $3, $4, $5, " +
           FromMicros("$6::int8") + ", " + FromMicros("$7::int8") +
           ", $8, 1) ON CONFLICT DO NOTHING RETURNING job_id"},
      {"cap_job_get",
       "SELECT job_id, request_id, rule_set_version, " + Micros("window_start") + ", " +
           Micros("window_end") +
           ", dry_run, state, traces_total, traces_processed, flagged_before, flagged_after, "
           "newly_flagged, unflagged, " +
           Micros("created_at") + ", " + Micros("started_at") + ", " + Micros("finished_at") +
           ", error_message FROM capture.relabel_jobs WHERE project_id = $1 AND job_id = $2"},
      {"cap_job_claim",
       "SELECT project_id, job_id FROM capture.relabel_jobs WHERE state IN (1, 2) "
       "ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED"},
      {"cap_job_state",
       "SELECT rule_set_version, " + Micros("window_start") + ", " + Micros("window_end") +
           ", dry_run, state, " + Micros("cursor_start") +
           ", cursor_trace_id FROM capture.relabel_jobs WHERE project_id = $1 AND job_id = $2"},
      {"cap_job_start",
       "UPDATE capture.relabel_jobs SET state = 2, started_at = now(), traces_total = "
       "(SELECT count(*) FROM capture.traces WHERE project_id = $1 AND start_time >= window_start "
       "AND start_time < window_end) WHERE project_id = $1 AND job_id = $2"},
      {"cap_job_chunk", "SELECT trace_id, " + Micros("start_time") +
                            " FROM capture.traces WHERE project_id = $1 AND start_time >= " +
                            FromMicros("$2::int8") + " AND start_time < " + FromMicros("$3::int8") +
                            " AND ($4 = '' OR (start_time, trace_id) > (" +
                            FromMicros("NULLIF($4, '')::int8") +
                            ", $5)) ORDER BY start_time, trace_id LIMIT $6"},
      {"cap_job_progress",
       "UPDATE capture.relabel_jobs SET traces_processed = traces_processed + $3, "
       "flagged_before = flagged_before + $4, flagged_after = flagged_after + $5, "
       "newly_flagged = newly_flagged + $6, unflagged = unflagged + $7, cursor_start = " +
           FromMicros("$8::int8") + ", cursor_trace_id = $9 WHERE project_id = $1 AND job_id = $2"},
      {"cap_job_finish",
       "UPDATE capture.relabel_jobs SET state = $3, finished_at = now(), error_message = $4 "
       "WHERE project_id = $1 AND job_id = $2"},
      {"cap_list_pairs",
       "SELECT p.pair_id, p.rejected_trace_id, p.chosen_trace_id, p.session_id, p.feature_area, " +
           Micros("p.created_at") +
           ", r.payload, c.payload, l.quality_score FROM capture.preference_pairs p "
           "JOIN capture.traces r ON r.project_id = p.project_id AND r.trace_id = "
           "p.rejected_trace_id JOIN capture.traces c ON c.project_id = p.project_id AND "
           "c.trace_id = p.chosen_trace_id LEFT JOIN capture.trace_labels l ON l.project_id = "
           "p.project_id AND l.trace_id = p.chosen_trace_id WHERE p.project_id = $1 "
           "AND ($2 = '' OR p.created_at >= " +
           FromMicros("NULLIF($2, '')::int8") +
           ") "
           "AND ($3 = '' OR p.created_at < " +
           FromMicros("NULLIF($3, '')::int8") +
           ") "
           "AND ($4 = '' OR p.feature_area = $4) AND ($5 = '' OR (p.created_at, p.pair_id) > (" +
           FromMicros("NULLIF($5, '')::int8") + ", $6)) ORDER BY p.created_at, p.pair_id LIMIT $7"},
      {"cap_audit_totals",
       "WITH w AS (SELECT trace_id, session_id, user_id FROM capture.traces WHERE project_id = $1 "
       "AND start_time >= " +
           FromMicros("$2::int8") + " AND start_time < " + FromMicros("$3::int8") +
           " AND ($4 = '' OR feature_area = $4)), "
           "e AS (SELECT s.trace_id, s.signal_kind, s.payload FROM capture.signals s JOIN w ON "
           "w.trace_id = s.trace_id WHERE s.project_id = $1 AND s.signal_kind IN (1, 2, 3, 4) "
           "AND s.actor IN (0, 1)) "
           "SELECT (SELECT count(*) FROM w), (SELECT count(DISTINCT session_id) FROM w WHERE "
           "session_id <> ''), (SELECT count(DISTINCT user_id) FROM w WHERE user_id <> ''), "
           "(SELECT count(DISTINCT trace_id) FROM e), (SELECT count(*) FROM e WHERE signal_kind = "
           "1), (SELECT count(*) FROM e WHERE signal_kind = 2), (SELECT count(*) FROM e WHERE "
           "signal_kind = 3), (SELECT count(*) FROM e WHERE signal_kind = 4), "
           "(SELECT count(DISTINCT w.session_id) FROM w JOIN capture.trace_labels l ON "
           "l.project_id = $1 AND l.trace_id = w.trace_id WHERE w.session_id <> '' AND "
           "l.implicit_evidence)"},
      {"cap_audit_users",
       "WITH w AS (SELECT trace_id, session_id, user_id, feature_area FROM capture.traces WHERE "
       "project_id = $1 AND start_time >= " +
           FromMicros("$2::int8") + " AND start_time < " + FromMicros("$3::int8") +
           " AND ($4 = '' OR feature_area = $4) AND user_id <> ''), "
           "r AS (SELECT DISTINCT s.user_id FROM capture.signals s JOIN w ON w.trace_id = "
           "s.trace_id WHERE s.project_id = $1 AND s.signal_kind IN (1, 2, 3, 4) AND s.actor IN "
           "(0, 1) AND s.user_id <> '') "
           "SELECT w.user_id, w.feature_area, count(*), count(DISTINCT w.session_id) FILTER "
           "(WHERE w.session_id <> ''), bool_or(r.user_id IS NOT NULL), (SELECT " +
           Micros("min(t.start_time)") +
           " FROM capture.traces t WHERE t.project_id = $1 AND t.user_id = w.user_id) "
           "FROM w LEFT JOIN r ON r.user_id = w.user_id GROUP BY w.user_id, w.feature_area"},
      {"cap_audit_user_sessions",
       "SELECT user_id, count(DISTINCT session_id) FILTER (WHERE session_id <> '') FROM "
       "capture.traces WHERE project_id = $1 AND start_time >= " +
           FromMicros("$2::int8") + " AND start_time < " + FromMicros("$3::int8") +
           " AND ($4 = '' OR feature_area = $4) AND user_id <> '' GROUP BY user_id"},
      {"cap_sweep",
       "WITH timeouts AS (SELECT DISTINCT ON (project_id) project_id, "
       "abandonment_timeout_seconds s FROM capture.rule_sets ORDER BY project_id, version DESC), "
       "idle AS (SELECT a.project_id, a.session_id, a.last_trace_id FROM "
       "capture.session_activity a LEFT JOIN timeouts t ON t.project_id = a.project_id WHERE "
       "a.last_activity < now() - make_interval(secs => coalesce(t.s::float8, $1::float8)) ORDER "
       "BY "
       "a.last_activity LIMIT $2 FOR UPDATE OF a SKIP LOCKED), "
       "gone AS (DELETE FROM capture.session_activity a USING idle i WHERE a.project_id = "
       "i.project_id AND a.session_id = i.session_id RETURNING i.project_id, i.last_trace_id), "
       "queued AS (INSERT INTO capture.label_queue (project_id, trace_id) SELECT project_id, "
       "last_trace_id FROM gone RETURNING 1) SELECT count(*) FROM queued"},
  };
}

}  // namespace

PgCaptureRepository::PgCaptureRepository(db::ConnectionPool* pool, Logger* logger)
    : pool_(pool), logger_(logger) {
  for (const Statement& statement : Statements())
    pool_->RegisterStatement(statement.name, statement.sql);
}

namespace {

// One row of COPY text format (tab-separated; backslash, tab, newline and carriage return
// escaped; bytea as \x hex; NULL as \N), built in one pass.
class CopyRow {
 public:
  explicit CopyRow(size_t reserve) { line_.reserve(reserve); }
  CopyRow& Text(const std::string& text) {
    Separate();
    if (text.find_first_of("\\\t\n\r") == std::string::npos) {
      line_ += text;
      return *this;
    }
    for (char c : text) {
      switch (c) {
        case '\\':
          line_ += "\\\\";
          break;
        case '\t':
          line_ += "\\t";
          break;
        case '\n':
          line_ += "\\n";
          break;
        case '\r':
          line_ += "\\r";
          break;
        default:
          line_ += c;
      }
    }
    return *this;
  }
  CopyRow& Bytea(const std::string& bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    Separate();
    const size_t start = line_.size();
    line_.resize(start + 3 + 2 * bytes.size());
    char* p = line_.data() + start;
    *p++ = '\\';  // "\\x": the backslash of bytea's hex format, escaped for COPY
    *p++ = '\\';
    *p++ = 'x';
    for (unsigned char c : bytes) {
      *p++ = kHex[c >> 4];
      *p++ = kHex[c & 0xf];
    }
    return *this;
  }
  CopyRow& Int(int64_t value) {
    Separate();
    absl::StrAppend(&line_, value);
    return *this;
  }
  CopyRow& Time(int64_t micros) {  // timestamptz, UTC, exact to the microsecond
    Separate();
    line_ +=
        absl::FormatTime("%Y-%m-%d %H:%M:%E6S+00", FromMicrosValue(micros), absl::UTCTimeZone());
    return *this;
  }
  CopyRow& Null() {
    Separate();
    line_ += "\\N";
    return *this;
  }
  std::string Done() { return std::move(line_); }

 private:
  void Separate() {
    if (!first_) line_ += '\t';
    first_ = false;
  }
  std::string line_;
  bool first_ = true;
};

const std::vector<std::string>& TraceColumns() {
  static const auto* columns = new std::vector<std::string>{
      "project_id", "trace_id",       "session_id",         "user_id",        "feature_area",
      "model",      "model_version",  "prompt_template_id", "prompt_version", "start_time",
      "end_time",   "content_sha256", "redactions",         "payload"};
  return *columns;
}
const std::vector<std::string>& SignalColumns() {
  static const auto* columns = new std::vector<std::string>{
      "project_id", "event_id",   "trace_id",  "session_id",     "user_id",    "signal_kind",
      "actor",      "occur_time", "value_key", "content_sha256", "redactions", "payload"};
  return *columns;
}

// COPY of prepared lines into `table`. pqxx::tablewriter (deprecated in libpqxx 6.4, still
// supported) is the only public way to send lines built elsewhere; pqxx::stream_to formats
// and escapes every field itself, which cost a fifth of the service's CPU on batches.
void CopyLines(pqxx::transaction_base& tx, const std::string& table,
               const std::vector<std::string>& columns, const std::vector<std::string>& lines,
               const std::vector<size_t>& which) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  pqxx::tablewriter writer(tx, table, columns.begin(), columns.end());
#pragma GCC diagnostic pop
  for (size_t i : which) writer.write_raw_line(lines[i]);
  writer.complete();
}

WriteOutcome Outcome(bool same_content) {
  return same_content ? WriteOutcome::kDuplicate : WriteOutcome::kConflict;
}

}  // namespace

absl::StatusOr<std::vector<WriteResult>> PgCaptureRepository::Write(
    const std::string& project_id, const std::vector<PreparedItem>& items) {
  if (items.empty()) return std::vector<WriteResult>{};
  if (items.size() == 1) return WriteOne(project_id, items[0]);
  return WriteBatch(project_id, items);
}

absl::StatusOr<std::vector<WriteResult>> PgCaptureRepository::WriteOne(
    const std::string& project_id, const PreparedItem& item) {
  const bool is_trace = item.type == PreparedItem::Type::kTrace;
  const pqxx::binarystring sha(item.content_sha256);
  const pqxx::binarystring payload(is_trace ? item.trace.SerializeAsString()
                                            : item.signal.SerializeAsString());
  std::vector<WriteResult> results(1);
  WriteResult& result = results[0];
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        result = WriteResult{};
        pqxx::result rows;
        if (is_trace) {
          const v1::Trace& trace = item.trace;
          rows = tx.exec_prepared("cap_write_trace", project_id, trace.trace_id(),
                                  trace.session_id(), trace.user_id(), trace.feature_area(),
                                  trace.model(), trace.model_version(), trace.prompt_template_id(),
                                  trace.prompt_version(), ToMicros(ToTime(trace.start_time())),
                                  ToMicros(ToTime(trace.end_time())), sha,
                                  trace.redactions().total(), payload);
        } else {
          const v1::Signal& signal = item.signal;
          const std::optional<int> value = ValueKey(signal);
          rows = tx.exec_prepared("cap_write_signal", project_id, signal.event_id(),
                                  signal.trace_id(), signal.session_id(), signal.user_id(),
                                  static_cast<int>(signal.signal_kind()),
                                  static_cast<int>(signal.actor()), ToMicros(OccurTime(signal)),
                                  value.has_value() ? absl::StrCat(*value) : "", sha,
                                  signal.redactions().total(), payload);
        }
        const pqxx::row row = rows.at(0);
        if (!is_trace) result.trace_received = row[4].as<bool>();
        if (!row[0].is_null()) {
          result.outcome = WriteOutcome::kAccepted;
          result.receive_time = FromMicrosValue(row[0].as<int64_t>());
          result.redactions = is_trace ? item.trace.redactions() : item.signal.redactions();
          return absl::OkStatus();
        }
        if (!row[1].is_null()) {
          result.outcome = Outcome(row[1].as<bool>());
          result.receive_time = FromMicrosValue(row[3].as<int64_t>());
          result.redactions = is_trace ? Parse<v1::Trace>(row[2]).redactions()
                                       : Parse<v1::Signal>(row[2]).redactions();
          return absl::OkStatus();
        }
        // Inserted concurrently, after this statement's snapshot: read it again.
        pqxx::result existing =
            tx.exec_prepared(is_trace ? "cap_existing_traces" : "cap_existing_signals", project_id,
                             TextArray({item.id()}));
        if (existing.empty()) return absl::AbortedError("concurrent write; retry");
        result.outcome = Outcome(Bytes(existing[0][1]) == item.content_sha256);
        result.receive_time = FromMicrosValue(existing[0][2].as<int64_t>());
        result.redactions = is_trace ? Parse<v1::Trace>(existing[0][3]).redactions()
                                     : Parse<v1::Signal>(existing[0][3]).redactions();
        if (!is_trace) result.trace_received = existing[0][4].as<bool>();
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return results;
}

// A batch in one transaction: one query finds what is stored already (duplicates and conflicts
// by content hash, the traces the batch's signals refer to, the transaction's receive time),
// COPY writes the new rows straight into the tables, and two statements add the label-queue and
// session rows from the batch's values. A row that another transaction inserts between the
// lookup and the COPY makes the COPY fail with a unique violation: the whole batch is then
// retried and finds that row as stored.
absl::StatusOr<std::vector<WriteResult>> PgCaptureRepository::WriteBatch(
    const std::string& project_id, const std::vector<PreparedItem>& items) {
  // Items by type; a repeated id (the logic sends none) gets the first one's result.
  std::vector<size_t> traces, signals;
  std::vector<std::pair<size_t, size_t>> repeats;
  std::map<std::string, size_t> trace_position, signal_position;  // id -> item index
  std::vector<std::string> trace_ids, signal_ids;
  for (size_t i = 0; i < items.size(); ++i) {
    const bool is_trace = items[i].type == PreparedItem::Type::kTrace;
    auto& position = is_trace ? trace_position : signal_position;
    auto [it, fresh] = position.emplace(items[i].id(), i);
    if (!fresh) {
      repeats.emplace_back(i, it->second);
      continue;
    }
    (is_trace ? traces : signals).push_back(i);
    (is_trace ? trace_ids : signal_ids).push_back(items[i].id());
  }
  std::set<std::string> referenced;  // traces of the signals, not in this batch
  for (size_t i : signals) {
    const std::string& trace_id = items[i].signal.trace_id();
    if (!trace_id.empty() && trace_position.count(trace_id) == 0) referenced.insert(trace_id);
  }
  const std::vector<std::string> referenced_ids(referenced.begin(), referenced.end());
  // COPY lines, built once (a retried transaction reuses them).
  std::vector<std::string> lines(items.size());
  std::vector<int64_t> start_us(items.size()), end_us(items.size());
  for (size_t i : traces) {
    const v1::Trace& trace = items[i].trace;
    const std::string payload = trace.SerializeAsString();
    start_us[i] = ToMicros(ToTime(trace.start_time()));
    end_us[i] = ToMicros(ToTime(trace.end_time()));
    lines[i] = CopyRow(2 * payload.size() + 512)
                   .Text(project_id)
                   .Text(trace.trace_id())
                   .Text(trace.session_id())
                   .Text(trace.user_id())
                   .Text(trace.feature_area())
                   .Text(trace.model())
                   .Text(trace.model_version())
                   .Text(trace.prompt_template_id())
                   .Text(trace.prompt_version())
                   .Time(start_us[i])
                   .Time(end_us[i])
                   .Bytea(items[i].content_sha256)
                   .Int(trace.redactions().total())
                   .Bytea(payload)
                   .Done();
  }
  for (size_t i : signals) {
    const v1::Signal& signal = items[i].signal;
    const std::string payload = signal.SerializeAsString();
    const std::optional<int> value = ValueKey(signal);
    CopyRow row(2 * payload.size() + 512);
    row.Text(project_id)
        .Text(signal.event_id())
        .Text(signal.trace_id())
        .Text(signal.session_id())
        .Text(signal.user_id())
        .Int(signal.signal_kind())
        .Int(signal.actor())
        .Time(ToMicros(OccurTime(signal)));
    if (value.has_value()) {
      row.Int(*value);
    } else {
      row.Null();
    }
    lines[i] =
        row.Bytea(items[i].content_sha256).Int(signal.redactions().total()).Bytea(payload).Done();
  }

  std::vector<WriteResult> results;
  bool raced = false;
  auto body = [&](pqxx::transaction_base& tx) -> absl::Status {
    raced = false;
    results.assign(items.size(), WriteResult{});
    std::vector<bool> stored(items.size(), false);
    std::set<std::string> known_traces;
    int64_t now_us = 0;
    for (const auto& row : tx.exec_prepared("cap_batch_existing", project_id, TextArray(trace_ids),
                                            TextArray(signal_ids), TextArray(referenced_ids))) {
      const int kind = row[0].as<int>();
      if (kind == 3) {
        now_us = row[3].as<int64_t>();
        continue;
      }
      const std::string id = row[1].as<std::string>();
      if (kind == 2) {
        known_traces.insert(id);
        continue;
      }
      const size_t i = (kind == 0 ? trace_position : signal_position).at(id);
      WriteResult& result = results[i];
      stored[i] = true;
      result.outcome = Outcome(Bytes(row[2]) == items[i].content_sha256);
      result.receive_time = FromMicrosValue(row[3].as<int64_t>());
      result.redactions = kind == 0 ? Parse<v1::Trace>(row[4]).redactions()
                                    : Parse<v1::Signal>(row[4]).redactions();
    }
    std::vector<std::string> queue_traces, new_traces, new_sessions, queue_sessions;
    std::vector<int64_t> new_starts, new_ends;
    std::vector<size_t> copy_traces, copy_signals;
    for (size_t i : traces) {
      if (!stored[i]) copy_traces.push_back(i);
    }
    for (size_t i : signals) {
      if (!stored[i]) copy_signals.push_back(i);
    }
    try {
      if (!copy_traces.empty()) {
        CopyLines(tx, "capture.traces", TraceColumns(), lines, copy_traces);
      }
      if (!copy_signals.empty()) {
        CopyLines(tx, "capture.signals", SignalColumns(), lines, copy_signals);
      }
    } catch (const pqxx::unique_violation&) {
      raced = true;
      return absl::AbortedError("concurrent write of the same id; retry");
    }
    for (size_t i : traces) {
      if (stored[i]) continue;
      WriteResult& result = results[i];
      result.outcome = WriteOutcome::kAccepted;
      result.receive_time = FromMicrosValue(now_us);
      result.redactions = items[i].trace.redactions();
      new_traces.push_back(items[i].trace.trace_id());
      new_sessions.push_back(items[i].trace.session_id());
      new_starts.push_back(start_us[i]);
      new_ends.push_back(end_us[i]);
    }
    for (size_t i : signals) {
      const v1::Signal& signal = items[i].signal;
      WriteResult& result = results[i];
      result.trace_received =
          !signal.trace_id().empty() && (trace_position.count(signal.trace_id()) > 0 ||
                                         known_traces.count(signal.trace_id()) > 0);
      if (stored[i]) continue;
      result.outcome = WriteOutcome::kAccepted;
      result.receive_time = FromMicrosValue(now_us);
      result.redactions = signal.redactions();
      if (!signal.trace_id().empty()) queue_traces.push_back(signal.trace_id());
      if (!signal.session_id().empty()) queue_sessions.push_back(signal.session_id());
    }
    queue_traces.insert(queue_traces.end(), new_traces.begin(), new_traces.end());
    if (!queue_traces.empty() || !queue_sessions.empty()) {
      std::sort(queue_traces.begin(), queue_traces.end());
      queue_traces.erase(std::unique(queue_traces.begin(), queue_traces.end()), queue_traces.end());
      tx.exec_prepared("cap_queue", project_id, TextArray(queue_traces), TextArray(new_traces),
                       TextArray(new_sessions), NumberArray(new_starts), TextArray(queue_sessions));
    }
    if (!new_traces.empty()) {
      tx.exec_prepared("cap_touch_sessions", project_id, TextArray(new_traces),
                       TextArray(new_sessions), NumberArray(new_starts), NumberArray(new_ends));
    }
    return absl::OkStatus();
  };
  constexpr int kAttempts = 5;
  absl::Status status;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    status = db::RunInTransaction(*pool_, {}, body, logger_);
    if (!raced) break;
  }
  if (!status.ok()) return status;
  for (const auto& [i, first] : repeats) {
    results[i] = results[first];
    if (results[i].outcome == WriteOutcome::kAccepted)
      results[i].outcome = WriteOutcome::kDuplicate;
    if (items[i].content_sha256 != items[first].content_sha256) {
      results[i].outcome = WriteOutcome::kConflict;
    }
  }
  return results;
}

absl::StatusOr<std::optional<StoredTrace>> PgCaptureRepository::GetTrace(
    const std::string& project_id, const std::string& trace_id) {
  std::optional<StoredTrace> found;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        found.reset();
        pqxx::result rows = tx.exec_prepared("cap_get_trace", project_id, trace_id);
        if (rows.empty()) return absl::OkStatus();
        StoredTrace stored;
        stored.trace = Parse<v1::Trace>(rows[0][0]);
        *stored.trace.mutable_receive_time() = ToProto(FromMicrosValue(rows[0][1].as<int64_t>()));
        if (!rows[0][2].is_null())
          *stored.trace.mutable_label() = Parse<v1::TraceLabel>(rows[0][2]);
        found = std::move(stored);
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return found;
}

namespace {

v1::Signal SignalFromRow(const pqxx::field& payload, const pqxx::field& receive_micros) {
  v1::Signal signal = Parse<v1::Signal>(payload);
  *signal.mutable_receive_time() = ToProto(FromMicrosValue(receive_micros.as<int64_t>()));
  return signal;
}

}  // namespace

absl::StatusOr<std::vector<v1::Signal>> PgCaptureRepository::TraceSignals(
    const std::string& project_id, const std::string& trace_id, const std::string& session_id,
    int limit) {
  std::vector<v1::Signal> signals;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        signals.clear();
        for (const auto& row :
             tx.exec_prepared("cap_trace_signals", project_id, trace_id, session_id, limit)) {
          signals.push_back(SignalFromRow(row[0], row[1]));
        }
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return signals;
}

absl::StatusOr<std::vector<v1::DerivedSignal>> PgCaptureRepository::DerivedSignals(
    const std::string& project_id, const std::string& trace_id) {
  std::vector<v1::DerivedSignal> derived;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        derived.clear();
        for (const auto& row : tx.exec_prepared("cap_derived", project_id, trace_id)) {
          derived.push_back(Parse<v1::DerivedSignal>(row[0]));
        }
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return derived;
}

absl::StatusOr<std::vector<v1::Trace>> PgCaptureRepository::ListTraces(
    const std::string& project_id, const TraceFilter& filter,
    const std::optional<TraceCursor>& after, int limit) {
  std::vector<v1::Trace> traces;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        traces.clear();
        pqxx::result rows = tx.exec_prepared(
            "cap_list_traces", project_id, OptionalMicros(filter.start_after),
            OptionalMicros(filter.start_before), filter.flagged_only, filter.feature_area,
            filter.model, filter.model_version, filter.prompt_template_id, filter.prompt_version,
            filter.session_id, filter.user_id, Optional(filter.min_score),
            Optional(filter.max_score), NumberArray(filter.signal_kinds),
            after.has_value() ? absl::StrCat(ToMicros(after->start_time)) : "",
            after.has_value() ? after->trace_id : "", limit);
        for (const auto& row : rows) {
          v1::Trace trace = Parse<v1::Trace>(row[0]);
          *trace.mutable_receive_time() = ToProto(FromMicrosValue(row[1].as<int64_t>()));
          if (!row[2].is_null()) *trace.mutable_label() = Parse<v1::TraceLabel>(row[2]);
          traces.push_back(std::move(trace));
        }
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return traces;
}

absl::StatusOr<std::vector<v1::Signal>> PgCaptureRepository::ListSignals(
    const std::string& project_id, const std::string& trace_id, const std::string& session_id,
    const std::vector<int>& kinds, const std::optional<SignalCursor>& after, int limit) {
  std::vector<v1::Signal> signals;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        signals.clear();
        pqxx::result rows = tx.exec_prepared(
            "cap_list_signals", project_id, trace_id, session_id, NumberArray(kinds),
            after.has_value() ? absl::StrCat(ToMicros(after->occur_time)) : "",
            after.has_value() ? after->event_id : "", limit);
        for (const auto& row : rows) signals.push_back(SignalFromRow(row[0], row[1]));
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return signals;
}

absl::StatusOr<FeedPage> PgCaptureRepository::ReadFeed(const std::string& project_id,
                                                       int64_t after_sequence, int max_items) {
  FeedPage page;
  absl::Status status = db::RunInTransaction(
      *pool_, {db::Isolation::kRepeatableRead},
      [&](pqxx::transaction_base& tx) {
        page = FeedPage{};
        pqxx::row bounds = tx.exec_prepared1("cap_feed_bounds", project_id);
        page.high_water_mark = bounds[0].as<int64_t>();
        page.oldest_sequence = bounds[1].as<int64_t>();
        std::vector<std::string> flagged_ids;
        std::map<std::string, std::vector<size_t>> by_trace;
        for (const auto& row :
             tx.exec_prepared("cap_read_feed", project_id, after_sequence, max_items)) {
          FeedRow feed_row;
          v1::FlaggedFeedEntry& entry = feed_row.entry;
          entry.set_sequence(row[0].as<int64_t>());
          entry.set_trace_id(row[1].as<std::string>());
          entry.set_entry_type(static_cast<v1::FlaggedFeedEntryType>(row[2].as<int>()));
          *entry.mutable_flag_time() = ToProto(FromMicrosValue(row[3].as<int64_t>()));
          entry.set_quality_score(row[4].as<double>());
          entry.set_rule_set_version(row[5].as<int64_t>());
          *entry.mutable_reasons() = Parse<v1::TraceLabel>(row[6]).reasons();
          if (!row[7].is_null()) {
            feed_row.trace = Parse<v1::Trace>(row[7]);
            flagged_ids.push_back(entry.trace_id());
            by_trace[entry.trace_id()].push_back(page.rows.size());
          }
          page.rows.push_back(std::move(feed_row));
        }
        if (!flagged_ids.empty()) {
          for (const auto& row :
               tx.exec_prepared("cap_comments", project_id, TextArray(flagged_ids))) {
            const v1::Signal signal = Parse<v1::Signal>(row[1]);
            const std::string& comment = signal.explicit_feedback().comment();
            if (comment.empty()) continue;
            for (size_t index : by_trace[row[0].as<std::string>()]) {
              page.rows[index].comments.push_back(comment);
            }
          }
        }
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return page;
}

absl::StatusOr<std::optional<v1::LabelRuleSet>> PgCaptureRepository::GetRuleSet(
    const std::string& project_id, int64_t version) {
  std::optional<v1::LabelRuleSet> found;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        found.reset();
        pqxx::result rows = tx.exec_prepared("cap_rule_set", project_id, version);
        if (!rows.empty()) found = Parse<v1::LabelRuleSet>(rows[0][0]);
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return found;
}

absl::StatusOr<std::optional<v1::RedactionConfig>> PgCaptureRepository::GetRedactionConfig(
    const std::string& project_id) {
  std::optional<v1::RedactionConfig> found;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        found.reset();
        pqxx::result rows = tx.exec_prepared("cap_redaction_config", project_id);
        if (!rows.empty()) found = Parse<v1::RedactionConfig>(rows[0][0]);
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return found;
}

namespace {

// Labels `id_list` (distinct trace ids of one project) with `rules` inside `tx`: loads their
// evidence in a handful of batch queries, computes each label with `label`, and (when `write`)
// stores derived signals, labels, flagged-feed entries and settled preference pairs. The caller
// holds the project's labeling lock, so labels and feed entries are written in order.
LabelPassStats LabelTraces(pqxx::transaction_base& tx, const std::string& project_id,
                           const std::vector<std::string>& id_list, const v1::LabelRuleSet& rules,
                           absl::Time now, const LabelFunction& label, bool write) {
  LabelPassStats stats;
  const std::set<std::string> ids(id_list.begin(), id_list.end());

  // Evidence, loaded for the whole batch.
  std::map<std::string, TraceEvidence> evidence;
  std::set<std::string> sessions;
  for (const auto& row : tx.exec_prepared("cap_ev_traces", project_id, TextArray(id_list))) {
    v1::Trace trace = Parse<v1::Trace>(row[0]);
    *trace.mutable_receive_time() = ToProto(FromMicrosValue(row[1].as<int64_t>()));
    if (!trace.session_id().empty()) sessions.insert(trace.session_id());
    const std::string id = trace.trace_id();
    evidence[id].trace = std::move(trace);
  }
  stats.traces_missing = static_cast<int>(ids.size() - evidence.size());
  const std::vector<std::string> session_list(sessions.begin(), sessions.end());
  std::set<std::string> raters;
  for (const auto& row : tx.exec_prepared("cap_ev_signals", project_id, TextArray(id_list),
                                          TextArray(session_list))) {
    v1::Signal signal = SignalFromRow(row[0], row[1]);
    if (IsExplicitKind(signal.signal_kind()) && !signal.user_id().empty()) {
      raters.insert(signal.user_id());
    }
    if (!signal.trace_id().empty()) {
      auto it = evidence.find(signal.trace_id());
      if (it != evidence.end()) it->second.signals.push_back(std::move(signal));
    } else {
      for (auto& [id, item] : evidence) {
        if (item.trace.session_id() == signal.session_id()) item.signals.push_back(signal);
      }
    }
  }
  for (const auto& row : tx.exec_prepared("cap_ev_next", project_id, TextArray(id_list))) {
    auto it = evidence.find(row[0].as<std::string>());
    if (it != evidence.end()) it->second.next_trace = Parse<v1::Trace>(row[1]);
  }
  std::map<std::string, std::pair<int, bool>> session_state;
  const absl::Duration timeout = ToDuration(rules.abandonment_timeout());
  for (const auto& row : tx.exec_prepared("cap_ev_sessions", project_id, TextArray(session_list))) {
    const bool idle = row[2].is_null() || FromMicrosValue(row[2].as<int64_t>()) < now - timeout;
    session_state[row[0].as<std::string>()] = {row[1].as<int>(), idle};
  }
  std::map<std::string, RaterStats> rater_stats;
  if (!raters.empty()) {
    const absl::Time since = now - ToDuration(rules.coverage().window());
    for (const auto& row : tx.exec_prepared(
             "cap_ev_raters", project_id,
             TextArray(std::vector<std::string>(raters.begin(), raters.end())), ToMicros(since))) {
      rater_stats[row[0].as<std::string>()] =
          RaterStats{row[1].as<int>(), row[2].as<int>(), row[3].as<int>()};
    }
  }
  std::map<std::string, std::pair<bool, int64_t>> previous;
  for (const auto& row : tx.exec_prepared("cap_ev_labels", project_id, TextArray(id_list))) {
    previous[row[0].as<std::string>()] = {row[1].as<bool>(), row[2].as<int64_t>()};
  }

  // Decide.
  std::vector<std::string> d_trace, d_payload, l_trace, l_payload;
  std::vector<int> d_kind;
  std::vector<int64_t> d_occur, l_version, l_time, l_feed;
  std::vector<double> l_score;
  std::vector<std::string> l_flagged;
  std::vector<std::string> f_trace, f_reasons;
  std::vector<int> f_type;
  std::vector<int64_t> f_time, f_version;
  std::vector<double> f_score;
  std::vector<size_t> f_label_index;
  std::vector<std::string> l_implicit;
  std::set<std::string> settled_sessions;
  for (auto& [id, item] : evidence) {
    if (!item.trace.session_id().empty()) {
      auto state = session_state.find(item.trace.session_id());
      if (state != session_state.end()) {
        item.session_turns = std::max(1, state->second.first);
        item.session_idle = state->second.second;
      }
    }
    for (const v1::Signal& signal : item.signals) {
      auto it = rater_stats.find(signal.user_id());
      if (it != rater_stats.end()) item.raters[signal.user_id()] = it->second;
    }
    LabelDecision decision = label(item, rules);
    for (const v1::DerivedSignal& derived : decision.derived) {
      d_trace.push_back(id);
      d_kind.push_back(derived.signal_kind());
      d_occur.push_back(ToMicros(ToTime(derived.occur_time())));
      d_payload.push_back(derived.SerializeAsString());
    }
    const auto before = previous.find(id);
    const bool was_flagged = before != previous.end() && before->second.first;
    int64_t feed_sequence = before != previous.end() ? before->second.second : 0;
    stats.flagged_before += was_flagged;
    stats.flagged_after += decision.label.flagged();
    stats.newly_flagged += decision.label.flagged() && !was_flagged;
    stats.unflagged += was_flagged && !decision.label.flagged();
    // A settled session (idle, this is its last trace) closes its regenerate chains.
    if (item.session_idle && !item.next_trace.has_value() && !item.trace.session_id().empty()) {
      settled_sessions.insert(item.trace.session_id());
    }
    bool implicit = false;
    for (const v1::LabelReason& reason : decision.label.reasons()) {
      implicit |= !IsExplicitKind(reason.signal_kind()) &&
                  reason.signal_kind() != v1::SIGNAL_KIND_OUTCOME &&
                  reason.signal_kind() != v1::SIGNAL_KIND_CUSTOM &&
                  reason.vote() != v1::LABEL_VOTE_ABSTAIN;
    }
    l_implicit.push_back(implicit ? "t" : "f");
    if (decision.label.flagged() != was_flagged) {
      f_trace.push_back(id);
      f_type.push_back(decision.label.flagged() ? v1::FLAGGED_FEED_ENTRY_TYPE_FLAGGED
                                                : v1::FLAGGED_FEED_ENTRY_TYPE_UNFLAGGED);
      f_time.push_back(ToMicros(now));
      f_score.push_back(decision.label.quality_score());
      f_version.push_back(decision.label.rule_set_version());
      v1::TraceLabel reasons_only;
      *reasons_only.mutable_reasons() = decision.label.reasons();
      f_reasons.push_back(reasons_only.SerializeAsString());
      f_label_index.push_back(l_trace.size());
    }
    l_trace.push_back(id);
    l_score.push_back(decision.label.quality_score());
    l_flagged.push_back(decision.label.flagged() ? "t" : "f");
    l_version.push_back(decision.label.rule_set_version());
    l_time.push_back(ToMicros(ToTime(decision.label.label_time())));
    l_feed.push_back(feed_sequence);
    l_payload.push_back(decision.label.SerializeAsString());
  }

  stats.traces_labeled = static_cast<int>(l_trace.size());
  if (!write) return stats;
  // Write: derived signals, feed entries (sequence numbers last, to hold the counter
  // lock briefly), labels, then forget the claimed queue rows.
  const std::vector<std::string> present = l_trace;
  tx.exec_prepared("cap_clear_derived", project_id, TextArray(present));
  if (!d_trace.empty()) {
    tx.exec_prepared("cap_write_derived", project_id, TextArray(d_trace), NumberArray(d_kind),
                     NumberArray(d_occur), ByteaArray(d_payload));
  }
  if (!f_trace.empty()) {
    const int64_t n = static_cast<int64_t>(f_trace.size());
    const int64_t last = tx.exec_prepared1("cap_feed_take", project_id, n)[0].as<int64_t>();
    std::vector<int64_t> f_sequence;
    for (int64_t k = 0; k < n; ++k) {
      f_sequence.push_back(last - n + 1 + k);
      l_feed[f_label_index[k]] = f_sequence.back();
    }
    tx.exec_prepared("cap_feed_append", project_id, NumberArray(f_sequence), TextArray(f_trace),
                     NumberArray(f_type), NumberArray(f_time), NumberArray(f_score),
                     NumberArray(f_version), ByteaArray(f_reasons));
    stats.feed_entries = static_cast<int>(n);
  }
  // Labels carry the sequence of their trace's latest feed entry.
  for (size_t k = 0; k < l_trace.size(); ++k) {
    if (l_feed[k] == 0) continue;
    v1::TraceLabel updated;
    updated.ParseFromString(l_payload[k]);
    if (updated.feed_sequence() == l_feed[k]) continue;
    updated.set_feed_sequence(l_feed[k]);
    l_payload[k] = updated.SerializeAsString();
  }
  if (!l_trace.empty()) {
    tx.exec_prepared("cap_write_labels", project_id, TextArray(l_trace), NumberArray(l_score),
                     TextArray(l_flagged), NumberArray(l_version), NumberArray(l_time),
                     NumberArray(l_feed), TextArray(l_implicit), ByteaArray(l_payload));
  }
  if (!settled_sessions.empty()) {
    // Regenerate links of the settled sessions (derived signals written above included).
    std::map<std::string, std::string> next;
    std::map<std::string, std::pair<std::string, std::string>> where;  // trace -> session, area
    for (const auto& row :
         tx.exec_prepared("cap_session_regenerations", project_id,
                          TextArray(std::vector<std::string>(settled_sessions.begin(),
                                                             settled_sessions.end())))) {
      const v1::DerivedSignal derived = Parse<v1::DerivedSignal>(row[1]);
      next[row[0].as<std::string>()] = derived.regenerate_pair().next_trace_id();
      where[row[0].as<std::string>()] = {row[2].as<std::string>(), row[3].as<std::string>()};
    }
    std::vector<std::string> p_id, p_rejected, p_chosen, p_session, p_area;
    for (const auto& [rejected, chosen] : ResolveRegenerateChains(next)) {
      p_id.push_back(PairId(rejected, chosen));
      p_rejected.push_back(rejected);
      p_chosen.push_back(chosen);
      p_session.push_back(where[rejected].first);
      p_area.push_back(where[rejected].second);
    }
    if (!p_id.empty()) {
      pqxx::result inserted =
          tx.exec_prepared("cap_write_pairs", project_id, TextArray(p_id), TextArray(p_rejected),
                           TextArray(p_chosen), TextArray(p_session), TextArray(p_area));
      stats.pairs_built = static_cast<int>(inserted.affected_rows());
    }
  }
  return stats;
}

v1::LabelRuleSet CurrentRules(pqxx::transaction_base& tx, const std::string& project_id,
                              int64_t version, const v1::LabelRuleSet& default_rules) {
  pqxx::result stored = tx.exec_prepared("cap_rule_set", project_id, version);
  if (!stored.empty()) return Parse<v1::LabelRuleSet>(stored[0][0]);
  return default_rules;
}

}  // namespace

absl::StatusOr<LabelPassStats> PgCaptureRepository::LabelQueued(
    int limit, const v1::LabelRuleSet& default_rules, absl::Time now, const LabelFunction& label) {
  std::vector<std::string> projects;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        projects.clear();
        for (const auto& row : tx.exec_prepared("cap_label_projects")) {
          projects.push_back(row[0].as<std::string>());
        }
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;

  LabelPassStats total;
  for (const std::string& project_id : projects) {
    LabelPassStats stats;
    status = db::RunInTransaction(
        *pool_, {},
        [&](pqxx::transaction_base& tx) -> absl::Status {
          stats = LabelPassStats{};
          // One labeler per project at a time: labels and feed entries are written in order.
          if (!tx.exec_prepared1("cap_label_lock", kLabelLockClass, project_id)[0].as<bool>()) {
            return absl::OkStatus();
          }
          std::vector<int64_t> claimed;
          std::set<std::string> ids;
          for (const auto& row : tx.exec_prepared("cap_label_claim", project_id, limit)) {
            claimed.push_back(row[0].as<int64_t>());
            ids.insert(row[1].as<std::string>());
          }
          if (claimed.empty()) return absl::OkStatus();
          stats = LabelTraces(tx, project_id, std::vector<std::string>(ids.begin(), ids.end()),
                              CurrentRules(tx, project_id, 0, default_rules), now, label, true);
          tx.exec_prepared("cap_label_done", project_id, NumberArray(claimed));
          return absl::OkStatus();
        },
        logger_);
    if (!status.ok()) return status;
    total.traces_labeled += stats.traces_labeled;
    total.traces_missing += stats.traces_missing;
    total.feed_entries += stats.feed_entries;
    total.pairs_built += stats.pairs_built;
  }
  return total;
}

absl::Status PgCaptureRepository::StoreRuleSet(const std::string& project_id,
                                               const v1::LabelRuleSet& rules) {
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        const int64_t timeout = absl::ToInt64Seconds(ToDuration(rules.abandonment_timeout()));
        tx.exec_prepared("cap_store_rules", project_id, rules.version(), timeout,
                         pqxx::binarystring(rules.SerializeAsString()));
        return absl::OkStatus();
      },
      logger_);
  if (status.code() == absl::StatusCode::kAlreadyExists) {
    return absl::AbortedError("base_version: another update won; re-read and retry");
  }
  return status;
}

absl::StatusOr<std::vector<v1::LabelRuleSet>> PgCaptureRepository::ListRuleSets(
    const std::string& project_id) {
  std::vector<v1::LabelRuleSet> sets;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        sets.clear();
        for (const auto& row : tx.exec_prepared("cap_list_rules", project_id)) {
          sets.push_back(Parse<v1::LabelRuleSet>(row[0]));
        }
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return sets;
}

absl::Status PgCaptureRepository::StoreRedactionConfig(const std::string& project_id,
                                                       const v1::RedactionConfig& config,
                                                       int64_t expected_version) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        const pqxx::binarystring payload(config.SerializeAsString());
        pqxx::result result = expected_version == 0
                                  ? tx.exec_prepared("cap_store_redaction", project_id,
                                                     config.version(), payload, expected_version)
                                  : tx.exec_prepared("cap_update_redaction", project_id,
                                                     config.version(), payload, expected_version);
        if (result.affected_rows() == 0) {
          return absl::AbortedError("expected_version: the config changed; re-read and retry");
        }
        return absl::OkStatus();
      },
      logger_);
}

namespace {

v1::RelabelJob JobFromRow(const pqxx::row& row) {
  v1::RelabelJob job;
  job.set_job_id(row[0].as<std::string>());
  job.set_request_id(row[1].as<std::string>());
  job.set_rule_set_version(row[2].as<int64_t>());
  *job.mutable_time_range()->mutable_start_time() = ToProto(FromMicrosValue(row[3].as<int64_t>()));
  *job.mutable_time_range()->mutable_end_time() = ToProto(FromMicrosValue(row[4].as<int64_t>()));
  job.set_dry_run(row[5].as<bool>());
  job.set_state(static_cast<v1::RelabelJobState>(row[6].as<int>()));
  job.set_traces_total(row[7].as<int64_t>());
  job.set_traces_processed(row[8].as<int64_t>());
  job.set_flagged_before(row[9].as<int64_t>());
  job.set_flagged_after(row[10].as<int64_t>());
  job.set_newly_flagged(row[11].as<int64_t>());
  job.set_unflagged(row[12].as<int64_t>());
  *job.mutable_create_time() = ToProto(FromMicrosValue(row[13].as<int64_t>()));
  if (!row[14].is_null())
    *job.mutable_start_time() = ToProto(FromMicrosValue(row[14].as<int64_t>()));
  if (!row[15].is_null()) {
    *job.mutable_finish_time() = ToProto(FromMicrosValue(row[15].as<int64_t>()));
  }
  job.set_error_message(row[16].as<std::string>());
  return job;
}

}  // namespace

absl::StatusOr<StoredRelabelJob> PgCaptureRepository::CreateRelabelJob(
    const StoredRelabelJob& job) {
  StoredRelabelJob stored;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result existing =
            tx.exec_prepared("cap_job_by_request", job.project_id, job.job.request_id());
        std::string job_id;
        if (!existing.empty()) {
          if (Bytes(existing[0][1]) != job.request_sha256) {
            return absl::AlreadyExistsError("request_id: used for a different request");
          }
          job_id = existing[0][0].as<std::string>();
        } else {
          pqxx::result inserted = tx.exec_prepared(
              "cap_job_insert", job.project_id, job.job.job_id(), job.job.request_id(),
              pqxx::binarystring(job.request_sha256), job.job.rule_set_version(),
              ToMicros(ToTime(job.job.time_range().start_time())),
              ToMicros(ToTime(job.job.time_range().end_time())), job.job.dry_run());
          if (inserted.empty()) {
            return absl::FailedPreconditionError(
                "another relabel job of this project is pending or running");
          }
          job_id = job.job.job_id();
        }
        pqxx::result row = tx.exec_prepared("cap_job_get", job.project_id, job_id);
        stored.project_id = job.project_id;
        stored.job = JobFromRow(row[0]);
        stored.request_sha256 = job.request_sha256;
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return stored;
}

absl::StatusOr<std::optional<v1::RelabelJob>> PgCaptureRepository::GetRelabelJob(
    const std::string& project_id, const std::string& job_id) {
  std::optional<v1::RelabelJob> job;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        job.reset();
        pqxx::result rows = tx.exec_prepared("cap_job_get", project_id, job_id);
        if (!rows.empty()) job = JobFromRow(rows[0]);
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return job;
}

absl::StatusOr<bool> PgCaptureRepository::RelabelStep(int limit,
                                                      const v1::LabelRuleSet& default_rules,
                                                      absl::Time now, const LabelFunction& label) {
  bool worked = false;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        worked = false;
        pqxx::result claim = tx.exec_prepared("cap_job_claim");
        if (claim.empty()) return absl::OkStatus();
        const std::string project_id = claim[0][0].as<std::string>();
        const std::string job_id = claim[0][1].as<std::string>();
        // Same lock as the live labeler: labels and feed entries stay in order.
        if (!tx.exec_prepared1("cap_label_lock", kLabelLockClass, project_id)[0].as<bool>()) {
          return absl::OkStatus();
        }
        worked = true;
        pqxx::row state = tx.exec_prepared1("cap_job_state", project_id, job_id);
        if (state[4].as<int>() == v1::RELABEL_JOB_STATE_PENDING) {
          tx.exec_prepared("cap_job_start", project_id, job_id);
        }
        const int64_t version = state[0].as<int64_t>();
        const bool dry_run = state[3].as<bool>();
        const std::string cursor = state[5].is_null() ? "" : absl::StrCat(state[5].as<int64_t>());
        std::vector<std::string> ids;
        int64_t last_start = 0;
        for (const auto& row :
             tx.exec_prepared("cap_job_chunk", project_id, state[1].as<int64_t>(),
                              state[2].as<int64_t>(), cursor, state[6].as<std::string>(), limit)) {
          ids.push_back(row[0].as<std::string>());
          last_start = row[1].as<int64_t>();
        }
        if (ids.empty()) {
          tx.exec_prepared("cap_job_finish", project_id, job_id,
                           static_cast<int>(v1::RELABEL_JOB_STATE_SUCCEEDED), "");
          return absl::OkStatus();
        }
        const v1::LabelRuleSet rules = version == 1
                                           ? CurrentRules(tx, project_id, 1, default_rules)
                                           : CurrentRules(tx, project_id, version, default_rules);
        const LabelPassStats stats = LabelTraces(tx, project_id, ids, rules, now, label, !dry_run);
        tx.exec_prepared("cap_job_progress", project_id, job_id, static_cast<int64_t>(ids.size()),
                         stats.flagged_before, stats.flagged_after, stats.newly_flagged,
                         stats.unflagged, last_start, ids.back());
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return worked;
}

absl::StatusOr<std::vector<v1::PreferencePair>> PgCaptureRepository::ListPreferencePairs(
    const std::string& project_id, const PairFilter& filter, const std::optional<PairCursor>& after,
    int limit) {
  std::vector<v1::PreferencePair> pairs;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        pairs.clear();
        for (const auto& row :
             tx.exec_prepared("cap_list_pairs", project_id, OptionalMicros(filter.created_after),
                              OptionalMicros(filter.created_before), filter.feature_area,
                              after.has_value() ? absl::StrCat(ToMicros(after->created)) : "",
                              after.has_value() ? after->pair_id : "", limit)) {
          v1::PreferencePair pair;
          pair.set_pair_id(row[0].as<std::string>());
          pair.set_rejected_trace_id(row[1].as<std::string>());
          pair.set_chosen_trace_id(row[2].as<std::string>());
          pair.set_session_id(row[3].as<std::string>());
          pair.set_feature_area(row[4].as<std::string>());
          *pair.mutable_create_time() = ToProto(FromMicrosValue(row[5].as<int64_t>()));
          const v1::Trace rejected = Parse<v1::Trace>(row[6]);
          const v1::Trace chosen = Parse<v1::Trace>(row[7]);
          *pair.mutable_prompt() = rejected.input();
          pair.set_rejected_output(rejected.output());
          pair.set_chosen_output(chosen.output());
          if (!row[8].is_null()) pair.set_chosen_quality_score(row[8].as<double>());
          pairs.push_back(std::move(pair));
        }
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return pairs;
}

absl::StatusOr<AuditData> PgCaptureRepository::AuditWindow(const std::string& project_id,
                                                           absl::Time start, absl::Time end,
                                                           const std::string& feature_area) {
  AuditData data;
  absl::Status status = db::RunInTransaction(
      *pool_, {db::Isolation::kRepeatableRead},
      [&](pqxx::transaction_base& tx) {
        data = AuditData{};
        pqxx::row totals = tx.exec_prepared1("cap_audit_totals", project_id, ToMicros(start),
                                             ToMicros(end), feature_area);
        data.traces = totals[0].as<int64_t>();
        data.sessions = totals[1].as<int64_t>();
        data.users = totals[2].as<int64_t>();
        data.traces_with_explicit = totals[3].as<int64_t>();
        data.thumbs_up = totals[4].as<int64_t>();
        data.thumbs_down = totals[5].as<int64_t>();
        data.ratings = totals[6].as<int64_t>();
        data.comments_only = totals[7].as<int64_t>();
        data.sessions_with_implicit = totals[8].as<int64_t>();
        std::map<std::string, AuditUser> users;
        for (const auto& row : tx.exec_prepared("cap_audit_users", project_id, ToMicros(start),
                                                ToMicros(end), feature_area)) {
          AuditUser& user = users[row[0].as<std::string>()];
          user.user_id = row[0].as<std::string>();
          user.traces_by_area[row[1].as<std::string>()] += row[2].as<int64_t>();
          user.traces += row[2].as<int64_t>();
          user.rater = user.rater || row[4].as<bool>();
          user.first_trace = FromMicrosValue(row[5].as<int64_t>());
        }
        for (const auto& row : tx.exec_prepared("cap_audit_user_sessions", project_id,
                                                ToMicros(start), ToMicros(end), feature_area)) {
          auto it = users.find(row[0].as<std::string>());
          if (it != users.end()) it->second.sessions = row[1].as<int64_t>();
        }
        for (auto& [id, user] : users) data.per_user.push_back(std::move(user));
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return data;
}

absl::StatusOr<int> PgCaptureRepository::SweepIdleSessions(absl::Duration default_timeout,
                                                           int limit) {
  int swept = 0;
  absl::Status status = db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) {
        swept = tx.exec_prepared1("cap_sweep", absl::ToDoubleSeconds(default_timeout), limit)[0]
                    .as<int>();
        return absl::OkStatus();
      },
      logger_);
  if (!status.ok()) return status;
  return swept;
}

}  // namespace flywheel::capture
