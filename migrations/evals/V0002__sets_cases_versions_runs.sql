-- Eval sets, their versioned cases, set versions and tags, runs and per-case results.
-- Every primary key starts with project_id. Ids are compared and ordered bytewise (COLLATE "C"),
-- as the API promises. Content is stored as deterministic serialized protobuf (`content`) plus
-- the columns that filters, joins, ordering and digests need.

CREATE TABLE evals.eval_sets (
  project_id             text        NOT NULL,
  eval_set_id            text        COLLATE "C" NOT NULL,
  display_name           text        NOT NULL,
  description            text        NOT NULL DEFAULT '',
  -- google.protobuf.Struct, deterministic serialization; NULL = no schema.
  input_schema           bytea,
  expected_output_schema bytea,
  archived               boolean     NOT NULL DEFAULT false,
  latest_version         bigint      NOT NULL DEFAULT 0,
  case_count             bigint      NOT NULL DEFAULT 0,
  -- Bumped on every change of the set's own fields or state: the etag.
  etag_seq               bigint      NOT NULL DEFAULT 1,
  create_time            timestamptz NOT NULL DEFAULT now(),
  update_time            timestamptz NOT NULL DEFAULT now(),
  archive_time           timestamptz,
  PRIMARY KEY (project_id, eval_set_id)
);

-- One row per set version; immutable once written.
CREATE TABLE evals.set_versions (
  project_id     text        NOT NULL,
  eval_set_id    text        COLLATE "C" NOT NULL,
  version        bigint      NOT NULL CHECK (version >= 1),
  create_time    timestamptz NOT NULL DEFAULT now(),
  change_kind    smallint    NOT NULL,
  added_count    bigint      NOT NULL DEFAULT 0,
  updated_count  bigint      NOT NULL DEFAULT 0,
  retired_count  bigint      NOT NULL DEFAULT 0,
  note           text        NOT NULL DEFAULT '',
  case_count     bigint      NOT NULL,
  content_digest text        NOT NULL,
  PRIMARY KEY (project_id, eval_set_id, version),
  FOREIGN KEY (project_id, eval_set_id) REFERENCES evals.eval_sets
);

-- A tag points at one version of its set; it can move.
CREATE TABLE evals.version_tags (
  project_id  text        NOT NULL,
  eval_set_id text        COLLATE "C" NOT NULL,
  tag         text        COLLATE "C" NOT NULL,
  version     bigint      NOT NULL,
  update_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, eval_set_id, tag),
  FOREIGN KEY (project_id, eval_set_id, version) REFERENCES evals.set_versions
);
CREATE INDEX version_tags_by_version ON evals.version_tags (project_id, eval_set_id, version);

-- The identity of a case (what never changes) and its retirement.
CREATE TABLE evals.cases (
  project_id           text        NOT NULL,
  eval_set_id          text        COLLATE "C" NOT NULL,
  case_id              text        COLLATE "C" NOT NULL,
  -- Idempotency key of the add (e.g. the annotation id); NULL when none was given.
  case_key             text        COLLATE "C",
  added_version        bigint      NOT NULL,
  -- First version in which the case is no longer live; 0 while live.
  retired_version      bigint      NOT NULL DEFAULT 0,
  revision_count       integer     NOT NULL DEFAULT 1,
  -- Digest of revision 1: a retried add is a duplicate when it matches, even after updates.
  first_content_digest text        NOT NULL,
  create_time          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, eval_set_id, case_id),
  FOREIGN KEY (project_id, eval_set_id) REFERENCES evals.eval_sets
);
CREATE UNIQUE INDEX cases_by_key ON evals.cases (project_id, eval_set_id, case_key)
  WHERE case_key IS NOT NULL;

-- Every revision of every case. Revision r is live in versions [from_version, to_version);
-- to_version is NULL while the revision is live in the latest version. The snapshot of version
-- V is the set of revisions with from_version <= V < coalesce(to_version, infinity).
CREATE TABLE evals.case_revisions (
  project_id     text        NOT NULL,
  eval_set_id    text        COLLATE "C" NOT NULL,
  case_id        text        COLLATE "C" NOT NULL,
  revision       integer     NOT NULL CHECK (revision >= 1),
  from_version   bigint      NOT NULL,
  to_version     bigint,
  -- flywheel.evalset.v1.Case holding only the content fields.
  content        bytea       NOT NULL,
  content_digest text        NOT NULL,
  theme_id       text        COLLATE "C" NOT NULL DEFAULT '',
  theme_name     text        NOT NULL DEFAULT '',
  tags           text[]      NOT NULL DEFAULT '{}',
  -- The prompt, or the user messages joined by "\n": novelty search and snippets.
  input_text     text        NOT NULL,
  revision_time  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, eval_set_id, case_id, revision),
  FOREIGN KEY (project_id, eval_set_id, case_id) REFERENCES evals.cases,
  CHECK (to_version IS NULL OR to_version > from_version)
);
-- The revisions live in the latest version (novelty search, counts).
CREATE INDEX case_revisions_live ON evals.case_revisions (project_id, eval_set_id, case_id)
  WHERE to_version IS NULL;

CREATE TABLE evals.runs (
  project_id      text        NOT NULL,
  run_id          text        COLLATE "C" NOT NULL,
  eval_set_id     text        COLLATE "C" NOT NULL,
  version         bigint      NOT NULL,
  requested_ref   text        NOT NULL,
  candidate_label text        NOT NULL,
  -- google.protobuf.Struct, deterministic serialization; NULL = none.
  metadata        bytea,
  state           smallint    NOT NULL,
  failure_reason  text        NOT NULL DEFAULT '',
  create_time     timestamptz NOT NULL DEFAULT now(),
  complete_time   timestamptz,
  -- flywheel.evalset.v1.RunSummary frozen at completion; NULL while running.
  summary         bytea,
  PRIMARY KEY (project_id, run_id),
  FOREIGN KEY (project_id, eval_set_id, version) REFERENCES evals.set_versions
);
CREATE INDEX runs_newest_first ON evals.runs (project_id, create_time DESC, run_id DESC);
CREATE INDEX runs_by_set ON evals.runs (project_id, eval_set_id, create_time DESC, run_id DESC);

CREATE TABLE evals.results (
  project_id     text        NOT NULL,
  run_id         text        COLLATE "C" NOT NULL,
  case_id        text        COLLATE "C" NOT NULL,
  verdict        smallint    NOT NULL,
  score          float8,
  latency_us     bigint,
  cost_micros    bigint,
  -- flywheel.evalset.v1.CaseResult holding only the fields the caller sends.
  content        bytea       NOT NULL,
  content_digest text        NOT NULL,
  -- The case as it is in the run's pinned version (immutable there, so stored once).
  case_revision  integer     NOT NULL,
  theme_id       text        COLLATE "C" NOT NULL DEFAULT '',
  theme_name     text        NOT NULL DEFAULT '',
  record_time    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, run_id, case_id),
  FOREIGN KEY (project_id, run_id) REFERENCES evals.runs
);
