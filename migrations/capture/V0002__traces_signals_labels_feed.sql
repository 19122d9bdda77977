-- Capture core: raw traces and signals as received (after redaction), derived signals, labels,
-- the labeling work queue and the flagged feed. Every primary key starts with project_id.
-- Items are stored as their serialized protobuf (payload) plus the columns that filters, joins
-- and ordering need; content_sha256 is the hash of the item as received (idempotency).

CREATE TABLE capture.traces (
  project_id         text        NOT NULL,
  trace_id           text        NOT NULL,
  session_id         text        NOT NULL DEFAULT '',
  user_id            text        NOT NULL DEFAULT '',
  feature_area       text        NOT NULL DEFAULT '',
  model              text        NOT NULL,
  model_version      text        NOT NULL DEFAULT '',
  prompt_template_id text        NOT NULL DEFAULT '',
  prompt_version     text        NOT NULL DEFAULT '',
  start_time         timestamptz NOT NULL,
  end_time           timestamptz NOT NULL,
  receive_time       timestamptz NOT NULL DEFAULT now(),
  content_sha256     bytea       NOT NULL,
  redactions         integer     NOT NULL DEFAULT 0,
  payload            bytea       NOT NULL,
  PRIMARY KEY (project_id, trace_id)
);
-- Newest-first listing and time windows.
CREATE INDEX traces_by_start ON capture.traces (project_id, start_time DESC, trace_id DESC);
-- Per-user history (tenure in the survivorship audit).
CREATE INDEX traces_by_user ON capture.traces (project_id, user_id, start_time)
  WHERE user_id <> '';
-- Session context for derivation (consecutive traces of a session).
CREATE INDEX traces_by_session ON capture.traces (project_id, session_id, start_time)
  WHERE session_id <> '';

CREATE TABLE capture.signals (
  project_id     text        NOT NULL,
  event_id       text        NOT NULL,
  trace_id       text        NOT NULL DEFAULT '',
  session_id     text        NOT NULL DEFAULT '',
  user_id        text        NOT NULL DEFAULT '',
  signal_kind    smallint    NOT NULL,
  actor          smallint    NOT NULL,
  occur_time     timestamptz NOT NULL,
  receive_time   timestamptz NOT NULL DEFAULT now(),
  -- Thumbs and ratings as a comparable value (rating 1..5, thumbs up 10, down 11), so coverage
  -- weighting can spot raters whose values never vary. NULL for other signals.
  value_key      smallint,
  content_sha256 bytea       NOT NULL,
  redactions     integer     NOT NULL DEFAULT 0,
  payload        bytea       NOT NULL,
  PRIMARY KEY (project_id, event_id),
  CHECK ((trace_id = '') <> (session_id = ''))
);
CREATE INDEX signals_by_trace ON capture.signals (project_id, trace_id, occur_time)
  WHERE trace_id <> '';
CREATE INDEX signals_by_session ON capture.signals (project_id, session_id, occur_time)
  WHERE session_id <> '';
-- Coverage weighting counts a user's explicit signals in a trailing window.
CREATE INDEX signals_by_user ON capture.signals (project_id, user_id, occur_time)
  WHERE user_id <> '';

-- Derived signals: at most one per (trace, kind); recomputed by the labeler.
CREATE TABLE capture.derived_signals (
  project_id  text        NOT NULL,
  trace_id    text        NOT NULL,
  signal_kind smallint    NOT NULL,
  occur_time  timestamptz NOT NULL,
  payload     bytea       NOT NULL,
  PRIMARY KEY (project_id, trace_id, signal_kind)
);

-- The current label of each labeled trace.
CREATE TABLE capture.trace_labels (
  project_id       text        NOT NULL,
  trace_id         text        NOT NULL,
  quality_score    float8      NOT NULL,
  flagged          boolean     NOT NULL,
  rule_set_version bigint      NOT NULL,
  label_time       timestamptz NOT NULL,
  feed_sequence    bigint      NOT NULL DEFAULT 0,
  -- Some reason has an implicit or derived kind and a non-abstain vote (survivorship audit).
  implicit_evidence boolean    NOT NULL DEFAULT false,
  payload          bytea       NOT NULL,
  PRIMARY KEY (project_id, trace_id)
);
CREATE INDEX trace_labels_flagged ON capture.trace_labels (project_id, trace_id) WHERE flagged;

