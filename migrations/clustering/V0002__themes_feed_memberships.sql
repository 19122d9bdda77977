-- Clustering service storage: settings, the flagged-feed cursor (with its lease), the flagged
-- traces it consumed, clusterings (versions) with their fitted embedder, clusters (stable ids and
-- per-version rows) and memberships. Every primary key starts with project_id.
-- Enum columns hold the numeric values of flywheel.clustering.v1 enums.

-- Per-project settings: a serialized flywheel.clustering.v1.ClusteringSettings (secrets never
-- stored in it), with an etag counter for optimistic concurrency.
CREATE TABLE clustering.settings (
  project_id  text        NOT NULL,
  settings    bytea       NOT NULL,
  etag_seq    bigint      NOT NULL DEFAULT 1,
  update_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id)
);

-- Position in capture's flagged feed, per project. One replica at a time follows a project: it
-- holds the lease (lease_owner until lease_expires) and advances after_sequence with a
-- compare-and-set in the same transaction that stores the batch.
CREATE TABLE clustering.feed_cursors (
  project_id      text        NOT NULL,
  after_sequence  bigint      NOT NULL DEFAULT 0,
  lease_owner     text,
  lease_expires   timestamptz,
  processed_total bigint      NOT NULL DEFAULT 0,
  update_time     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id)
);

-- Flagged traces as received from the feed (capture's redacted TraceSummary) plus the facts the
-- stats need. Upserted on (project_id, trace_id): the feed is at-least-once.
CREATE TABLE clustering.traces (
  project_id     text        NOT NULL,
  trace_id       text        NOT NULL,
  flagged        boolean     NOT NULL,
  feed_sequence  bigint      NOT NULL,
  flag_time      timestamptz NOT NULL,
  create_time    timestamptz NOT NULL,
  -- user_id, else "s:" + session_id, else "t:" + trace_id (distinct-user counting).
  user_key       text        NOT NULL,
  session_id     text        NOT NULL DEFAULT '',
  user_id        text        NOT NULL DEFAULT '',
  feature_area   text        NOT NULL DEFAULT '',
  model          text        NOT NULL DEFAULT '',
  model_version  text        NOT NULL DEFAULT '',
  prompt_version text        NOT NULL DEFAULT '',
  -- Bit set of signal classes behind the flag: 1 explicit, 2 implicit, 4 outcome.
  signal_classes smallint    NOT NULL DEFAULT 0,
  input_text     text        NOT NULL DEFAULT '',
  output_head    text        NOT NULL DEFAULT '',
  comments       text[]      NOT NULL DEFAULT '{}',
  seen_time      timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (project_id, trace_id)
);
-- Windows of re-clustering and stats ranges.
CREATE INDEX traces_by_create_time ON clustering.traces (project_id, create_time) WHERE flagged;
-- Late arrivals at publish time.
CREATE INDEX traces_by_seen_time ON clustering.traces (project_id, seen_time) WHERE flagged;

-- Clusterings (versions). state: ClusteringState, trigger: ClusteringTrigger.
CREATE TABLE clustering.clusterings (
  project_id        text        NOT NULL,
  version           bigint      NOT NULL,
  state             smallint    NOT NULL,
  trigger           smallint    NOT NULL,
  request_id        text,
  request_hash      text,
  create_time       timestamptz NOT NULL DEFAULT now(),
  start_time        timestamptz,
  end_time          timestamptz,
  window_start      timestamptz NOT NULL,
  window_end        timestamptz NOT NULL,
  -- Serialized ClusteringParams and ClusteringProgress.
  params            bytea       NOT NULL,
  progress          bytea       NOT NULL,
  worker            text,
  heartbeat_time    timestamptz,
  member_count      bigint      NOT NULL DEFAULT 0,
  unassigned_count  bigint      NOT NULL DEFAULT 0,
  theme_count       integer     NOT NULL DEFAULT 0,
  -- Themes below the privacy threshold in force at publish time.
  hidden_theme_count integer    NOT NULL DEFAULT 0,
  group_count       integer     NOT NULL DEFAULT 0,
  matched_count     integer     NOT NULL DEFAULT 0,
  new_count         integer     NOT NULL DEFAULT 0,
  retired_count     integer     NOT NULL DEFAULT 0,
  previous_version  bigint      NOT NULL DEFAULT 0,
  error_message     text        NOT NULL DEFAULT '',
  -- Traces assigned by streaming into this clustering after it was published.
  streaming_count   bigint      NOT NULL DEFAULT 0,
  -- Bumped by merges and splits of this clustering's themes (streaming caches reload on change).
  theme_generation  bigint      NOT NULL DEFAULT 0,
  PRIMARY KEY (project_id, version)
);
-- At most one PENDING (1) or RUNNING (2) clustering per project.
CREATE UNIQUE INDEX clusterings_one_active ON clustering.clusterings (project_id)
  WHERE state IN (1, 2);
-- Workers looking for pending jobs (any project) and stale running ones.
CREATE INDEX clusterings_active ON clustering.clusterings (state, create_time) WHERE state IN (1, 2);
-- The latest clustering: newest SUCCEEDED (3).
CREATE INDEX clusterings_succeeded ON clustering.clusterings (project_id, version DESC)
  WHERE state = 3;
-- Idempotent TriggerRecluster and its hourly rate limit.
CREATE INDEX clusterings_request ON clustering.clusterings (project_id, request_id)
  WHERE request_id IS NOT NULL;
CREATE INDEX clusterings_on_demand ON clustering.clusterings (project_id, create_time)
  WHERE trigger = 2;

-- The fitted embedder of a clustering (engine::BuiltinEmbedder::Serialize bytes): the builtin
-- embedder is refitted at every re-clustering, so each version has its own vector space.
CREATE TABLE clustering.embedder_models (
  project_id    text    NOT NULL,
  version       bigint  NOT NULL,
  embedder_name text    NOT NULL,
  embedder_id   text    NOT NULL,
  dimension     integer NOT NULL,
  model         bytea   NOT NULL,
  PRIMARY KEY (project_id, version)
);

-- Stable cluster ids and their operator attributes (not per version). state: ClusterState as of
-- now; level: ClusterLevel.
CREATE TABLE clustering.clusters (
  project_id           text        NOT NULL,
  cluster_id           text        NOT NULL,
  level                smallint    NOT NULL,
  state                smallint    NOT NULL,
  -- The operator's name (kept across re-clusterings while name_pinned).
  operator_name        text,
  name_pinned          boolean     NOT NULL DEFAULT false,
  operator_description text,
  merged_into          text,
  split_into           text[]      NOT NULL DEFAULT '{}',
  created_version      bigint      NOT NULL,
  last_seen_version    bigint      NOT NULL,
  etag_seq             bigint      NOT NULL DEFAULT 1,
  update_time          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, cluster_id)
);
CREATE INDEX clusters_merged_into ON clustering.clusters (project_id, merged_into)
  WHERE merged_into IS NOT NULL;

