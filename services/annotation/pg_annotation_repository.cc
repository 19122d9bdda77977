#include "services/annotation/pg_annotation_repository.h"

#include <algorithm>
#include <map>
#include <pqxx/pqxx>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/db/pg_array.h"
#include "common/db/transaction.h"
#include "common/status/status_macros.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/annotation/ids.h"

namespace flywheel::annotation {
namespace {

namespace evalv1 = ::flywheel::evalset::v1;

// Times travel as microseconds since the epoch, both ways.
#define MICROS(col) "round(date_part('epoch', " col ") * 1000000)::int8"
#define TS(n) "('epoch'::timestamptz + $" #n "::int8 * interval '1 microsecond')"

constexpr char kQueueColumns[] =
    "queue_id, config, state, etag_seq, rubric_revision, any_annotation, fill_cursor, " MICROS(
        "create_time") ", " MICROS("update_time");

// Item columns; the snapshot column is NULL unless asked for ($snapshot placeholder).
#define ITEM_COLUMNS(snapshot) \
  "i.trace_id, i.state, i.source, i.priority, array_to_string(i.assigned_reviewers, ','), "      \
  "i.stratum, i.novelty, i.annotation_count, i.active_lease_count, i.skip_count, " MICROS(       \
      "i.enqueue_time") ", " MICROS("i.complete_time") ", i.agreement_reached, "                 \
                                                       "coalesce(i.promoted_annotation_id, ''), " \
                                                       "(SELECT string_agg(l.reviewer_id || '|' " \
                                                       "|| " MICROS("l.claim_time") " || '|' || " \
      MICROS("l.expire_time") ", ',' ORDER BY l.claim_time) FROM review.leases l WHERE "         \
                              "l.project_id = i.project_id AND l.queue_id = i.queue_id AND "     \
                              "l.trace_id = i.trace_id AND l.state = 1), " snapshot ", i.queue_id"

constexpr char kItemBasic[] = ITEM_COLUMNS("NULL::bytea");
constexpr char kItemFull[] = ITEM_COLUMNS("i.snapshot");

constexpr char kLeaseColumns[] = "lease_id, queue_id, trace_id, reviewer_id, state, " MICROS(
    "claim_time") ", " MICROS("expire_time") ", (expire_time <= now())";

constexpr char kAnnotationColumns[] =
    "a.annotation_id, a.queue_id, a.trace_id, a.reviewer_id, a.lease_id, a.revision, a.content, "
    "a.rubric_revision, a.time_spent_ms, a.promote, " MICROS("a.submit_time") ", " MICROS(
        "a.update_time") ", p.state, p.trigger, p.eval_set_id, p.revision, p.attempts, " MICROS(
        "p.request_time") ", " MICROS("p.last_attempt_time") ", " MICROS(
        "p.next_attempt_time") ", " MICROS("p.deliver_time") ", p.eval_case_id, "
                                                             "p.last_error_code, p.last_error";

constexpr char kAnnotationFrom[] =
    " FROM review.annotations a LEFT JOIN review.promotions p ON p.project_id = a.project_id AND "
    "p.annotation_id = a.annotation_id ";

std::string Bytes(const pqxx::field& field) { return pqxx::binarystring(field).str(); }

absl::Time Micros(const pqxx::field& field) { return absl::FromUnixMicros(field.as<int64_t>()); }

void SetTimestamp(const pqxx::field& field, google::protobuf::Timestamp* out) {
  const int64_t micros = field.as<int64_t>();
  out->set_seconds(micros / 1000000);
  out->set_nanos(static_cast<int32_t>((micros % 1000000) * 1000));
}

void SetMicros(int64_t micros, google::protobuf::Timestamp* out) {
  out->set_seconds(micros / 1000000);
  out->set_nanos(static_cast<int32_t>((micros % 1000000) * 1000));
}

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }

QueueRecord QueueFromRow(const pqxx::row& row) {
  QueueRecord q;
  q.queue.ParseFromString(Bytes(row[1]));
  q.queue.set_queue_id(row[0].as<std::string>());
  q.queue.set_state(static_cast<v1::QueueState>(row[2].as<int>()));
  q.etag_seq = row[3].as<int64_t>();
  q.queue.mutable_rubric()->set_revision(row[4].as<int>());
  q.any_annotation = row[5].as<bool>();
  q.fill_cursor = row[6].as<int64_t>();
  SetTimestamp(row[7], q.queue.mutable_create_time());
  SetTimestamp(row[8], q.queue.mutable_update_time());
  q.queue.set_etag(absl::StrCat(q.etag_seq));
  return q;
}

v1::Item ItemFromRow(const pqxx::row& row) {
  v1::Item item;
  item.set_trace_id(row[0].as<std::string>());
  item.set_state(static_cast<v1::ItemState>(row[1].as<int>()));
  item.set_source(static_cast<v1::ItemSource>(row[2].as<int>()));
  item.set_priority(row[3].as<int>());
  const std::string assigned = row[4].as<std::string>();
  if (!assigned.empty()) {
    for (absl::string_view r : absl::StrSplit(assigned, ',')) {
      item.add_assigned_reviewer_ids(std::string(r));
    }
  }
  item.set_stratum(row[5].as<std::string>());
  item.set_novelty(row[6].as<double>());
  item.set_annotation_count(row[7].as<int>());
  item.set_active_lease_count(row[8].as<int>());
  item.set_skip_count(row[9].as<int>());
  SetTimestamp(row[10], item.mutable_enqueue_time());
  if (!row[11].is_null()) SetTimestamp(row[11], item.mutable_complete_time());
  item.set_agreement_reached(row[12].as<bool>());
  item.set_promoted_annotation_id(row[13].as<std::string>());
  if (!row[14].is_null()) {
    for (absl::string_view lease : absl::StrSplit(row[14].as<std::string>(), ',')) {
      std::vector<std::string> parts = absl::StrSplit(lease, '|');
      if (parts.size() != 3) continue;
      v1::LeaseInfo* info = item.add_active_leases();
      info->set_reviewer_id(parts[0]);
      SetMicros(std::stoll(parts[1]), info->mutable_claim_time());
      SetMicros(std::stoll(parts[2]), info->mutable_expire_time());
    }
  }
  if (!row[15].is_null()) item.mutable_snapshot()->ParseFromString(Bytes(row[15]));
  item.set_queue_id(row[16].as<std::string>());
  return item;
}

struct LeaseRow {
  v1::Lease lease;
  LeaseState state = LeaseState::kActive;
  bool expired = false;
};

LeaseRow LeaseFromRow(const pqxx::row& row) {
  LeaseRow l;
  l.lease.set_lease_id(row[0].as<std::string>());
  l.lease.set_queue_id(row[1].as<std::string>());
  l.lease.set_trace_id(row[2].as<std::string>());
  l.lease.set_reviewer_id(row[3].as<std::string>());
  l.state = static_cast<LeaseState>(row[4].as<int>());
  SetTimestamp(row[5], l.lease.mutable_claim_time());
  SetTimestamp(row[6], l.lease.mutable_expire_time());
  l.expired = row[7].as<bool>();
  return l;
}

AnnotationRecord AnnotationFromRow(const pqxx::row& row) {
  AnnotationRecord r;
  v1::Annotation& a = r.annotation;
  a.set_annotation_id(row[0].as<std::string>());
  a.set_queue_id(row[1].as<std::string>());
  a.set_trace_id(row[2].as<std::string>());
  a.set_reviewer_id(row[3].as<std::string>());
  r.lease_id = row[4].as<std::string>();
  a.set_revision(row[5].as<int>());
  v1::AnnotationRevision content;
  content.ParseFromString(Bytes(row[6]));
  *a.mutable_values() = content.values();
  a.set_comment(content.comment());
  a.set_rubric_revision(row[7].as<int>());
  const int64_t spent_ms = row[8].as<int64_t>();
  a.mutable_time_spent()->set_seconds(spent_ms / 1000);
  a.mutable_time_spent()->set_nanos(static_cast<int32_t>((spent_ms % 1000) * 1000000));
  if (!row[9].is_null()) r.promote = row[9].as<bool>();
  SetTimestamp(row[10], a.mutable_submit_time());
  SetTimestamp(row[11], a.mutable_update_time());
  v1::PromotionStatus* p = a.mutable_promotion();
  if (row[12].is_null()) {
    p->set_state(v1::PROMOTION_STATE_NOT_PROMOTED);
  } else {
    p->set_state(static_cast<v1::PromotionState>(row[12].as<int>()));
    p->set_trigger(static_cast<v1::PromotionTrigger>(row[13].as<int>()));
    p->set_eval_set_id(row[14].as<std::string>());
    p->set_revision(row[15].as<int>());
    p->set_attempts(row[16].as<int>());
    SetTimestamp(row[17], p->mutable_request_time());
    if (!row[18].is_null()) SetTimestamp(row[18], p->mutable_last_attempt_time());
    if (p->state() == v1::PROMOTION_STATE_PENDING) {
      SetTimestamp(row[19], p->mutable_next_attempt_time());
    }
    if (!row[20].is_null()) SetTimestamp(row[20], p->mutable_deliver_time());
    p->set_eval_case_id(row[21].as<std::string>());
    p->set_last_error_code(row[22].as<int>());
    p->set_last_error(row[23].as<std::string>());
  }
  return r;
}

std::string Notification(const std::string& project, const std::string& queue_id) {
  return absl::StrCat(project, "\t", queue_id);
}

template <typename T>
std::string IntArray(const std::vector<T>& values) {
  std::vector<std::string> parts;
  for (T v : values) parts.push_back(absl::StrCat(static_cast<int>(v)));
  return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
}

std::string OptionalMicros(const std::optional<absl::Time>& t) {
  return t ? absl::StrCat(ToMicros(*t)) : std::string();
}
#define NULLABLE_TS(n)                                                \
  "CASE WHEN $" #n " = '' THEN NULL ELSE 'epoch'::timestamptz + $" #n \
  "::int8 * interval '1 microsecond' END"

// ---- helpers used inside transactions

absl::StatusOr<QueueRecord> LoadQueue(pqxx::transaction_base& tx, const std::string& project,
                                      const std::string& queue_id, const char* statement) {
  pqxx::result rows = tx.exec_prepared(statement, project, queue_id);
  if (rows.empty()) return absl::NotFoundError("queue not found");
  return QueueFromRow(rows[0]);
}

v1::Item LoadItem(pqxx::transaction_base& tx, const std::string& project,
                  const std::string& queue_id, const std::string& trace_id, bool full) {
  return ItemFromRow(tx.exec_prepared1(full ? "review_item_full" : "review_item_basic", project,
                                       queue_id, trace_id));
}

std::vector<AnnotationRecord> LoadItemAnnotations(pqxx::transaction_base& tx,
                                                  const std::string& project,
                                                  const std::string& queue_id,
                                                  const std::string& trace_id) {
  std::vector<AnnotationRecord> out;
  for (const auto& row : tx.exec_prepared("review_item_annotations", project, queue_id, trace_id)) {
    out.push_back(AnnotationFromRow(row));
  }
  return out;
}

AnnotationRecord LoadAnnotation(pqxx::transaction_base& tx, const std::string& project,
                                const std::string& annotation_id) {
  return AnnotationFromRow(tx.exec_prepared1("review_annotation_get", project, annotation_id));
}

void WritePromotion(pqxx::transaction_base& tx, const std::string& project,
                    const std::string& queue_id, const PromotionRequest& p, bool replace) {
  tx.exec_prepared(replace ? "review_promotion_upsert" : "review_promotion_insert", project,
                   p.annotation_id, queue_id, p.eval_set_id, static_cast<int>(p.trigger),
                   p.revision, pqxx::binarystring(p.payload.SerializeAsString()), p.update_case_id);
}

// Runs the promotion policy after a change of `changed` and writes what it decides.
void ApplyPromotionPolicy(pqxx::transaction_base& tx, const std::string& project,
                          const QueueRecord& queue, const std::string& trace_id,
                          const std::string& changed_id, const PromotionDecider& decide) {
  if (!decide) return;
  const v1::Item item = LoadItem(tx, project, queue.queue.queue_id(), trace_id, true);
  const std::vector<AnnotationRecord> annotations =
      LoadItemAnnotations(tx, project, queue.queue.queue_id(), trace_id);
  const AnnotationRecord* changed = nullptr;
  for (const AnnotationRecord& a : annotations) {
    if (a.annotation.annotation_id() == changed_id) changed = &a;
  }
  if (changed == nullptr) return;
  PromotionDecision decision = decide(PromotionContext{queue, item, annotations, *changed});
  for (const PromotionRequest& p : decision.promotions) {
    WritePromotion(tx, project, queue.queue.queue_id(), p, /*replace=*/false);
  }
  if (decision.agreement_reached && !item.agreement_reached()) {
    tx.exec_prepared("review_item_mark_agreement", project, queue.queue.queue_id(), trace_id,
                     decision.promoted_annotation_id);
  }
}

// Returns expired leases of one queue to the pool (every queue when queue_id is empty) and wakes
// the claimers of the queues that got slots back; returns how many leases expired.
int64_t ExpireIn(pqxx::transaction_base& tx, const std::string& project,
                 const std::string& queue_id, int limit) {
  std::set<std::pair<std::string, std::string>> woken;
  pqxx::result rows = queue_id.empty() ? tx.exec_prepared("review_expire_all", limit)
                                       : tx.exec_prepared("review_expire_queue", project, queue_id);
  int64_t expired = 0;
  for (const auto& row : rows) {
    woken.emplace(row[0].as<std::string>(), row[1].as<std::string>());
    expired += row[2].as<int64_t>();
  }
  for (const auto& [p, q] : woken) {
    tx.exec_prepared("review_notify", kClaimableChannel, Notification(p, q));
  }
  return expired;
}

// Restricted queues: an item that every named reviewer has labeled or skipped but that still
// lacks annotations goes out of circulation (SKIPPED): nobody else may ever label it.
void CloseIfReviewersExhausted(pqxx::transaction_base& tx, const std::string& project,
                               const QueueRecord& queue, const std::string& trace_id) {
  const v1::QueueAssignment& assignment = queue.queue.assignment();
  if (!assignment.restrict_to_reviewers() || assignment.reviewer_ids().empty()) return;
  tx.exec_prepared("review_item_close_exhausted", project, queue.queue.queue_id(), trace_id,
                   db::TextArray(std::vector<std::string>(assignment.reviewer_ids().begin(),
                                                          assignment.reviewer_ids().end())));
}

absl::StatusOr<LeaseRow> LockLease(pqxx::transaction_base& tx, const std::string& project,
                                   const std::string& queue_id, const std::string& lease_id) {
  pqxx::result rows = tx.exec_prepared("review_lease_lock", project, lease_id);
  if (rows.empty()) return absl::NotFoundError("lease_id not found");
  LeaseRow lease = LeaseFromRow(rows[0]);
  if (lease.lease.queue_id() != queue_id) return absl::NotFoundError("lease_id not found");
  return lease;
}

absl::Status EndedMessage(const LeaseRow& lease) {
  switch (lease.state) {
    case LeaseState::kSubmitted:
      return absl::FailedPreconditionError("lease ended: already submitted");
    case LeaseState::kSkipped:
      return absl::FailedPreconditionError("lease ended: skipped");
    case LeaseState::kReleased:
      return absl::FailedPreconditionError("lease ended: released");
    case LeaseState::kExpired:
      return absl::FailedPreconditionError("lease expired");
    case LeaseState::kActive:
      break;
  }
  return absl::FailedPreconditionError("lease expired");
}

std::vector<EnqueueOutcome> InsertItems(pqxx::transaction_base& tx, const std::string& project,
                                        const std::string& queue_id,
                                        const std::vector<NewItem>& items) {
  std::vector<std::string> ids, sources, priorities, assigned, reserved, strata, novelty, rank,
      snapshots;
  for (const NewItem& item : items) {
    ids.push_back(item.trace_id);
    sources.push_back(absl::StrCat(static_cast<int>(item.source)));
    priorities.push_back(absl::StrCat(item.priority));
    assigned.push_back(absl::StrJoin(item.assigned_reviewer_ids, ","));
    reserved.push_back(item.assigned_reviewer_ids.empty() ? ""
                       : item.reserved_until ? absl::StrCat(ToMicros(*item.reserved_until))
                                             : "inf");
    strata.push_back(item.stratum);
    novelty.push_back(absl::StrFormat("%.17g", item.novelty));
    rank.push_back(absl::StrFormat("%.17g", item.sampling_rank));
    snapshots.push_back(item.snapshot.SerializeAsString());
  }
  std::set<std::string> inserted;
  for (const auto& row :
       tx.exec_prepared("review_items_insert", project, queue_id, db::TextArray(ids),
                        db::TextArray(sources), db::TextArray(priorities), db::TextArray(assigned),
                        db::TextArray(reserved), db::TextArray(strata), db::TextArray(novelty),
                        db::TextArray(rank), db::ByteaArray(snapshots))) {
    inserted.insert(row[0].as<std::string>());
  }
  std::vector<EnqueueOutcome> out;
  std::map<std::string, v1::Item> existing;
  if (inserted.size() < items.size()) {
    for (const auto& row :
         tx.exec_prepared("review_items_find", project, queue_id, db::TextArray(ids))) {
      v1::Item item = ItemFromRow(row);
      existing[item.trace_id()] = item;
    }
  }
  std::set<std::string> seen;
  for (const NewItem& item : items) {
    if (inserted.count(item.trace_id) && seen.insert(item.trace_id).second) {
      out.push_back(EnqueueOutcome::kAccepted);
      continue;
    }
    auto it = existing.find(item.trace_id);
    if (it == existing.end()) {
      out.push_back(EnqueueOutcome::kDuplicate);
      continue;
    }
    std::vector<std::string> have(it->second.assigned_reviewer_ids().begin(),
                                  it->second.assigned_reviewer_ids().end());
    out.push_back(it->second.priority() == item.priority && have == item.assigned_reviewer_ids
                      ? EnqueueOutcome::kDuplicate
                      : EnqueueOutcome::kConflict);
  }
  if (!inserted.empty()) {
    tx.exec_prepared("review_notify", kClaimableChannel, Notification(project, queue_id));
  }
  return out;
}

}  // namespace

