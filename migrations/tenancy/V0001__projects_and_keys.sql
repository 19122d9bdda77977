-- Tenancy: projects (the tenant) and their API keys. Every service reads these tables to
-- authenticate; only admin tooling writes them. Keys are stored as SHA-256 of their secret part:
-- secrets are 256-bit random values, so a fast hash is enough (no password stretching needed).
CREATE TABLE tenancy.projects (
  project_id   text PRIMARY KEY CHECK (project_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  display_name text NOT NULL,
  settings     jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenancy.api_keys (
  project_id    text NOT NULL REFERENCES tenancy.projects (project_id),
  key_id        text NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
  kind          text NOT NULL CHECK (kind IN ('public', 'secret')),
  scopes        text[] NOT NULL DEFAULT '{}',
  secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
  display_name  text NOT NULL DEFAULT '',
  created_at    timestamptz NOT NULL DEFAULT now(),
  revoked_at    timestamptz,
  PRIMARY KEY (project_id, key_id),
  -- Public keys are browser-safe: they never carry scopes.
  CHECK (kind = 'secret' OR cardinality(scopes) = 0)
);

-- Authentication looks a key up by its id alone (the project is what we learn from it).
CREATE UNIQUE INDEX api_keys_by_key_id ON tenancy.api_keys (key_id);
