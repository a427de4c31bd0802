-- Campaigns, ICP templates, prospects, onboarding and plan usage (issue 17).

-- Archiving is independent of the lifecycle status: unarchiving clears this
-- column and the status is what it was.
ALTER TABLE campaigns ADD COLUMN archived_at BIGINT;
-- Keyset pagination on (created_at, id) per owner.
CREATE INDEX campaigns_user_created ON campaigns (user_id, created_at, id);

ALTER TABLE icp_templates ADD COLUMN is_favorite BIGINT NOT NULL DEFAULT 0;
ALTER TABLE icp_templates ADD COLUMN use_count BIGINT NOT NULL DEFAULT 0;
CREATE INDEX icp_templates_user_favorite ON icp_templates (user_id, is_favorite, created_at, id);

ALTER TABLE prospects ADD COLUMN industry TEXT;
CREATE INDEX prospects_campaign_created ON prospects (campaign_id, created_at, id);
CREATE INDEX generated_emails_prospect_created ON generated_emails (prospect_id, created_at, id);

-- One row per user: what onboarding asked, and the campaign it created.
CREATE TABLE onboarding (
    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    product_description TEXT NOT NULL,
    icp_description TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    campaign_id TEXT REFERENCES campaigns (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Metered usage per user and calendar month (UTC, 'YYYY-MM'): deleting what
-- was counted gives nothing back.
CREATE TABLE plan_usage (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    period TEXT NOT NULL,
    prospects_imported BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, period)
);