-- Traces whose label must be (re)computed, appended in the same transaction as the evidence.
-- Insert-only (writers never wait on the labeler); one labeler per project at a time (advisory
-- lock) takes rows in seq order, recomputes each distinct trace and deletes exactly the rows it
-- read, so evidence committed meanwhile leaves its own row behind and is labeled next pass.
CREATE TABLE capture.label_queue (
  project_id  text        NOT NULL,
  seq         bigint      GENERATED ALWAYS AS IDENTITY,
  trace_id    text        NOT NULL,
  enqueued_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, seq)
);

-- Open sessions awaiting the abandonment timeout: last activity per session.
CREATE TABLE capture.session_activity (
  project_id    text        NOT NULL,
  session_id    text        NOT NULL,
  last_trace_id text        NOT NULL,
  last_activity timestamptz NOT NULL,
  PRIMARY KEY (project_id, session_id)
);
CREATE INDEX session_activity_by_time ON capture.session_activity (last_activity);

-- The flagged feed: per-project dense sequence. Writers take the next numbers by updating the
-- project's counter row, whose lock they hold until commit: sequences become visible in order,
-- so a reader never skips an entry.
CREATE TABLE capture.feed_counters (
  project_id    text   PRIMARY KEY,
  last_sequence bigint NOT NULL DEFAULT 0
);

CREATE TABLE capture.flagged_feed (
  project_id       text        NOT NULL,
  sequence         bigint      NOT NULL,
  trace_id         text        NOT NULL,
  entry_type       smallint    NOT NULL,
  flag_time        timestamptz NOT NULL,
  quality_score    float8      NOT NULL,
  rule_set_version bigint      NOT NULL,
  reasons          bytea       NOT NULL,
  PRIMARY KEY (project_id, sequence)
);

-- Label rule sets (versions > 1; version 1 is the built-in default) and redaction settings.
CREATE TABLE capture.rule_sets (
  project_id   text        NOT NULL,
  version      bigint      NOT NULL,
  -- Copied out of the payload for the idle-session sweeper.
  abandonment_timeout_seconds integer NOT NULL,
  payload      bytea       NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, version)
);

CREATE TABLE capture.redaction_configs (
  project_id text        PRIMARY KEY,
  version    bigint      NOT NULL,
  payload    bytea       NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Background relabeling jobs (Relabel RPC): one pending or running job per project; progress
-- is checkpointed by (cursor_start, cursor_trace_id) so a restarted worker resumes.
CREATE TABLE capture.relabel_jobs (
  project_id        text        NOT NULL,
  job_id            text        NOT NULL,
  request_id        text        NOT NULL,
  request_sha256    bytea       NOT NULL,
  rule_set_version  bigint      NOT NULL,
  window_start      timestamptz NOT NULL,
  window_end        timestamptz NOT NULL,
  dry_run           boolean     NOT NULL,
  state             smallint    NOT NULL,
  traces_total      bigint      NOT NULL DEFAULT 0,
  traces_processed  bigint      NOT NULL DEFAULT 0,
  flagged_before    bigint      NOT NULL DEFAULT 0,
  flagged_after     bigint      NOT NULL DEFAULT 0,
  newly_flagged     bigint      NOT NULL DEFAULT 0,
  unflagged         bigint      NOT NULL DEFAULT 0,
  cursor_start      timestamptz,
  cursor_trace_id   text        NOT NULL DEFAULT '',
  created_at        timestamptz NOT NULL DEFAULT now(),
  started_at        timestamptz,
  finished_at       timestamptz,
  error_message     text        NOT NULL DEFAULT '',
  PRIMARY KEY (project_id, job_id)
);
CREATE UNIQUE INDEX relabel_jobs_by_request ON capture.relabel_jobs (project_id, request_id);
CREATE UNIQUE INDEX relabel_jobs_one_active ON capture.relabel_jobs (project_id)
  WHERE state IN (1, 2);

-- Preference pairs from settled regenerate chains (rejected earlier answer, chosen final one).
CREATE TABLE capture.preference_pairs (
  project_id        text        NOT NULL,
  pair_id           text        NOT NULL,
  rejected_trace_id text        NOT NULL,
  chosen_trace_id   text        NOT NULL,
  session_id        text        NOT NULL,
  feature_area      text        NOT NULL DEFAULT '',
  created_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, pair_id)
);
CREATE INDEX preference_pairs_by_time ON capture.preference_pairs (project_id, created_at, pair_id);
