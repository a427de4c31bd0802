-- A user's session version: every session token carries the version it was
-- issued at; a password reset or change and a logout from everywhere add one,
-- which ends every earlier session.
ALTER TABLE users ADD COLUMN session_version BIGINT NOT NULL DEFAULT 0;
