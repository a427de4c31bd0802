-- Answers to replies go through the sending queue (issue 18).
--
-- A queue row may carry the inbox reply it answers (`reply_inbox_id`, no
-- generated email): the unique index queues an answer once however often the
-- send route is called. The drafted answer gains the state `failed` and its
-- reason (`draft_error`). (The CHECK was created on the table's `_v2` name,
-- which PostgreSQL kept through the rename.)
ALTER TABLE prospect_reply_inbox DROP CONSTRAINT prospect_reply_inbox_v2_draft_status_check;
ALTER TABLE prospect_reply_inbox ADD CONSTRAINT prospect_reply_inbox_draft_status_check
    CHECK (draft_status IN ('draft', 'sending', 'sent', 'failed'));
ALTER TABLE prospect_reply_inbox ADD COLUMN draft_error TEXT;

ALTER TABLE campaign_sending_queue ADD COLUMN reply_inbox_id TEXT
    REFERENCES prospect_reply_inbox (id) ON DELETE CASCADE;
CREATE UNIQUE INDEX campaign_sending_queue_reply ON campaign_sending_queue (reply_inbox_id);
-- The `unknown` list of a campaign, oldest first.
CREATE INDEX campaign_sending_queue_unknown ON campaign_sending_queue (campaign_id, status, updated_at, id);
