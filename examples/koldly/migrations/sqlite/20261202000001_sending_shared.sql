-- Shared by the sending engine and the inbox.
-- Every message koldly sends carries its own Message-ID; a reply is matched to
-- the message it answers by In-Reply-To / References against this column,
-- never by the sender's address.
ALTER TABLE campaign_sending_queue ADD COLUMN message_id TEXT;
CREATE UNIQUE INDEX campaign_sending_queue_message_id ON campaign_sending_queue (message_id);

-- An account's suppression list: addresses never sent to again (unsubscribes,
-- hard bounces, complaints). `email` is stored lower-cased.
CREATE TABLE suppressions (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, email)
);

-- Webhook tokens already accepted, per provider: a signed delivery is
-- accepted once (replay protection within the signature's tolerance).
CREATE TABLE webhook_tokens (
    provider TEXT NOT NULL,
    token TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (provider, token)
);
CREATE INDEX webhook_tokens_seen ON webhook_tokens (seen_at);
