-- Service keys: the identity of a deployment's own background workers (feed followers, queue
-- fillers, promotion outboxes) when they call another Flywheel service. They belong to no project:
-- a call names the project it acts for in `x-flywheel-project` metadata. Never the admin scope, so
-- a leaked service key cannot mint keys or change settings.
CREATE TABLE tenancy.service_keys (
  key_id        text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),
  scopes        text[] NOT NULL CHECK (cardinality(scopes) > 0 AND NOT ('admin' = ANY (scopes))),
  secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
  display_name  text NOT NULL DEFAULT '',
  created_at    timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz
);
