-- The inbox (issue 18): replies matched to the message they answer.
--
-- `prospect_reply_inbox` gains the categories `objection` and `question`, who
-- filed the reply (keywords, the model or the user), the confidence, an
-- out-of-office return date, the campaign (for the list filter) and a drafted
-- answer. SQLite cannot alter a CHECK constraint, so the table is rebuilt:
-- new table, copy, drop, rename (nothing references it by foreign key).
CREATE TABLE prospect_reply_inbox_v2 (
    id TEXT PRIMARY KEY NOT NULL,
    reply_id TEXT NOT NULL UNIQUE REFERENCES prospect_replies (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    category TEXT NOT NULL DEFAULT 'uncategorized'
        CHECK (category IN ('uncategorized', 'interested', 'not_interested', 'out_of_office',
                            'objection', 'question', 'unsubscribe', 'bounce', 'other')),
    categorized_by TEXT CHECK (categorized_by IN ('keywords', 'model', 'user')),
    -- Percent, 0 to 100; NULL until categorised.
    confidence INTEGER CHECK (confidence BETWEEN 0 AND 100),
    -- ISO date (YYYY-MM-DD) an out-of-office reply names.
    return_date TEXT,
    is_read INTEGER NOT NULL DEFAULT 0,
    is_archived INTEGER NOT NULL DEFAULT 0,
    draft_subject TEXT,
    draft_body TEXT,
    draft_status TEXT CHECK (draft_status IN ('draft', 'sending', 'sent')),
    draft_model TEXT,
    received_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO prospect_reply_inbox_v2 (id, reply_id, user_id, campaign_id, category, is_read,
    is_archived, received_at, created_at, updated_at)
SELECT i.id, i.reply_id, i.user_id, r.campaign_id, i.category, i.is_read, i.is_archived,
    i.received_at, i.created_at, i.created_at
FROM prospect_reply_inbox i JOIN prospect_replies r ON r.id = i.reply_id;
DROP TABLE prospect_reply_inbox;
ALTER TABLE prospect_reply_inbox_v2 RENAME TO prospect_reply_inbox;

-- The list's filters and sorts, always within one account.
CREATE INDEX prospect_reply_inbox_received ON prospect_reply_inbox (user_id, is_archived, received_at, id);
CREATE INDEX prospect_reply_inbox_campaign ON prospect_reply_inbox (user_id, campaign_id, received_at);
CREATE INDEX prospect_reply_inbox_category ON prospect_reply_inbox (user_id, category, received_at);
CREATE INDEX prospect_reply_inbox_confidence ON prospect_reply_inbox (user_id, confidence, received_at);

-- The reply's own threading headers, as received.
ALTER TABLE prospect_replies ADD COLUMN in_reply_to TEXT;
ALTER TABLE prospect_replies ADD COLUMN to_email TEXT;
