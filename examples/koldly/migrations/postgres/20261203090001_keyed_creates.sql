-- What a keyed create made, written in the create's own transaction: the
-- idempotency layer records a completed request in its store only after the
-- handler's commit, so a process killed between the two leaves the key merely
-- claimed and a retry after the claim expires would run the create again.
-- This row answers that retry with the resource the first run made
-- (src/keyed.rs). One row per key of a user, the layer's scope; rows older than
-- the layer's 24-hour retention are ignored and purged.
CREATE TABLE keyed_creates (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    route TEXT NOT NULL,
    resource_kind TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);
CREATE INDEX keyed_creates_user_created ON keyed_creates (user_id, created_at);