PgAnnotationRepository::PgAnnotationRepository(db::ConnectionPool* pool, Logger* logger)
    : pool_(pool), logger_(logger) {
  RegisterStatements();
}

void PgAnnotationRepository::RegisterStatements() {
  auto reg = [this](const char* name, std::string sql) {
    pool_->RegisterStatement(name, std::move(sql));
  };
  // ---- queues
  reg("review_queue_insert",
      absl::StrCat("INSERT INTO review.queues (project_id, queue_id, config, state, source, "
                   "reviewers_per_item, lease_ms, max_skips, request_id) VALUES ($1, $2, $3, $4, "
                   "$5, $6, $7, $8, NULLIF($9, '')) ON CONFLICT DO NOTHING RETURNING ",
                   kQueueColumns));
  reg("review_queue_count_live",
      "SELECT count(*) FROM review.queues WHERE project_id = $1 AND state <> 3");
  reg("review_queue_lock_project",
      "SELECT pg_advisory_xact_lock(hashtext('review.queues:' || $1))");
  reg("review_queue_get", absl::StrCat("SELECT ", kQueueColumns,
                                       " FROM review.queues WHERE project_id = $1 AND queue_id = "
                                       "$2"));
  reg("review_queue_get_share",
      absl::StrCat("SELECT ", kQueueColumns,
                   " FROM review.queues WHERE project_id = $1 AND queue_id = $2 FOR KEY SHARE"));
  reg("review_queue_get_update",
      absl::StrCat("SELECT ", kQueueColumns,
                   " FROM review.queues WHERE project_id = $1 AND queue_id = $2 FOR UPDATE"));
  reg("review_queue_by_request",
      absl::StrCat("SELECT ", kQueueColumns,
                   " FROM review.queues WHERE project_id = $1 AND request_id = $2"));
  reg("review_queue_save",
      absl::StrCat("UPDATE review.queues SET config = $3, state = $4, source = $5, "
                   "reviewers_per_item = $6, lease_ms = $7, max_skips = $8, rubric_revision = $9, "
                   "etag_seq = etag_seq + 1, update_time = now() WHERE project_id = $1 AND "
                   "queue_id = $2 RETURNING ",
                   kQueueColumns));
  reg("review_queue_list",
      absl::StrCat("SELECT ", kQueueColumns,
                   " FROM review.queues WHERE project_id = $1 AND state = ANY($2::smallint[]) AND "
                   "($3 = '' OR (create_time, queue_id) < (" NULLABLE_TS(
                       3) ", $4)) ORDER BY "
                          "create_time DESC, queue_id DESC LIMIT $5"));
  reg("review_queue_mark_annotated",
      "UPDATE review.queues SET any_annotation = true WHERE project_id = $1 AND queue_id = $2 AND "
      "NOT any_annotation");
  // Archiving ends every active lease.
  reg("review_queue_end_leases",
      "WITH ended AS (UPDATE review.leases SET state = 4, end_time = now() WHERE project_id = $1 "
      "AND queue_id = $2 AND state = 1 RETURNING trace_id), c AS (SELECT trace_id, count(*) AS n "
      "FROM ended GROUP BY trace_id) UPDATE review.items i SET active_lease_count = "
      "i.active_lease_count - c.n, state = CASE WHEN i.state IN (3, 4) THEN i.state ELSE 1 END "
      "FROM c WHERE i.project_id = $1 AND i.queue_id = $2 AND i.trace_id = c.trace_id");
  reg("review_queue_apply_n",
      "UPDATE review.items SET required_reviews = $3, state = CASE WHEN annotation_count >= $3 "
      "THEN 3 WHEN annotation_count + active_lease_count >= $3 THEN 2 ELSE 1 END, complete_time = "
      "CASE WHEN annotation_count >= $3 THEN now() ELSE NULL END WHERE project_id = $1 AND "
      "queue_id = $2 AND state IN (1, 2)");

  // ---- items
  reg("review_items_insert",
      "INSERT INTO review.items (project_id, queue_id, trace_id, state, source, priority, "
      "assigned_reviewers, reserved_until, stratum, novelty, sampling_rank, required_reviews, "
      "snapshot) SELECT $1, $2, t.trace_id, 1, t.source::smallint, t.priority::int, "
      "CASE WHEN t.assigned = '' THEN '{}'::text[] ELSE string_to_array(t.assigned, ',') END, "
      "CASE WHEN t.reserved = '' THEN NULL WHEN t.reserved = 'inf' THEN 'infinity'::timestamptz "
      "ELSE 'epoch'::timestamptz + t.reserved::int8 * interval '1 microsecond' END, t.stratum, "
      "t.novelty::float8, t.rank::float8, q.reviewers_per_item, t.snapshot FROM unnest($3::text[], "
      "$4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], "
      "$11::bytea[]) AS t(trace_id, source, priority, assigned, reserved, stratum, novelty, rank, "
      "snapshot) JOIN review.queues q ON q.project_id = $1 AND q.queue_id = $2 "
      "ON CONFLICT DO NOTHING RETURNING trace_id");
  reg("review_items_find",
      absl::StrCat("SELECT ", kItemBasic,
                   " FROM review.items i WHERE i.project_id = $1 AND i.queue_id = $2 AND "
                   "i.trace_id = ANY($3::text[])"));
  reg("review_item_basic",
      absl::StrCat("SELECT ", kItemBasic,
                   " FROM review.items i WHERE i.project_id = $1 AND i.queue_id = $2 AND "
                   "i.trace_id = $3"));
  reg("review_item_full",
      absl::StrCat("SELECT ", kItemFull,
                   " FROM review.items i WHERE i.project_id = $1 AND i.queue_id = $2 AND "
                   "i.trace_id = $3"));
  const std::string list_where =
      " FROM review.items i WHERE i.project_id = $1 AND i.queue_id = $2 AND "
      "(cardinality($3::smallint[]) = 0 OR i.state = ANY($3::smallint[])) AND "
      "(cardinality($4::smallint[]) = 0 OR i.source = ANY($4::smallint[])) AND "
      "($5 = '' OR $5 = ANY(i.assigned_reviewers)) AND "
      "($6 = '' OR i.enqueue_time >= " NULLABLE_TS(6) ") AND ($7 = '' OR i.enqueue_time < " NULLABLE_TS(
          7) ") AND ($8 = '' OR (i.enqueue_time, i.trace_id) > (" NULLABLE_TS(8) ", $9)) "
             "ORDER BY i.enqueue_time, i.trace_id LIMIT $10";
  reg("review_items_list_basic", absl::StrCat("SELECT ", kItemBasic, list_where));
  reg("review_items_list_full", absl::StrCat("SELECT ", kItemFull, list_where));
  reg("review_item_mark_agreement",
      "UPDATE review.items SET agreement_reached = true, promoted_annotation_id = NULLIF($4, '') "
      "WHERE project_id = $1 AND queue_id = $2 AND trace_id = $3");
  reg("review_notify", "SELECT pg_notify($1, $2)");

  // ---- claim: items assigned to the reviewer first, then everything claimable. One statement
  // each: pick the first claimable item in index order, skipping rows other claimers hold,
  // and take one of its slots.
  const std::string not_mine =
      "NOT EXISTS (SELECT 1 FROM review.leases l WHERE l.project_id = i.project_id AND "
      "l.queue_id = i.queue_id AND l.trace_id = i.trace_id AND l.reviewer_id = $3 AND l.state IN "
      "(1, 2, 3))";
  const std::string take =
      ") UPDATE review.items i SET active_lease_count = i.active_lease_count + 1, state = CASE "
      "WHEN i.annotation_count + i.active_lease_count + 1 >= i.required_reviews THEN 2 ELSE 1 END "
      "FROM pick WHERE i.project_id = $1 AND i.queue_id = $2 AND i.trace_id = pick.trace_id "
      "RETURNING i.trace_id";
  const std::string order =
      " ORDER BY i.priority DESC, i.has_annotations DESC, i.sampling_rank DESC, i.enqueue_time, "
      "i.trace_id LIMIT 1 FOR UPDATE OF i SKIP LOCKED";
  reg("review_claim_assigned",
      absl::StrCat("WITH pick AS (SELECT i.trace_id FROM review.items i WHERE i.project_id = $1 "
                   "AND i.queue_id = $2 AND i.state = 1 AND cardinality(i.assigned_reviewers) > 0 "
                   "AND $3 = ANY(i.assigned_reviewers) AND ",
                   not_mine, order, take));
  reg("review_claim_any",
      absl::StrCat("WITH pick AS (SELECT i.trace_id FROM review.items i WHERE i.project_id = $1 "
                   "AND i.queue_id = $2 AND i.state = 1 AND (cardinality(i.assigned_reviewers) = "
                   "0 OR $3 = ANY(i.assigned_reviewers) OR i.reserved_until <= now() OR "
                   "i.annotation_count + i.active_lease_count + cardinality(i.assigned_reviewers) "
                   "< i.required_reviews) AND ",
                   not_mine, order, take));
  reg("review_lease_insert",
      absl::StrCat("INSERT INTO review.leases (project_id, lease_id, queue_id, trace_id, "
                   "reviewer_id, state, expire_time, request_id) VALUES ($1, $2, $3, $4, $5, 1, "
                   "now() + $6 * interval '1 millisecond', NULLIF($7, '')) RETURNING ",
                   kLeaseColumns));
  reg("review_lease_by_request",
      absl::StrCat("SELECT ", kLeaseColumns,
                   " FROM review.leases WHERE project_id = $1 AND queue_id = $2 AND reviewer_id = "
                   "$3 AND request_id = $4 AND state = 1 AND expire_time > now()"));
  reg("review_active_lease_count",
      "SELECT count(*) FROM review.leases WHERE project_id = $1 AND queue_id = $2 AND "
      "reviewer_id = $3 AND state = 1 AND expire_time > now()");
  reg("review_claim_blockers",
      absl::StrCat(
          "SELECT count(*), ", MICROS("min(l.expire_time)"),
          ", count(*) FILTER (WHERE $3 = ANY(i.assigned_reviewers)) FROM review.items i LEFT "
          "JOIN review.leases l ON l.project_id = i.project_id AND l.queue_id = i.queue_id AND "
          "l.trace_id = i.trace_id AND l.state = 1 WHERE i.project_id = $1 AND i.queue_id = $2 "
          "AND i.state IN (1, 2) AND ",
          not_mine));
  reg("review_expire_queue",
      "WITH due AS (SELECT lease_id FROM review.leases WHERE project_id = $1 AND queue_id = $2 AND "
      "state = 1 AND expire_time <= now() FOR UPDATE SKIP LOCKED), ended AS (UPDATE review.leases "
      "l SET state = 5, end_time = now() FROM due WHERE l.project_id = $1 AND l.lease_id = "
      "due.lease_id RETURNING l.project_id, l.queue_id, l.trace_id), c AS (SELECT project_id, "
      "queue_id, trace_id, count(*) AS n FROM ended GROUP BY 1, 2, 3) UPDATE review.items i SET "
      "active_lease_count = i.active_lease_count - c.n, state = CASE WHEN i.state IN (3, 4) THEN "
      "i.state ELSE 1 END FROM c WHERE i.project_id = c.project_id AND i.queue_id = c.queue_id "
      "AND i.trace_id = c.trace_id RETURNING i.project_id, i.queue_id, c.n");
  reg("review_expire_all",
      "WITH due AS (SELECT project_id, lease_id FROM review.leases WHERE state = 1 AND "
      "expire_time <= now() ORDER BY expire_time LIMIT $1 FOR UPDATE SKIP LOCKED), ended AS "
      "(UPDATE review.leases l SET state = 5, end_time = now() FROM due WHERE l.project_id = "
      "due.project_id AND l.lease_id = due.lease_id RETURNING l.project_id, l.queue_id, "
      "l.trace_id), c AS (SELECT project_id, queue_id, trace_id, count(*) AS n FROM ended GROUP "
      "BY 1, 2, 3) UPDATE review.items i SET active_lease_count = i.active_lease_count - c.n, "
      "state = CASE WHEN i.state IN (3, 4) THEN i.state ELSE 1 END FROM c WHERE i.project_id = "
      "c.project_id AND i.queue_id = c.queue_id AND i.trace_id = c.trace_id RETURNING "
      "i.project_id, i.queue_id, c.n");

  // ---- leases
  reg("review_lease_lock", absl::StrCat("SELECT ", kLeaseColumns,
                                        " FROM review.leases WHERE project_id = $1 AND lease_id = "
                                        "$2 FOR UPDATE"));
  reg("review_lease_renew",
      absl::StrCat("UPDATE review.leases SET expire_time = now() + $3 * interval '1 millisecond' "
                   "WHERE project_id = $1 AND lease_id = $2 RETURNING ",
                   kLeaseColumns));
  reg("review_lease_end",
      "UPDATE review.leases SET state = $3, end_time = now(), skip_reason = $4 WHERE project_id = "
      "$1 AND lease_id = $2");
  // A slot comes back: the item is claimable again unless it is DONE or SKIPPED.
  reg("review_item_slot_back",
      "UPDATE review.items SET active_lease_count = active_lease_count - 1, state = CASE WHEN "
      "state IN (3, 4) THEN state ELSE 1 END WHERE project_id = $1 AND queue_id = $2 AND trace_id "
      "= $3");
  reg("review_item_skipped",
      "UPDATE review.items SET active_lease_count = active_lease_count - 1, skip_count = "
      "skip_count + 1, state = CASE WHEN state IN (3, 4) THEN state WHEN skip_count + 1 >= $4 THEN "
      "4 ELSE 1 END, complete_time = CASE WHEN state NOT IN (3, 4) AND skip_count + 1 >= $4 THEN "
      "now() ELSE complete_time END WHERE project_id = $1 AND queue_id = $2 AND trace_id = $3 "
      "RETURNING state");
  reg("review_item_close_exhausted",
      "UPDATE review.items i SET state = 4, complete_time = now() WHERE i.project_id = $1 AND "
      "i.queue_id = $2 AND i.trace_id = $3 AND i.state IN (1, 2) AND (SELECT count(DISTINCT "
      "l.reviewer_id) FROM review.leases l WHERE l.project_id = $1 AND l.queue_id = $2 AND "
      "l.trace_id = $3 AND l.state IN (2, 3) AND l.reviewer_id = ANY($4::text[])) >= "
      "cardinality($4::text[])");
  reg("review_requests_cleanup",
      "DELETE FROM review.requests WHERE create_time < now() - interval '24 hours'");
  reg("review_item_submitted",
      "UPDATE review.items SET annotation_count = annotation_count + 1, active_lease_count = "
      "active_lease_count - 1, state = CASE WHEN annotation_count + 1 >= required_reviews THEN 3 "
      "WHEN state IN (3, 4) THEN state WHEN annotation_count + active_lease_count >= "
      "required_reviews THEN 2 ELSE 1 END, complete_time = CASE WHEN complete_time IS NULL AND "
      "annotation_count + 1 >= required_reviews THEN now() ELSE complete_time END WHERE "
      "project_id = $1 AND queue_id = $2 AND trace_id = $3");

  // ---- annotations
  reg("review_annotation_insert",
      "INSERT INTO review.annotations (project_id, annotation_id, queue_id, trace_id, "
      "reviewer_id, lease_id, content, rubric_revision, time_spent_ms, promote) SELECT $1, $2, "
      "l.queue_id, l.trace_id, l.reviewer_id, l.lease_id, $4, $5, round(date_part('epoch', now() "
      "- l.claim_time) * 1000)::int8, CASE WHEN $6 = '' THEN NULL ELSE $6::boolean END FROM "
      "review.leases l WHERE l.project_id = $1 AND l.lease_id = $3");
  reg("review_revision_insert",
      "INSERT INTO review.annotation_revisions (project_id, annotation_id, revision, content, "
      "rubric_revision, edit_reason) VALUES ($1, $2, $3, $4, $5, $6)");
  reg("review_annotation_get", absl::StrCat("SELECT ", kAnnotationColumns, kAnnotationFrom,
                                            "WHERE a.project_id = $1 AND a.annotation_id = $2"));
  reg("review_annotation_lock",
      absl::StrCat("SELECT ", kAnnotationColumns, kAnnotationFrom,
                   "WHERE a.project_id = $1 AND a.annotation_id = $2 FOR UPDATE OF a"));
  reg("review_annotation_by_lease",
      "SELECT annotation_id FROM review.annotations WHERE project_id = $1 AND lease_id = $2");
  reg("review_item_annotations",
      absl::StrCat("SELECT ", kAnnotationColumns, kAnnotationFrom,
                   "WHERE a.project_id = $1 AND a.queue_id = $2 AND a.trace_id = $3 ORDER BY "
                   "a.submit_time, a.annotation_id"));
  reg("review_annotation_update",
      "UPDATE review.annotations SET revision = revision + 1, content = $3, rubric_revision = $4, "
      "update_time = now() WHERE project_id = $1 AND annotation_id = $2 RETURNING revision");
  reg("review_item_state",
      "SELECT state FROM review.items WHERE project_id = $1 AND queue_id = $2 AND trace_id = $3");
  reg("review_annotations_list",
      absl::StrCat(
          "SELECT ", kAnnotationColumns, ", i.state", kAnnotationFrom,
          "JOIN review.items i ON i.project_id = a.project_id AND i.queue_id = a.queue_id AND "
          "i.trace_id = a.trace_id WHERE a.project_id = $1 AND a.queue_id = $2 AND ($3 = '' OR "
          "a.trace_id = $3) AND ($4 = '' OR a.reviewer_id = $4) AND (cardinality($5::smallint[]) "
          "= 0 OR coalesce(p.state, 1) = ANY($5::smallint[])) AND ($6 = '' OR a.submit_time "
          ">= " NULLABLE_TS(6) ") AND ($7 = '' OR a.submit_time < " NULLABLE_TS(
              7) ") AND ($8 = '' OR "
                 "(a.submit_time, "
                 "a.annotation_id) > "
                 "(" NULLABLE_TS(8) ", $9)) AND ($10 = '' "
                                    "OR a.reviewer_id = "
                                    "$10 OR i.state IN "
                                    "(3, 4)) ORDER BY "
                                    "a.submit_time, "
                                    "a.annotation_id "
                                    "LIMIT $11"));
  reg("review_annotations_blinded",
      "SELECT count(*) FROM review.annotations a JOIN review.items i ON i.project_id = "
      "a.project_id AND i.queue_id = a.queue_id AND i.trace_id = a.trace_id WHERE a.project_id = "
      "$1 AND a.queue_id = $2 AND a.trace_id = $3 AND a.reviewer_id <> $4 AND i.state NOT IN (3, "
      "4)");
  reg("review_revisions_list",
      "SELECT annotation_id, revision, content, rubric_revision, edit_reason, " MICROS(
          "create_time") " FROM review.annotation_revisions WHERE project_id = $1 AND "
                         "annotation_id = $2 AND ($3 = 0 OR revision < $3) ORDER BY revision DESC "
                         "LIMIT $4");

  // ---- idempotency records
  reg("review_request_get",
      "SELECT digest, response FROM review.requests WHERE project_id = $1 AND kind = $2 AND "
      "request_id = $3 AND create_time > now() - interval '24 hours'");
  reg("review_request_put",
      "INSERT INTO review.requests (project_id, kind, request_id, digest, response) VALUES ($1, "
      "$2, $3, $4, $5) ON CONFLICT (project_id, kind, request_id) DO UPDATE SET digest = "
      "EXCLUDED.digest, response = EXCLUDED.response, create_time = now()");

  // ---- progress and agreement
  reg("review_progress_items",
      "SELECT count(*) FILTER (WHERE state = 1), count(*) FILTER (WHERE state = 2), "
      "count(*) FILTER (WHERE state = 3), count(*) FILTER (WHERE state = 4), count(*), "
      "count(*) FILTER (WHERE state IN (1, 2) AND annotation_count > 0), "
      "coalesce(sum(greatest(required_reviews - annotation_count, 0)) FILTER (WHERE state IN "
      "(1, 2)), 0), " MICROS("min(enqueue_time) FILTER (WHERE state = 1)") ", "
      "count(*) FILTER (WHERE state = 3 AND complete_time >= " TS(3) " AND complete_time < " TS(4) ") "
      "FROM review.items WHERE project_id = $1 AND queue_id = $2");
  reg("review_progress_submitted",
      "SELECT count(*) FROM review.annotations WHERE project_id = $1 AND queue_id = $2 AND "
      "submit_time >= " TS(3) " AND submit_time < " TS(4));
  reg("review_progress_reviewers",
      "WITH l AS (SELECT reviewer_id, "
      "count(*) FILTER (WHERE claim_time >= " TS(3) " AND claim_time < " TS(4) ") AS claimed, "
      "count(*) FILTER (WHERE state = 3 AND end_time >= " TS(3) " AND end_time < " TS(4) ") AS skipped, "
      "count(*) FILTER (WHERE state = 4 AND end_time >= " TS(3) " AND end_time < " TS(4) ") AS released, "
      "count(*) FILTER (WHERE state = 5 AND end_time >= " TS(3) " AND end_time < " TS(4) ") AS expired, "
      "count(*) FILTER (WHERE state = 1 AND expire_time > now()) AS active, "
      "max(greatest(claim_time, coalesce(end_time, claim_time))) AS last "
      "FROM review.leases WHERE project_id = $1 AND queue_id = $2 AND (claim_time >= " TS(3) " OR "
      "end_time >= " TS(3) " OR state = 1) GROUP BY reviewer_id), "
      "a AS (SELECT reviewer_id, count(*) AS submitted, percentile_cont(0.5) WITHIN GROUP (ORDER "
      "BY time_spent_ms) AS median_ms FROM review.annotations WHERE project_id = $1 AND queue_id = "
      "$2 AND submit_time >= " TS(3) " AND submit_time < " TS(4) " GROUP BY reviewer_id) "
      "SELECT coalesce(l.reviewer_id, a.reviewer_id) AS r, coalesce(l.claimed, 0), "
      "coalesce(a.submitted, 0), coalesce(l.skipped, 0), coalesce(l.released, 0), "
      "coalesce(l.expired, 0), coalesce(l.active, 0), a.median_ms, " MICROS("l.last") " "
      "FROM l FULL JOIN a ON a.reviewer_id = l.reviewer_id WHERE coalesce(l.claimed, 0) + "
      "coalesce(a.submitted, 0) + coalesce(l.skipped, 0) + coalesce(l.released, 0) + "
      "coalesce(l.expired, 0) + coalesce(l.active, 0) > 0 "
      "ORDER BY coalesce(a.submitted, 0) DESC, r LIMIT $5");
  reg("review_agreement_values",
      "WITH it AS (SELECT trace_id, max(update_time) AS t FROM review.annotations WHERE "
      "project_id = $1 AND queue_id = $2 GROUP BY trace_id HAVING count(*) >= 2 AND ($3 = '' OR "
      "max(update_time) >= " NULLABLE_TS(3) ") AND ($4 = '' OR max(update_time) < " NULLABLE_TS(
          4) ") ORDER BY t DESC, trace_id LIMIT $5) SELECT a.trace_id, a.reviewer_id, a.content "
             "FROM review.annotations a JOIN it ON it.trace_id = a.trace_id WHERE a.project_id = "
             "$1 AND a.queue_id = $2 ORDER BY it.t DESC, a.trace_id, a.reviewer_id");

  // ---- promotion outbox
  const char* promotion_values = "VALUES ($1, $2, $3, $4, 2, $5, $6, $7, NULLIF($8, ''))";
  reg("review_promotion_insert",
      absl::StrCat("INSERT INTO review.promotions (project_id, annotation_id, queue_id, "
                   "eval_set_id, state, trigger, revision, payload, update_case_id) ",
                   promotion_values, " ON CONFLICT (project_id, annotation_id) DO NOTHING"));
  reg("review_promotion_upsert",
      absl::StrCat("INSERT INTO review.promotions (project_id, annotation_id, queue_id, "
                   "eval_set_id, state, trigger, revision, payload, update_case_id) ",
                   promotion_values,
                   " ON CONFLICT (project_id, annotation_id) DO UPDATE SET eval_set_id = "
                   "EXCLUDED.eval_set_id, state = 2, trigger = EXCLUDED.trigger, revision = "
                   "EXCLUDED.revision, payload = EXCLUDED.payload, update_case_id = "
                   "EXCLUDED.update_case_id, request_time = now(), next_attempt_time = now(), "
                   "deliver_time = NULL"));
  reg("review_promotions_due",
      "WITH due AS (SELECT project_id, annotation_id FROM review.promotions WHERE state = 2 AND "
      "next_attempt_time <= now() ORDER BY next_attempt_time LIMIT $1 FOR UPDATE SKIP LOCKED) "
      "UPDATE review.promotions p SET next_attempt_time = now() + $2 * interval '1 millisecond' "
      "FROM due WHERE p.project_id = due.project_id AND p.annotation_id = due.annotation_id "
      "RETURNING p.project_id, p.annotation_id, p.eval_set_id, p.attempts, p.payload, "
      "coalesce(p.update_case_id, '')");
  reg("review_promotion_record",
      "UPDATE review.promotions SET attempts = attempts + 1, last_attempt_time = now(), state = "
      "$3::smallint, eval_case_id = CASE WHEN $4 = '' THEN eval_case_id ELSE $4 END, last_error_code = $5, "
      "last_error = $6, next_attempt_time = " TS(7) ", deliver_time = CASE WHEN $3::smallint = 3 THEN now() "
                                                    "ELSE NULL END WHERE project_id = $1 AND "
                                                    "annotation_id = $2 AND state = 2");

  // ---- fill
  reg("review_fillable",
      absl::StrCat("SELECT project_id, ", kQueueColumns,
                   " FROM review.queues WHERE state = 1 AND source = 1 ORDER BY project_id, "
                   "queue_id"));
  reg("review_fill_lease",
      "UPDATE review.queues SET fill_owner = $3, fill_until = now() + $4 * interval '1 "
      "millisecond' WHERE project_id = $1 AND queue_id = $2 AND (fill_owner IS NULL OR "
      "fill_owner = $3 OR fill_until < now()) RETURNING 1");
  reg("review_fill_advance",
      "UPDATE review.queues SET fill_cursor = $4, last_fill_time = now() WHERE project_id = $1 "
      "AND queue_id = $2 AND fill_cursor = $3 RETURNING 1");
  reg("review_period_items",
      "SELECT source, stratum FROM review.items WHERE project_id = $1 AND queue_id = $2 AND "
      "enqueue_time >= " TS(3) " AND enqueue_time < " TS(4));
  reg("review_open_assignments",
      "SELECT r, count(*) FROM review.items i, unnest(i.assigned_reviewers) AS r WHERE "
      "i.project_id = $1 AND i.queue_id = $2 AND i.state IN (1, 2) GROUP BY r");
}

