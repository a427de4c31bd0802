-- The sending engine (issue 18): senders, the queue's leases and `unknown`
-- state, the sent_mail provider, follow-up drafts and halted prospects.

ALTER TABLE campaign_sending_queue DROP CONSTRAINT campaign_sending_queue_status_check;
ALTER TABLE campaign_sending_queue ADD CONSTRAINT campaign_sending_queue_status_check
    CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'cancelled', 'unknown'));
ALTER TABLE campaign_sending_queue ADD COLUMN lease_owner TEXT;
ALTER TABLE campaign_sending_queue ADD COLUMN lease_until BIGINT;
ALTER TABLE campaign_sending_queue ADD COLUMN claimed_at BIGINT;
-- Queueing is idempotent: an email is queued once.
CREATE UNIQUE INDEX campaign_sending_queue_email ON campaign_sending_queue (generated_email_id);
CREATE INDEX campaign_sending_queue_claimed ON campaign_sending_queue (campaign_id, claimed_at);

-- Addresses a user proved they own (a verification link), sent from.
-- `email` is stored lower-cased.
CREATE TABLE senders (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    reply_to TEXT,
    verified_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX senders_user_email ON senders (user_id, email);
CREATE INDEX senders_user_created ON senders (user_id, created_at, id);

-- Single-use verification links of senders: only the SHA-256 is stored.
CREATE TABLE sender_verification_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    sender_id TEXT NOT NULL REFERENCES senders (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX sender_verification_tokens_sender ON sender_verification_tokens (sender_id);

-- How a started campaign sends.
ALTER TABLE campaign_sending_context ADD COLUMN sender_id TEXT REFERENCES senders (id) ON DELETE SET NULL;
ALTER TABLE campaign_sending_context ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'paused'));
ALTER TABLE campaign_sending_context ADD COLUMN stop_on_reply BIGINT NOT NULL DEFAULT 1;
ALTER TABLE campaign_sending_context ADD COLUMN auto_approve_followups BIGINT NOT NULL DEFAULT 0;
ALTER TABLE campaign_sending_context ADD COLUMN started_at BIGINT NOT NULL DEFAULT 0;

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
    created_at BIGINT NOT NULL
);
CREATE INDEX sent_mail_user_created ON sent_mail (user_id, created_at, id);

-- Follow-ups are drafted per prospect from the campaign's sequence steps,
-- once per step (the unique index), and approved like first emails.
ALTER TABLE generated_emails ADD COLUMN sequence_step_id TEXT REFERENCES email_sequence_steps (id) ON DELETE CASCADE;
CREATE UNIQUE INDEX generated_emails_prospect_step ON generated_emails (prospect_id, sequence_step_id);

-- A prospect whose follow-ups stopped (a reply, an unsubscribe, a bounce).
ALTER TABLE prospects ADD COLUMN halted_at BIGINT;
ALTER TABLE prospects ADD COLUMN halt_reason TEXT;
