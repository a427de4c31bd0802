-- Secrets the server generates for itself once per database (development
-- only: the JWT signing secret when JWT_SECRET is unset), so that a restart
-- keeps every session.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
