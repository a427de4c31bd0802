-- A keyed campaign create leaves its Idempotency-Key on the row, written in
-- the same transaction: a retry after the process died between the commit and
-- the idempotency store's completion finds the campaign instead of making a
-- second one (tests/kills.rs). Unique per user, the key's scope.
ALTER TABLE campaigns ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX campaigns_user_idempotency_key ON campaigns (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
