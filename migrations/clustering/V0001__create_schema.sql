-- The clustering schema. Owned by the clustering service alone: no other service reads or writes it.
-- Its tables arrive in later migrations with the service's implementation.
CREATE SCHEMA IF NOT EXISTS clustering;
