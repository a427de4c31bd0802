-- Background jobs (leases) and the language model's usage, budget and cache.

-- One row per job. A runner claims a due job by setting `lease_owner` and
-- `lease_until` (unix seconds) in one statement; while the job runs the runner
-- renews the lease. A job whose lease has passed (its runner died) is claimed
-- again. `attempts` counts claims.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    progress_done INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    run_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX jobs_due ON jobs (state, run_at);
CREATE INDEX jobs_lease ON jobs (state, lease_until);
CREATE INDEX jobs_user ON jobs (user_id, created_at);

-- The AI budget of a user for a month ('YYYY-MM'), in microcents (1e-6 cent):
-- settled spend plus open reservations never exceed the plan's budget.
CREATE TABLE ai_budgets (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    month TEXT NOT NULL,
    spent_microcents INTEGER NOT NULL DEFAULT 0 CHECK (spent_microcents >= 0),
    reserved_microcents INTEGER NOT NULL DEFAULT 0 CHECK (reserved_microcents >= 0),
    PRIMARY KEY (user_id, month)
);

-- One row per language model call: reserved before it, settled after it.
CREATE TABLE ai_usage (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    job_id TEXT REFERENCES jobs (id) ON DELETE SET NULL,
    month TEXT NOT NULL,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'reserved'
        CHECK (state IN ('reserved', 'settled', 'released')),
    reserved_microcents INTEGER NOT NULL,
    cost_microcents INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    created_at INTEGER NOT NULL,
    settled_at INTEGER
);
CREATE INDEX ai_usage_user_month ON ai_usage (user_id, month);

-- Validated model answers by a hash of the task, model and prompt, per user.
CREATE TABLE ai_cache (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    input_hash TEXT NOT NULL,
    task TEXT NOT NULL,
    output TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, input_hash)
);
