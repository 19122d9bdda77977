-- Sticky merges: the members a merged source held when an operator merged it (in `version`), so
-- that a later re-clustering can recognize a fresh theme that re-forms the merged source and fold
-- it into the target instead of bringing the source back under a new id.
CREATE TABLE clustering.merged_members (
  project_id text   NOT NULL,
  version    bigint NOT NULL,
  trace_id   text   NOT NULL,
  source_id  text   NOT NULL,
  PRIMARY KEY (project_id, version, trace_id)
);
