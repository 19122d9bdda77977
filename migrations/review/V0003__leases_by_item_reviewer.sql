-- The claim's "not already leased, submitted or skipped by this reviewer" anti-join probes leases
-- by (item, reviewer) in every state; the partial index of V0002 (states 2 and 3 only) did not
-- match it, so the planner fell back to scanning the queue's leases. One full index serves it.
CREATE INDEX leases_by_item_reviewer_any ON review.leases (project_id, queue_id, trace_id, reviewer_id);
DROP INDEX review.leases_by_item_reviewer;