// ------------------------------------------------------------------------------------------------
// Queues

absl::StatusOr<std::pair<QueueRecord, bool>> PgAnnotationRepository::CreateQueue(
    const std::string& project, const v1::Queue& queue, const std::string& request_id,
    int max_queues) {
  std::pair<QueueRecord, bool> out;
  v1::Queue config = queue;
  config.clear_create_time();
  config.clear_update_time();
  config.clear_etag();
  config.clear_state();
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        tx.exec_prepared("review_queue_lock_project", project);
        if (!request_id.empty()) {
          pqxx::result rows = tx.exec_prepared("review_queue_by_request", project, request_id);
          if (!rows.empty()) {
            out = {QueueFromRow(rows[0]), false};
            return absl::OkStatus();
          }
        }
        pqxx::result existing = tx.exec_prepared("review_queue_get", project, queue.queue_id());
        if (!existing.empty()) {
          out = {QueueFromRow(existing[0]), false};
          return absl::OkStatus();
        }
        const int64_t live = tx.exec_prepared1("review_queue_count_live", project)[0].as<int64_t>();
        if (live >= max_queues) {
          return absl::ResourceExhaustedError(
              absl::StrCat("the project already has ", max_queues, " queues"));
        }
        const int source = queue.source_rule().source() == v1::QUEUE_SOURCE_MANUAL_ONLY ? 2 : 1;
        const int64_t lease_ms =
            queue.lease_duration().seconds() * 1000 + queue.lease_duration().nanos() / 1000000;
        pqxx::result rows = tx.exec_prepared(
            "review_queue_insert", project, queue.queue_id(),
            pqxx::binarystring(config.SerializeAsString()), static_cast<int>(queue.state()), source,
            queue.reviewers_per_item(), lease_ms, queue.max_skips_per_item(), request_id);
        if (rows.empty()) return absl::AbortedError("concurrent create; retry");
        out = {QueueFromRow(rows[0]), true};
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<QueueRecord> PgAnnotationRepository::GetQueue(const std::string& project,
                                                             const std::string& queue_id) {
  QueueRecord out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        ASSIGN_OR_RETURN(out, LoadQueue(tx, project, queue_id, "review_queue_get"));
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<QueueRecord>> PgAnnotationRepository::ListQueues(
    const std::string& project, const QueueListQuery& query) {
  std::vector<QueueRecord> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared(
                 "review_queue_list", project, IntArray(query.states),
                 query.after ? absl::StrCat(ToMicros(query.after->first)) : std::string(),
                 query.after ? query.after->second : std::string(), query.limit)) {
          out.push_back(QueueFromRow(row));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<QueueRecord> PgAnnotationRepository::UpdateQueue(
    const std::string& project, const std::string& queue_id,
    const std::function<absl::Status(QueueRecord&)>& mutate) {
  QueueRecord out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        ASSIGN_OR_RETURN(QueueRecord before,
                         LoadQueue(tx, project, queue_id, "review_queue_get_update"));
        QueueRecord after = before;
        RETURN_IF_ERROR(mutate(after));
        v1::Queue config = after.queue;
        config.clear_create_time();
        config.clear_update_time();
        config.clear_etag();
        config.clear_state();
        const int source = config.source_rule().source() == v1::QUEUE_SOURCE_MANUAL_ONLY ? 2 : 1;
        const int64_t lease_ms =
            config.lease_duration().seconds() * 1000 + config.lease_duration().nanos() / 1000000;
        out = QueueFromRow(tx.exec_prepared1(
            "review_queue_save", project, queue_id, pqxx::binarystring(config.SerializeAsString()),
            static_cast<int>(after.queue.state()), source, config.reviewers_per_item(), lease_ms,
            config.max_skips_per_item(), after.queue.rubric().revision()));
        if (after.queue.state() == v1::QUEUE_STATE_ARCHIVED &&
            before.queue.state() != v1::QUEUE_STATE_ARCHIVED) {
          tx.exec_prepared("review_queue_end_leases", project, queue_id);
        }
        if (after.queue.reviewers_per_item() != before.queue.reviewers_per_item()) {
          tx.exec_prepared("review_queue_apply_n", project, queue_id,
                           after.queue.reviewers_per_item());
        }
        if (after.queue.state() == v1::QUEUE_STATE_ACTIVE ||
            after.queue.reviewers_per_item() > before.queue.reviewers_per_item()) {
          tx.exec_prepared("review_notify", kClaimableChannel, Notification(project, queue_id));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

// ------------------------------------------------------------------------------------------------
// Items

absl::StatusOr<std::vector<v1::Item>> PgAnnotationRepository::FindItems(
    const std::string& project, const std::string& queue_id,
    const std::vector<std::string>& trace_ids) {
  std::vector<v1::Item> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row :
             tx.exec_prepared("review_items_find", project, queue_id, db::TextArray(trace_ids))) {
          out.push_back(ItemFromRow(row));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<EnqueueOutcome>> PgAnnotationRepository::EnqueueItems(
    const std::string& project, const std::string& queue_id, const std::vector<NewItem>& items) {
  std::vector<EnqueueOutcome> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        ASSIGN_OR_RETURN(QueueRecord queue,
                         LoadQueue(tx, project, queue_id, "review_queue_get_share"));
        if (queue.queue.state() == v1::QUEUE_STATE_ARCHIVED) {
          return absl::FailedPreconditionError("queue is archived");
        }
        out = InsertItems(tx, project, queue_id, items);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<v1::Item> PgAnnotationRepository::GetItem(const std::string& project,
                                                         const std::string& queue_id,
                                                         const std::string& trace_id,
                                                         bool with_snapshot) {
  v1::Item out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result rows = tx.exec_prepared(
            with_snapshot ? "review_item_full" : "review_item_basic", project, queue_id, trace_id);
        if (rows.empty()) return absl::NotFoundError("trace not in the queue");
        out = ItemFromRow(rows[0]);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<v1::Item>> PgAnnotationRepository::ListItems(
    const std::string& project, const std::string& queue_id, const ItemListQuery& query) {
  std::vector<v1::Item> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared(
                 query.with_snapshot ? "review_items_list_full" : "review_items_list_basic",
                 project, queue_id, IntArray(query.states), IntArray(query.sources),
                 query.assigned_reviewer_id, OptionalMicros(query.enqueued_from),
                 OptionalMicros(query.enqueued_before),
                 query.after ? absl::StrCat(ToMicros(query.after->first)) : std::string(),
                 query.after ? query.after->second : std::string(), query.limit)) {
          out.push_back(ItemFromRow(row));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

// ------------------------------------------------------------------------------------------------
// Reviewer work

absl::StatusOr<ClaimResult> PgAnnotationRepository::Claim(const std::string& project,
                                                          const ClaimRequest& request) {
  ClaimResult out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out = ClaimResult{};
        ASSIGN_OR_RETURN(QueueRecord queue,
                         LoadQueue(tx, project, request.queue_id, "review_queue_get_share"));
        if (queue.queue.state() != v1::QUEUE_STATE_ACTIVE) {
          return absl::FailedPreconditionError(queue.queue.state() == v1::QUEUE_STATE_PAUSED
                                                   ? "queue is paused"
                                                   : "queue is archived");
        }
        if (request.check) RETURN_IF_ERROR(request.check(queue));
        out.rubric = queue.queue.rubric();
        if (!request.request_id.empty()) {
          pqxx::result rows = tx.exec_prepared("review_lease_by_request", project, request.queue_id,
                                               request.reviewer_id, request.request_id);
          if (!rows.empty()) {
            LeaseRow lease = LeaseFromRow(rows[0]);
            out.item = LoadItem(tx, project, request.queue_id, lease.lease.trace_id(), true);
            out.lease = lease.lease;
            return absl::OkStatus();
          }
        }
        const int64_t active = tx.exec_prepared1("review_active_lease_count", project,
                                                 request.queue_id, request.reviewer_id)[0]
                                   .as<int64_t>();
        if (active >= request.max_active_leases) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "the reviewer already holds ", request.max_active_leases, " leases in this queue"));
        }
        auto pick = [&]() -> pqxx::result {
          pqxx::result picked = tx.exec_prepared("review_claim_assigned", project, request.queue_id,
                                                 request.reviewer_id);
          if (picked.empty() && !request.assigned_only) {
            picked = tx.exec_prepared("review_claim_any", project, request.queue_id,
                                      request.reviewer_id);
          }
          return picked;
        };
        pqxx::result picked = pick();
        // Nothing claimable: expired leases of the queue count as free slots (the reaper returns
        // them too, every few seconds), so return them and look again.
        if (picked.empty() && ExpireIn(tx, project, request.queue_id, 0) > 0) picked = pick();
        if (picked.empty()) {
          pqxx::row blockers = tx.exec_prepared1("review_claim_blockers", project, request.queue_id,
                                                 request.reviewer_id);
          const int64_t open = blockers[0].as<int64_t>();
          const int64_t assigned = blockers[2].as<int64_t>();
          if (request.assigned_only && assigned == 0) {
            out.empty_reason = v1::EMPTY_REASON_NONE_ASSIGNED;
          } else if (open > 0) {
            out.empty_reason = v1::EMPTY_REASON_ALL_LEASED;
            if (!blockers[1].is_null()) out.next_lease_expire_time = Micros(blockers[1]);
          } else {
            out.empty_reason = v1::EMPTY_REASON_NO_ITEMS;
          }
          return absl::OkStatus();
        }
        const std::string trace_id = picked[0][0].as<std::string>();
        const int64_t lease_ms = queue.queue.lease_duration().seconds() * 1000 +
                                 queue.queue.lease_duration().nanos() / 1000000;
        LeaseRow lease = LeaseFromRow(
            tx.exec_prepared1("review_lease_insert", project, GenerateId(), request.queue_id,
                              trace_id, request.reviewer_id, lease_ms, request.request_id));
        out.lease = lease.lease;
        out.item = LoadItem(tx, project, request.queue_id, trace_id, true);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<v1::Lease> PgAnnotationRepository::RenewLease(const std::string& project,
                                                             const std::string& queue_id,
                                                             const std::string& lease_id,
                                                             const std::string& reviewer_id,
                                                             absl::Duration extension) {
  v1::Lease out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        ASSIGN_OR_RETURN(LeaseRow lease, LockLease(tx, project, queue_id, lease_id));
        if (lease.lease.reviewer_id() != reviewer_id) {
          return absl::FailedPreconditionError("lease held by another reviewer");
        }
        if (lease.state != LeaseState::kActive || lease.expired) return EndedMessage(lease);
        out = LeaseFromRow(tx.exec_prepared1("review_lease_renew", project, lease_id,
                                             absl::ToInt64Milliseconds(extension)))
                  .lease;
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<v1::Item> PgAnnotationRepository::ReleaseLease(const std::string& project,
                                                              const std::string& queue_id,
                                                              const std::string& lease_id,
                                                              const std::string& reviewer_id) {
  v1::Item out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        ASSIGN_OR_RETURN(LeaseRow lease, LockLease(tx, project, queue_id, lease_id));
        if (lease.lease.reviewer_id() != reviewer_id) {
          return absl::FailedPreconditionError("lease belongs to another reviewer");
        }
        if (lease.state == LeaseState::kSubmitted || lease.state == LeaseState::kSkipped) {
          return EndedMessage(lease);
        }
        if (lease.state == LeaseState::kActive) {
          tx.exec_prepared(
              "review_lease_end", project, lease_id,
              static_cast<int>(lease.expired ? LeaseState::kExpired : LeaseState::kReleased), "");
          tx.exec_prepared("review_item_slot_back", project, queue_id, lease.lease.trace_id());
          tx.exec_prepared("review_notify", kClaimableChannel, Notification(project, queue_id));
        }
        out = LoadItem(tx, project, queue_id, lease.lease.trace_id(), false);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<v1::Item> PgAnnotationRepository::SkipLease(const std::string& project,
                                                           const std::string& queue_id,
                                                           const std::string& lease_id,
                                                           const std::string& reviewer_id,
                                                           const std::string& reason) {
  v1::Item out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        ASSIGN_OR_RETURN(LeaseRow lease, LockLease(tx, project, queue_id, lease_id));
        if (lease.lease.reviewer_id() != reviewer_id) {
          return absl::FailedPreconditionError("lease belongs to another reviewer");
        }
        if (lease.state == LeaseState::kSkipped) {
          out = LoadItem(tx, project, queue_id, lease.lease.trace_id(), false);
          return absl::OkStatus();
        }
        if (lease.state != LeaseState::kActive || lease.expired) return EndedMessage(lease);
        ASSIGN_OR_RETURN(QueueRecord queue, LoadQueue(tx, project, queue_id, "review_queue_get"));
        tx.exec_prepared("review_lease_end", project, lease_id,
                         static_cast<int>(LeaseState::kSkipped), reason);
        tx.exec_prepared("review_item_skipped", project, queue_id, lease.lease.trace_id(),
                         queue.queue.max_skips_per_item());
        CloseIfReviewersExhausted(tx, project, queue, lease.lease.trace_id());
        tx.exec_prepared("review_notify", kClaimableChannel, Notification(project, queue_id));
        out = LoadItem(tx, project, queue_id, lease.lease.trace_id(), false);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<SubmitResult> PgAnnotationRepository::Submit(const std::string& project,
                                                            const SubmitRequest& request,
                                                            const PromotionDecider& decide) {
  SubmitResult out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        if (!request.request_id.empty()) {
          pqxx::result prior =
              tx.exec_prepared("review_request_get", project, "submit", request.request_id);
          if (!prior.empty()) {
            if (prior[0][0].as<std::string>() != request.request_digest) {
              return absl::AlreadyExistsError("request_id reused with different content");
            }
            out.annotation = LoadAnnotation(tx, project, Bytes(prior[0][1]));
            out.item = LoadItem(tx, project, out.annotation.annotation.queue_id(),
                                out.annotation.annotation.trace_id(), false);
            return absl::OkStatus();
          }
        }
        ASSIGN_OR_RETURN(LeaseRow lease,
                         LockLease(tx, project, request.queue_id, request.lease_id));
        if (lease.lease.reviewer_id() != request.reviewer_id) {
          return absl::FailedPreconditionError("lease belongs to another reviewer");
        }
        if (lease.state == LeaseState::kSubmitted) {
          pqxx::result a =
              tx.exec_prepared("review_annotation_by_lease", project, request.lease_id);
          if (a.empty()) return absl::InternalError("submitted lease without annotation");
          AnnotationRecord existing = LoadAnnotation(tx, project, a[0][0].as<std::string>());
          v1::AnnotationRevision have;
          *have.mutable_values() = existing.annotation.values();
          have.set_comment(existing.annotation.comment());
          if (existing.annotation.revision() != 1 ||
              !google::protobuf::util::MessageDifferencer::Equals(have, request.content)) {
            return absl::FailedPreconditionError(
                "lease ended: already submitted with other values (use UpdateAnnotation)");
          }
          out.annotation = std::move(existing);
          out.item = LoadItem(tx, project, request.queue_id, lease.lease.trace_id(), false);
          return absl::OkStatus();
        }
        if (lease.state != LeaseState::kActive || lease.expired) return EndedMessage(lease);
        ASSIGN_OR_RETURN(QueueRecord queue,
                         LoadQueue(tx, project, request.queue_id, "review_queue_get"));
        if (queue.queue.state() == v1::QUEUE_STATE_ARCHIVED) {
          return absl::FailedPreconditionError("queue is archived");
        }
        int32_t rubric_revision = request.rubric_revision;
        if (request.validate) {
          ASSIGN_OR_RETURN(rubric_revision, request.validate(queue));
        }
        const std::string content = request.content.SerializeAsString();
        tx.exec_prepared("review_annotation_insert", project, request.annotation_id,
                         request.lease_id, pqxx::binarystring(content), rubric_revision,
                         request.promote ? (*request.promote ? "true" : "false") : "");
        tx.exec_prepared("review_revision_insert", project, request.annotation_id, 1,
                         pqxx::binarystring(content), rubric_revision, "");
        tx.exec_prepared("review_lease_end", project, request.lease_id,
                         static_cast<int>(LeaseState::kSubmitted), "");
        tx.exec_prepared("review_item_submitted", project, request.queue_id,
                         lease.lease.trace_id());
        CloseIfReviewersExhausted(tx, project, queue, lease.lease.trace_id());
        if (!queue.any_annotation) {
          tx.exec_prepared("review_queue_mark_annotated", project, request.queue_id);
        }
        if (!request.may_promote || request.may_promote(queue)) {
          ApplyPromotionPolicy(tx, project, queue, lease.lease.trace_id(), request.annotation_id,
                               decide);
        }
        if (!request.request_id.empty()) {
          tx.exec_prepared("review_request_put", project, "submit", request.request_id,
                           request.request_digest, pqxx::binarystring(request.annotation_id));
        }
        out.annotation = LoadAnnotation(tx, project, request.annotation_id);
        out.item = LoadItem(tx, project, request.queue_id, lease.lease.trace_id(), false);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<AnnotationRecord> PgAnnotationRepository::UpdateAnnotation(
    const std::string& project, const UpdateAnnotationRequest& request,
    const PromotionDecider& decide) {
  AnnotationRecord out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        if (!request.request_id.empty()) {
          pqxx::result prior =
              tx.exec_prepared("review_request_get", project, "update", request.request_id);
          if (!prior.empty()) {
            if (prior[0][0].as<std::string>() != request.request_digest) {
              return absl::AlreadyExistsError("request_id reused with different content");
            }
            out = LoadAnnotation(tx, project, Bytes(prior[0][1]));
            return absl::OkStatus();
          }
        }
        pqxx::result rows =
            tx.exec_prepared("review_annotation_lock", project, request.annotation_id);
        if (rows.empty()) return absl::NotFoundError("annotation not found");
        AnnotationRecord current = AnnotationFromRow(rows[0]);
        if (current.annotation.reviewer_id() != request.reviewer_id) {
          return absl::PermissionDeniedError("reviewer_id is not the annotation's author");
        }
        ASSIGN_OR_RETURN(QueueRecord queue,
                         LoadQueue(tx, project, current.annotation.queue_id(), "review_queue_get"));
        if (queue.queue.state() == v1::QUEUE_STATE_ARCHIVED) {
          return absl::FailedPreconditionError("queue is archived");
        }
        ASSIGN_OR_RETURN(auto edited, request.edit(queue, current));
        const std::string content = edited.first.SerializeAsString();
        const int revision =
            tx.exec_prepared1("review_annotation_update", project, request.annotation_id,
                              pqxx::binarystring(content), edited.second)[0]
                .as<int>();
        tx.exec_prepared("review_revision_insert", project, request.annotation_id, revision,
                         pqxx::binarystring(content), edited.second, request.edit_reason);
        ApplyPromotionPolicy(tx, project, queue, current.annotation.trace_id(),
                             request.annotation_id, decide);
        if (!request.request_id.empty()) {
          tx.exec_prepared("review_request_put", project, "update", request.request_id,
                           request.request_digest, pqxx::binarystring(request.annotation_id));
        }
        out = LoadAnnotation(tx, project, request.annotation_id);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

// ------------------------------------------------------------------------------------------------
// Annotations

absl::StatusOr<std::pair<AnnotationRecord, v1::ItemState>> PgAnnotationRepository::GetAnnotation(
    const std::string& project, const std::string& annotation_id) {
  std::pair<AnnotationRecord, v1::ItemState> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result rows = tx.exec_prepared("review_annotation_get", project, annotation_id);
        if (rows.empty()) return absl::NotFoundError("annotation not found");
        out.first = AnnotationFromRow(rows[0]);
        out.second = static_cast<v1::ItemState>(
            tx.exec_prepared1("review_item_state", project, out.first.annotation.queue_id(),
                              out.first.annotation.trace_id())[0]
                .as<int>());
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<AnnotationList> PgAnnotationRepository::ListAnnotations(
    const std::string& project, const AnnotationListQuery& query) {
  AnnotationList out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out = AnnotationList{};
        for (const auto& row : tx.exec_prepared(
                 "review_annotations_list", project, query.queue_id, query.trace_id,
                 query.reviewer_id, IntArray(query.promotion_states),
                 OptionalMicros(query.submitted_from), OptionalMicros(query.submitted_before),
                 query.after ? absl::StrCat(ToMicros(query.after->first)) : std::string(),
                 query.after ? query.after->second : std::string(), query.viewer_reviewer_id,
                 query.limit)) {
          out.annotations.push_back(AnnotationFromRow(row));
        }
        if (!query.trace_id.empty() && !query.viewer_reviewer_id.empty()) {
          out.blinded_count =
              tx.exec_prepared1("review_annotations_blinded", project, query.queue_id,
                                query.trace_id, query.viewer_reviewer_id)[0]
                  .as<int>();
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<v1::AnnotationRevision>> PgAnnotationRepository::ListRevisions(
    const std::string& project, const std::string& annotation_id, int32_t before_revision,
    int limit) {
  std::vector<v1::AnnotationRevision> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared("review_revisions_list", project, annotation_id,
                                                before_revision, limit)) {
          v1::AnnotationRevision r;
          r.ParseFromString(Bytes(row[2]));
          r.set_annotation_id(row[0].as<std::string>());
          r.set_revision(row[1].as<int>());
          r.set_rubric_revision(row[3].as<int>());
          r.set_edit_reason(row[4].as<std::string>());
          SetTimestamp(row[5], r.mutable_create_time());
          out.push_back(std::move(r));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

// ------------------------------------------------------------------------------------------------
// Progress and agreement

absl::StatusOr<QueueProgress> PgAnnotationRepository::GetProgress(const std::string& project,
                                                                  const std::string& queue_id,
                                                                  absl::Time start, absl::Time end,
                                                                  int max_reviewers) {
  QueueProgress out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {db::Isolation::kRepeatableRead},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out = QueueProgress{};
        const int64_t s = ToMicros(start), e = ToMicros(end);
        pqxx::row row = tx.exec_prepared1("review_progress_items", project, queue_id, s, e);
        out.pending = row[0].as<int64_t>();
        out.leased = row[1].as<int64_t>();
        out.done = row[2].as<int64_t>();
        out.skipped = row[3].as<int64_t>();
        out.total = row[4].as<int64_t>();
        out.partially_annotated = row[5].as<int64_t>();
        out.annotations_remaining = row[6].as<int64_t>();
        if (!row[7].is_null()) out.oldest_pending_enqueue_time = Micros(row[7]);
        out.items_completed = row[8].as<int64_t>();
        out.annotations_submitted =
            tx.exec_prepared1("review_progress_submitted", project, queue_id, s, e)[0]
                .as<int64_t>();
        for (const auto& r : tx.exec_prepared("review_progress_reviewers", project, queue_id, s, e,
                                              max_reviewers + 1)) {
          ReviewerCounts c;
          c.reviewer_id = r[0].as<std::string>();
          c.claimed = r[1].as<int64_t>();
          c.submitted = r[2].as<int64_t>();
          c.skipped = r[3].as<int64_t>();
          c.released = r[4].as<int64_t>();
          c.expired = r[5].as<int64_t>();
          c.active_leases = r[6].as<int>();
          if (!r[7].is_null()) {
            c.median_time_per_item = absl::Milliseconds(r[7].as<double>());
          }
          if (!r[8].is_null()) c.last_activity = Micros(r[8]);
          out.reviewers.push_back(std::move(c));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<LabeledValues>> PgAnnotationRepository::ListAgreementValues(
    const std::string& project, const std::string& queue_id, std::optional<absl::Time> start,
    std::optional<absl::Time> end, int max_items, bool* truncated) {
  std::vector<LabeledValues> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        std::set<std::string> items;
        *truncated = false;
        for (const auto& row :
             tx.exec_prepared("review_agreement_values", project, queue_id, OptionalMicros(start),
                              OptionalMicros(end), max_items + 1)) {
          LabeledValues v;
          v.trace_id = row[0].as<std::string>();
          items.insert(v.trace_id);
          if (static_cast<int>(items.size()) > max_items) {
            *truncated = true;
            break;
          }
          v.reviewer_id = row[1].as<std::string>();
          v.content.ParseFromString(Bytes(row[2]));
          out.push_back(std::move(v));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

// ------------------------------------------------------------------------------------------------
// Promotion

absl::StatusOr<AnnotationRecord> PgAnnotationRepository::RequestPromotion(
    const std::string& project, const std::string& annotation_id,
    const std::function<absl::StatusOr<std::optional<PromotionRequest>>(
        const QueueRecord&, const v1::Item&, const AnnotationRecord&)>& decide) {
  AnnotationRecord out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        pqxx::result rows = tx.exec_prepared("review_annotation_lock", project, annotation_id);
        if (rows.empty()) return absl::NotFoundError("annotation not found");
        AnnotationRecord current = AnnotationFromRow(rows[0]);
        ASSIGN_OR_RETURN(QueueRecord queue,
                         LoadQueue(tx, project, current.annotation.queue_id(), "review_queue_get"));
        const v1::Item item =
            LoadItem(tx, project, queue.queue.queue_id(), current.annotation.trace_id(), true);
        ASSIGN_OR_RETURN(std::optional<PromotionRequest> request, decide(queue, item, current));
        if (request) WritePromotion(tx, project, queue.queue.queue_id(), *request, true);
        out = LoadAnnotation(tx, project, annotation_id);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<DuePromotion>> PgAnnotationRepository::ClaimDuePromotions(
    int limit, absl::Duration lease) {
  std::vector<DuePromotion> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row :
             tx.exec_prepared("review_promotions_due", limit, absl::ToInt64Milliseconds(lease))) {
          DuePromotion d;
          d.project_id = row[0].as<std::string>();
          d.annotation_id = row[1].as<std::string>();
          d.eval_set_id = row[2].as<std::string>();
          d.attempts = row[3].as<int>();
          d.payload.ParseFromString(Bytes(row[4]));
          d.update_case_id = row[5].as<std::string>();
          out.push_back(std::move(d));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::Status PgAnnotationRepository::RecordDelivery(const std::string& project,
                                                    const std::string& annotation_id,
                                                    const DeliveryOutcome& outcome) {
  return db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        tx.exec_prepared("review_promotion_record", project, annotation_id,
                         static_cast<int>(outcome.state), outcome.eval_case_id, outcome.error_code,
                         outcome.error, ToMicros(outcome.next_attempt_time));
        return absl::OkStatus();
      },
      logger_);
}

// ------------------------------------------------------------------------------------------------
// Background work

absl::StatusOr<int64_t> PgAnnotationRepository::ExpireLeases(int limit) {
  int64_t out = 0;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out = ExpireIn(tx, "", "", limit);
        // Idempotency records live 24 hours.
        tx.exec_prepared("review_requests_cleanup");
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<FillableQueue>> PgAnnotationRepository::ListFillableQueues() {
  std::vector<FillableQueue> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared("review_fillable")) {
          FillableQueue f;
          f.project_id = row[0].as<std::string>();
          QueueRecord q;
          q.queue.ParseFromString(Bytes(row[2]));
          q.queue.set_queue_id(row[1].as<std::string>());
          q.queue.set_state(static_cast<v1::QueueState>(row[3].as<int>()));
          q.etag_seq = row[4].as<int64_t>();
          q.queue.mutable_rubric()->set_revision(row[5].as<int>());
          q.any_annotation = row[6].as<bool>();
          q.fill_cursor = row[7].as<int64_t>();
          SetTimestamp(row[8], q.queue.mutable_create_time());
          SetTimestamp(row[9], q.queue.mutable_update_time());
          q.queue.set_etag(absl::StrCat(q.etag_seq));
          f.queue = std::move(q);
          out.push_back(std::move(f));
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<bool> PgAnnotationRepository::AcquireFillLease(const std::string& project,
                                                              const std::string& queue_id,
                                                              const std::string& owner,
                                                              absl::Duration ttl) {
  bool out = false;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out = !tx.exec_prepared("review_fill_lease", project, queue_id, owner,
                                absl::ToInt64Milliseconds(ttl))
                   .empty();
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<EnqueueOutcome>> PgAnnotationRepository::EnqueueAndAdvance(
    const std::string& project, const std::string& queue_id, const std::vector<NewItem>& items,
    int64_t expected_cursor, int64_t new_cursor) {
  std::vector<EnqueueOutcome> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        if (tx.exec_prepared("review_fill_advance", project, queue_id, expected_cursor, new_cursor)
                .empty()) {
          return absl::AbortedError("fill cursor moved");
        }
        out = items.empty() ? std::vector<EnqueueOutcome>{}
                            : InsertItems(tx, project, queue_id, items);
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<std::pair<v1::ItemSource, std::string>>>
PgAnnotationRepository::ListPeriodItems(const std::string& project, const std::string& queue_id,
                                        absl::Time start, absl::Time end) {
  std::vector<std::pair<v1::ItemSource, std::string>> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared("review_period_items", project, queue_id,
                                                ToMicros(start), ToMicros(end))) {
          out.emplace_back(static_cast<v1::ItemSource>(row[0].as<int>()), row[1].as<std::string>());
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, int64_t>>>
PgAnnotationRepository::OpenAssignments(const std::string& project, const std::string& queue_id) {
  std::vector<std::pair<std::string, int64_t>> out;
  RETURN_IF_ERROR(db::RunInTransaction(
      *pool_, {},
      [&](pqxx::transaction_base& tx) -> absl::Status {
        out.clear();
        for (const auto& row : tx.exec_prepared("review_open_assignments", project, queue_id)) {
          out.emplace_back(row[0].as<std::string>(), row[1].as<int64_t>());
        }
        return absl::OkStatus();
      },
      logger_));
  return out;
}

}  // namespace flywheel::annotation
