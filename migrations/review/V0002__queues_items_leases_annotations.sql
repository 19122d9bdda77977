-- Annotation queues: queues, items (one trace in one queue), leases (a reviewer's hold on one
-- labeling slot of an item), annotations with their revision history, skips, idempotency records
-- and the promotion outbox. Every primary key starts with project_id; ids compare bytewise.
-- Settings and content are stored as serialized protobuf (the API's own messages) next to the
-- columns that filters, ordering and the claim need.

CREATE TABLE review.queues (
  project_id         text        NOT NULL,
  queue_id           text        COLLATE "C" NOT NULL,
  -- flywheel.annotation.v1.Queue without its output-only fields (rubric included).
  config             bytea       NOT NULL,
  -- 1 ACTIVE, 2 PAUSED, 3 ARCHIVED.
  state              smallint    NOT NULL,
  -- 1 FLAGGED_FEED, 2 MANUAL_ONLY.
  source             smallint    NOT NULL,
  reviewers_per_item integer     NOT NULL CHECK (reviewers_per_item BETWEEN 1 AND 10),
  lease_ms           bigint      NOT NULL,
  max_skips          integer     NOT NULL,
  rubric_revision    integer     NOT NULL DEFAULT 1,
  etag_seq           bigint      NOT NULL DEFAULT 1,
  -- Idempotency key of a create without queue_id.
  request_id         text        COLLATE "C",
  -- Whether any annotation was ever submitted (rubric keys then keep their type).
  any_annotation     boolean     NOT NULL DEFAULT false,
  create_time        timestamptz NOT NULL DEFAULT now(),
  update_time        timestamptz NOT NULL DEFAULT now(),
  -- Auto-fill: position on capture's flagged feed, and the replica currently filling.
  fill_cursor        bigint      NOT NULL DEFAULT 0,
  fill_owner         text,
  fill_until         timestamptz,
  last_fill_time     timestamptz,
  PRIMARY KEY (project_id, queue_id)
);
CREATE UNIQUE INDEX queues_request ON review.queues (project_id, request_id)
  WHERE request_id IS NOT NULL;
CREATE INDEX queues_newest ON review.queues (project_id, create_time DESC, queue_id);

-- One trace in one queue: a trace enters a queue at most once (the primary key).
CREATE TABLE review.items (
  project_id         text        NOT NULL,
  queue_id           text        COLLATE "C" NOT NULL,
  trace_id           text        COLLATE "C" NOT NULL,
  -- 1 PENDING (a free slot), 2 LEASED (every remaining slot leased), 3 DONE, 4 SKIPPED.
  state              smallint    NOT NULL,
  -- 1 MANUAL, 2 SAMPLED, 3 RANDOM_BASELINE.
  source             smallint    NOT NULL,
  priority           integer     NOT NULL DEFAULT 0,
  assigned_reviewers text[]      COLLATE "C" NOT NULL DEFAULT '{}',
  -- Until when assigned slots are reserved for their reviewers ('infinity': forever).
  reserved_until     timestamptz,
  stratum            text        NOT NULL DEFAULT '',
  novelty            float8      NOT NULL DEFAULT 0,
  -- Claim order within a priority (novelty for NOVELTY_FIRST, else 0).
  sampling_rank      float8      NOT NULL DEFAULT 0,
  -- N: distinct reviewers who must annotate the item.
  required_reviews   integer     NOT NULL,
  annotation_count   integer     NOT NULL DEFAULT 0,
  active_lease_count integer     NOT NULL DEFAULT 0,
  skip_count         integer     NOT NULL DEFAULT 0,
  has_annotations    boolean     GENERATED ALWAYS AS (annotation_count > 0) STORED,
  enqueue_time       timestamptz NOT NULL DEFAULT now(),
  complete_time      timestamptz,
  agreement_reached  boolean     NOT NULL DEFAULT false,
  promoted_annotation_id text    COLLATE "C",
  -- flywheel.annotation.v1.TraceSnapshot taken at enqueue.
  snapshot           bytea       NOT NULL,
  PRIMARY KEY (project_id, queue_id, trace_id),
  FOREIGN KEY (project_id, queue_id) REFERENCES review.queues
);
-- The claim: exactly its ORDER BY, partial on the claimable state.
CREATE INDEX items_claim ON review.items
  (project_id, queue_id, priority DESC, has_annotations DESC, sampling_rank DESC, enqueue_time,
   trace_id)
  WHERE state = 1;
-- Claims of items assigned to the claimer come first; few items are assigned.
CREATE INDEX items_claim_assigned ON review.items
  (project_id, queue_id, priority DESC, has_annotations DESC, sampling_rank DESC, enqueue_time,
   trace_id)
  WHERE state = 1 AND cardinality(assigned_reviewers) > 0;
CREATE INDEX items_by_enqueue ON review.items (project_id, queue_id, enqueue_time, trace_id);

-- A reviewer's hold on one slot of an item. The lease id is a capability.
CREATE TABLE review.leases (
  project_id   text        NOT NULL,
  lease_id     text        COLLATE "C" NOT NULL,
  queue_id     text        COLLATE "C" NOT NULL,
  trace_id     text        COLLATE "C" NOT NULL,
  reviewer_id  text        COLLATE "C" NOT NULL,
  -- 1 active, 2 submitted, 3 skipped, 4 released, 5 expired.
  state        smallint    NOT NULL,
  claim_time   timestamptz NOT NULL DEFAULT now(),
  expire_time  timestamptz NOT NULL,
  end_time     timestamptz,
  -- ClaimItem.request_id (idempotent while the lease is active).
  request_id   text        COLLATE "C",
  skip_reason  text        NOT NULL DEFAULT '',
  PRIMARY KEY (project_id, lease_id),
  FOREIGN KEY (project_id, queue_id, trace_id) REFERENCES review.items
);
-- A reviewer holds at most one slot of an item.
CREATE UNIQUE INDEX leases_one_active_per_reviewer ON review.leases
  (project_id, queue_id, trace_id, reviewer_id) WHERE state = 1;
-- What a reviewer did with an item (never offered again once submitted or skipped).
CREATE INDEX leases_by_item_reviewer ON review.leases (project_id, queue_id, trace_id, reviewer_id)
  WHERE state IN (2, 3);
CREATE INDEX leases_active_by_reviewer ON review.leases (project_id, queue_id, reviewer_id)
  WHERE state = 1;
CREATE INDEX leases_active_by_expiry ON review.leases (expire_time) WHERE state = 1;
CREATE INDEX leases_by_claim_time ON review.leases (project_id, queue_id, claim_time);
CREATE INDEX leases_by_end_time ON review.leases (project_id, queue_id, end_time)
  WHERE end_time IS NOT NULL;

-- One reviewer's labels for one item (current revision).
CREATE TABLE review.annotations (
  project_id      text        NOT NULL,
  annotation_id   text        COLLATE "C" NOT NULL,
  queue_id        text        COLLATE "C" NOT NULL,
  trace_id        text        COLLATE "C" NOT NULL,
  reviewer_id     text        COLLATE "C" NOT NULL,
  lease_id        text        COLLATE "C" NOT NULL,
  revision        integer     NOT NULL DEFAULT 1,
  -- flywheel.annotation.v1.AnnotationRevision (values and comment) of the current revision.
  content         bytea       NOT NULL,
  rubric_revision integer     NOT NULL,
  time_spent_ms   bigint      NOT NULL,
  -- SubmitAnnotation.promote: NULL unset, else the value.
  promote         boolean,
  submit_time     timestamptz NOT NULL DEFAULT now(),
  update_time     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, annotation_id),
  UNIQUE (project_id, queue_id, trace_id, reviewer_id),
  FOREIGN KEY (project_id, queue_id, trace_id) REFERENCES review.items
);
CREATE UNIQUE INDEX annotations_by_lease ON review.annotations (project_id, lease_id);
CREATE INDEX annotations_by_submit ON review.annotations (project_id, queue_id, submit_time,
                                                          annotation_id);
