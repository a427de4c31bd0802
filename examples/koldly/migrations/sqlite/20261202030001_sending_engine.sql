-- The sending engine (issue 18): senders, the queue's leases and `unknown`
-- state, the sent_mail provider, follow-up drafts and halted prospects.
--
-- SQLite cannot alter a CHECK constraint, so campaign_sending_queue is rebuilt
-- (create, copy, drop, rename). The migration runs in a transaction with
-- foreign keys on (sqlx 0.8 runs every SQLite migration in one, and the pragma
-- cannot change inside it), so dropping the old table runs
-- prospect_replies.queue_id's ON DELETE SET NULL: those links are kept aside
-- first and restored after the rename.
CREATE TABLE sending_engine_reply_links AS
    SELECT id, queue_id FROM prospect_replies WHERE queue_id IS NOT NULL;

CREATE TABLE campaign_sending_queue_new (
    id TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    prospect_id TEXT NOT NULL REFERENCES prospects (id) ON DELETE CASCADE,
    generated_email_id TEXT REFERENCES generated_emails (id) ON DELETE CASCADE,
    sequence_step_id TEXT REFERENCES email_sequence_steps (id) ON DELETE SET NULL,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'cancelled', 'unknown')),
    scheduled_for INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    provider_message_id TEXT,
    sent_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    message_id TEXT,
    lease_owner TEXT,
    lease_until INTEGER,
    claimed_at INTEGER
);
INSERT INTO campaign_sending_queue_new (id, campaign_id, prospect_id, generated_email_id,
    sequence_step_id, status, scheduled_for, attempts, last_error, provider_message_id, sent_at,
    created_at, updated_at, message_id)
SELECT id, campaign_id, prospect_id, generated_email_id, sequence_step_id, status, scheduled_for,
    attempts, last_error, provider_message_id, sent_at, created_at, updated_at, message_id
FROM campaign_sending_queue;
DROP TABLE campaign_sending_queue;
ALTER TABLE campaign_sending_queue_new RENAME TO campaign_sending_queue;
CREATE INDEX campaign_sending_queue_due ON campaign_sending_queue (status, scheduled_for);
CREATE INDEX campaign_sending_queue_campaign ON campaign_sending_queue (campaign_id, status);
CREATE INDEX campaign_sending_queue_prospect ON campaign_sending_queue (prospect_id);
CREATE UNIQUE INDEX campaign_sending_queue_message_id ON campaign_sending_queue (message_id);
-- Queueing is idempotent: an email is queued once.
CREATE UNIQUE INDEX campaign_sending_queue_email ON campaign_sending_queue (generated_email_id);
CREATE INDEX campaign_sending_queue_claimed ON campaign_sending_queue (campaign_id, claimed_at);

UPDATE prospect_replies SET queue_id =
    (SELECT l.queue_id FROM sending_engine_reply_links l WHERE l.id = prospect_replies.id)
    WHERE id IN (SELECT id FROM sending_engine_reply_links);
DROP TABLE sending_engine_reply_links;

-- Addresses a user proved they own (a verification link), sent from.
-- `email` is stored lower-cased.
CREATE TABLE senders (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    reply_to TEXT,
    verified_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX senders_user_email ON senders (user_id, email);
CREATE INDEX senders_user_created ON senders (user_id, created_at, id);

-- Single-use verification links of senders: only the SHA-256 is stored.
CREATE TABLE sender_verification_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    sender_id TEXT NOT NULL REFERENCES senders (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX sender_verification_tokens_sender ON sender_verification_tokens (sender_id);

-- How a started campaign sends.
ALTER TABLE campaign_sending_context ADD COLUMN sender_id TEXT REFERENCES senders (id) ON DELETE SET NULL;
ALTER TABLE campaign_sending_context ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'paused'));
ALTER TABLE campaign_sending_context ADD COLUMN stop_on_reply INTEGER NOT NULL DEFAULT 1;
ALTER TABLE campaign_sending_context ADD COLUMN auto_approve_followups INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaign_sending_context ADD COLUMN started_at INTEGER NOT NULL DEFAULT 0;

-- The default provider: every message koldly would have sent, as sent.
CREATE TABLE sent_mail (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    queue_id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    from_header TEXT NOT NULL,
    to_email TEXT NOT NULL,
    reply_to TEXT,
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT NOT NULL,
    headers TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX sent_mail_user_created ON sent_mail (user_id, created_at, id);

-- Follow-ups are drafted per prospect from the campaign's sequence steps,
-- once per step (the unique index), and approved like first emails.
ALTER TABLE generated_emails ADD COLUMN sequence_step_id TEXT REFERENCES email_sequence_steps (id) ON DELETE CASCADE;
CREATE UNIQUE INDEX generated_emails_prospect_step ON generated_emails (prospect_id, sequence_step_id);

-- A prospect whose follow-ups stopped (a reply, an unsubscribe, a bounce).
ALTER TABLE prospects ADD COLUMN halted_at INTEGER;
ALTER TABLE prospects ADD COLUMN halt_reason TEXT;