-- A cluster's generated attributes in one clustering. centroid: little-endian float32s.
CREATE TABLE clustering.cluster_versions (
  project_id           text        NOT NULL,
  version              bigint      NOT NULL,
  cluster_id           text        NOT NULL,
  level                smallint    NOT NULL,
  state                smallint    NOT NULL,
  parent_id            text        NOT NULL DEFAULT '',
  name                 text        NOT NULL DEFAULT '',
  description          text        NOT NULL DEFAULT '',
  keyword_terms        text[]      NOT NULL DEFAULT '{}',
  keyword_weights      float8[]    NOT NULL DEFAULT '{}',
  key_phrases          text[]      NOT NULL DEFAULT '{}',
  example_trace_ids    text[]      NOT NULL DEFAULT '{}',
  example_snippets     text[]      NOT NULL DEFAULT '{}',
  example_similarities float8[]    NOT NULL DEFAULT '{}',
  centroid             bytea       NOT NULL DEFAULT '',
  update_time          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, version, cluster_id)
);
-- A cluster's newest row (GetCluster with version 0).
CREATE INDEX cluster_versions_by_cluster ON clustering.cluster_versions
  (project_id, cluster_id, version DESC);

-- Memberships: a trace in one clustering. cluster_id NULL = embedded but unassigned (then
-- nearest_cluster_id names the nearest theme). source: AssignmentSource. embedding: the trace in
-- this clustering's vector space (little-endian float32s).
CREATE TABLE clustering.memberships (
  project_id         text             NOT NULL,
  version            bigint           NOT NULL,
  trace_id           text             NOT NULL,
  cluster_id         text,
  similarity         double precision NOT NULL,
  nearest_cluster_id text             NOT NULL DEFAULT '',
  source             smallint         NOT NULL,
  assign_time        timestamptz      NOT NULL DEFAULT now(),
  embedding          bytea            NOT NULL,
  PRIMARY KEY (project_id, version, trace_id)
);
-- Members of a theme, by similarity and by assignment time (ListClusterMembers, counts).
CREATE INDEX memberships_by_similarity ON clustering.memberships
  (project_id, version, cluster_id, similarity DESC, trace_id);
CREATE INDEX memberships_by_assign_time ON clustering.memberships
  (project_id, version, cluster_id, assign_time DESC, trace_id);
-- A trace's newest membership (stats, GetTraceAssignment).
CREATE INDEX memberships_by_trace ON clustering.memberships (project_id, trace_id, version DESC);

-- SplitCluster idempotency: the first response, for 24 hours.
CREATE TABLE clustering.split_requests (
  project_id  text        NOT NULL,
  request_id  text        NOT NULL,
  cluster_id  text        NOT NULL,
  k           integer     NOT NULL,
  response    bytea       NOT NULL,
  create_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, request_id)
);