CREATE INDEX annotations_by_update ON review.annotations (project_id, queue_id, update_time);

-- Every revision of every annotation (revision 1 is the submission).
CREATE TABLE review.annotation_revisions (
  project_id      text        NOT NULL,
  annotation_id   text        COLLATE "C" NOT NULL,
  revision        integer     NOT NULL,
  content         bytea       NOT NULL,
  rubric_revision integer     NOT NULL,
  edit_reason     text        NOT NULL DEFAULT '',
  create_time     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, annotation_id, revision),
  FOREIGN KEY (project_id, annotation_id) REFERENCES review.annotations
);

-- Responses of idempotent calls (request_id), kept 24 h.
CREATE TABLE review.requests (
  project_id  text        NOT NULL,
  kind        text        NOT NULL,
  request_id  text        COLLATE "C" NOT NULL,
  -- Digest of the request content: a reuse with different content is ALREADY_EXISTS.
  digest      text        NOT NULL,
  response    bytea       NOT NULL,
  create_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, kind, request_id)
);
CREATE INDEX requests_by_time ON review.requests (create_time);

-- Promotion outbox: one entry per annotation; the payload is frozen at request time so every
-- retry is identical. Delivered by the promotion worker with backoff until acknowledged.
CREATE TABLE review.promotions (
  project_id        text        NOT NULL,
  annotation_id     text        COLLATE "C" NOT NULL,
  queue_id          text        COLLATE "C" NOT NULL,
  eval_set_id       text        COLLATE "C" NOT NULL,
  -- 2 PENDING, 3 DELIVERED, 4 FAILED (PromotionState).
  state             smallint    NOT NULL,
  -- PromotionTrigger.
  trigger           smallint    NOT NULL,
  revision          integer     NOT NULL,
  -- flywheel.evalset.v1.Case to add (or to update, when eval_case_id is set at request time).
  payload           bytea       NOT NULL,
  -- Set when this delivery revises an already delivered case (UpdateCase).
  update_case_id    text        COLLATE "C",
  attempts          integer     NOT NULL DEFAULT 0,
  request_time      timestamptz NOT NULL DEFAULT now(),
  last_attempt_time timestamptz,
  next_attempt_time timestamptz NOT NULL DEFAULT now(),
  deliver_time      timestamptz,
  eval_case_id      text        NOT NULL DEFAULT '',
  last_error_code   integer     NOT NULL DEFAULT 0,
  last_error        text        NOT NULL DEFAULT '',
  PRIMARY KEY (project_id, annotation_id),
  FOREIGN KEY (project_id, annotation_id) REFERENCES review.annotations
);
CREATE INDEX promotions_due ON review.promotions (next_attempt_time) WHERE state = 2;
