-- Answers to replies go through the sending queue (issue 18).
--
-- A queue row may carry the inbox reply it answers (`reply_inbox_id`, no
-- generated email): the unique index queues an answer once however often the
-- send route is called. The drafted answer gains the state `failed` and its
-- reason (`draft_error`). SQLite cannot alter a CHECK constraint, so
-- `prospect_reply_inbox` is rebuilt (create, copy, drop, rename) before the
-- queue references it; nothing referenced it until now.
CREATE TABLE prospect_reply_inbox_v3 (
    id TEXT PRIMARY KEY NOT NULL,
    reply_id TEXT NOT NULL UNIQUE REFERENCES prospect_replies (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    category TEXT NOT NULL DEFAULT 'uncategorized'
        CHECK (category IN ('uncategorized', 'interested', 'not_interested', 'out_of_office',
                            'objection', 'question', 'unsubscribe', 'bounce', 'other')),
    categorized_by TEXT CHECK (categorized_by IN ('keywords', 'model', 'user')),
    confidence INTEGER CHECK (confidence BETWEEN 0 AND 100),
    return_date TEXT,
    is_read INTEGER NOT NULL DEFAULT 0,
    is_archived INTEGER NOT NULL DEFAULT 0,
    draft_subject TEXT,
    draft_body TEXT,
    draft_status TEXT CHECK (draft_status IN ('draft', 'sending', 'sent', 'failed')),
    draft_model TEXT,
    received_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    draft_error TEXT
);
INSERT INTO prospect_reply_inbox_v3 (id, reply_id, user_id, campaign_id, category, categorized_by,
    confidence, return_date, is_read, is_archived, draft_subject, draft_body, draft_status,
    draft_model, received_at, created_at, updated_at)
SELECT id, reply_id, user_id, campaign_id, category, categorized_by, confidence, return_date,
    is_read, is_archived, draft_subject, draft_body, draft_status, draft_model, received_at,
    created_at, updated_at
FROM prospect_reply_inbox;
DROP TABLE prospect_reply_inbox;
ALTER TABLE prospect_reply_inbox_v3 RENAME TO prospect_reply_inbox;
CREATE INDEX prospect_reply_inbox_received ON prospect_reply_inbox (user_id, is_archived, received_at, id);
CREATE INDEX prospect_reply_inbox_campaign ON prospect_reply_inbox (user_id, campaign_id, received_at);
CREATE INDEX prospect_reply_inbox_category ON prospect_reply_inbox (user_id, category, received_at);
CREATE INDEX prospect_reply_inbox_confidence ON prospect_reply_inbox (user_id, confidence, received_at);

ALTER TABLE campaign_sending_queue ADD COLUMN reply_inbox_id TEXT
    REFERENCES prospect_reply_inbox (id) ON DELETE CASCADE;
CREATE UNIQUE INDEX campaign_sending_queue_reply ON campaign_sending_queue (reply_inbox_id);
-- The `unknown` list of a campaign, oldest first.
CREATE INDEX campaign_sending_queue_unknown ON campaign_sending_queue (campaign_id, status, updated_at, id);
