-- koldly schema (PostgreSQL). Timestamps are unix seconds, ids text UUIDs, flags 0/1.
CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    password_hash TEXT,
    google_id TEXT,
    email_verified BIGINT NOT NULL DEFAULT 0,
    subscription_plan TEXT NOT NULL DEFAULT 'free',
    subscription_status TEXT NOT NULL DEFAULT 'inactive',
    stripe_customer_id TEXT,
    stripe_subscription_id TEXT,
    subscription_period_end BIGINT,
    monthly_email_quota BIGINT NOT NULL DEFAULT 100,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));
CREATE UNIQUE INDEX users_google_id ON users (google_id) WHERE google_id IS NOT NULL;
CREATE UNIQUE INDEX users_stripe_customer ON users (stripe_customer_id) WHERE stripe_customer_id IS NOT NULL;

CREATE TABLE password_reset_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX password_reset_tokens_user ON password_reset_tokens (user_id);

CREATE TABLE email_verification_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX email_verification_tokens_user ON email_verification_tokens (user_id);

CREATE TABLE icp_templates (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    industry TEXT,
    company_size TEXT,
    job_titles TEXT NOT NULL DEFAULT '[]',
    pain_points TEXT NOT NULL DEFAULT '[]',
    value_proposition TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX icp_templates_user ON icp_templates (user_id, created_at);

CREATE TABLE campaigns (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    icp_template_id TEXT REFERENCES icp_templates (id) ON DELETE SET NULL,
    name TEXT NOT NULL,
    description TEXT,
    product_description TEXT,
    target_industry TEXT,
    status TEXT NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'active', 'paused', 'completed', 'archived')),
    daily_send_limit BIGINT NOT NULL DEFAULT 50,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX campaigns_user_status ON campaigns (user_id, status);
CREATE INDEX campaigns_icp_template ON campaigns (icp_template_id);

CREATE TABLE prospects (
    id TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    first_name TEXT,
    last_name TEXT,
    company TEXT,
    title TEXT,
    website TEXT,
    linkedin_url TEXT,
    research_notes TEXT,
    status TEXT NOT NULL DEFAULT 'new'
        CHECK (status IN ('new', 'researched', 'email_generated', 'queued', 'contacted', 'replied', 'bounced', 'unsubscribed')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX prospects_campaign_email ON prospects (campaign_id, lower(email));
CREATE INDEX prospects_campaign_status ON prospects (campaign_id, status);
CREATE INDEX prospects_user ON prospects (user_id);

CREATE TABLE generated_emails (
    id TEXT PRIMARY KEY NOT NULL,
    prospect_id TEXT NOT NULL REFERENCES prospects (id) ON DELETE CASCADE,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'approved', 'rejected', 'sent')),
    model TEXT,
    approved_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX generated_emails_campaign_status ON generated_emails (campaign_id, status);
CREATE INDEX generated_emails_prospect ON generated_emails (prospect_id);

CREATE TABLE email_sequences (
    id TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX email_sequences_campaign ON email_sequences (campaign_id);

CREATE TABLE email_sequence_steps (
    id TEXT PRIMARY KEY NOT NULL,
    sequence_id TEXT NOT NULL REFERENCES email_sequences (id) ON DELETE CASCADE,
    step_number BIGINT NOT NULL CHECK (step_number >= 1),
    delay_days BIGINT NOT NULL DEFAULT 0 CHECK (delay_days >= 0),
    subject_template TEXT NOT NULL,
    body_template TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (sequence_id, step_number)
);

CREATE TABLE campaign_sending_context (
    campaign_id TEXT PRIMARY KEY NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    from_name TEXT NOT NULL,
    from_email TEXT NOT NULL,
    reply_to TEXT,
    signature TEXT,
    timezone TEXT NOT NULL DEFAULT 'UTC',
    send_window_start BIGINT NOT NULL DEFAULT 9,
    send_window_end BIGINT NOT NULL DEFAULT 17,
    daily_limit BIGINT NOT NULL DEFAULT 50,
    updated_at BIGINT NOT NULL
);

CREATE TABLE campaign_sending_queue (
    id TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    prospect_id TEXT NOT NULL REFERENCES prospects (id) ON DELETE CASCADE,
    generated_email_id TEXT REFERENCES generated_emails (id) ON DELETE CASCADE,
    sequence_step_id TEXT REFERENCES email_sequence_steps (id) ON DELETE SET NULL,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'cancelled')),
    scheduled_for BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    provider_message_id TEXT,
    sent_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX campaign_sending_queue_due ON campaign_sending_queue (status, scheduled_for);
CREATE INDEX campaign_sending_queue_campaign ON campaign_sending_queue (campaign_id, status);
CREATE INDEX campaign_sending_queue_prospect ON campaign_sending_queue (prospect_id);

CREATE TABLE prospect_replies (
    id TEXT PRIMARY KEY NOT NULL,
    prospect_id TEXT NOT NULL REFERENCES prospects (id) ON DELETE CASCADE,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    queue_id TEXT REFERENCES campaign_sending_queue (id) ON DELETE SET NULL,
    from_email TEXT NOT NULL,
    subject TEXT,
    body TEXT NOT NULL,
    provider_message_id TEXT UNIQUE,
    received_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX prospect_replies_prospect ON prospect_replies (prospect_id, received_at);
CREATE INDEX prospect_replies_campaign ON prospect_replies (campaign_id, received_at);

CREATE TABLE prospect_reply_inbox (
    id TEXT PRIMARY KEY NOT NULL,
    reply_id TEXT NOT NULL UNIQUE REFERENCES prospect_replies (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    category TEXT NOT NULL DEFAULT 'uncategorized'
        CHECK (category IN ('uncategorized', 'interested', 'not_interested', 'out_of_office', 'unsubscribe', 'bounce', 'other')),
    is_read BIGINT NOT NULL DEFAULT 0,
    is_archived BIGINT NOT NULL DEFAULT 0,
    received_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX prospect_reply_inbox_category ON prospect_reply_inbox (user_id, category, received_at);
CREATE INDEX prospect_reply_inbox_received ON prospect_reply_inbox (user_id, received_at);

CREATE TABLE analytics_events (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    campaign_id TEXT REFERENCES campaigns (id) ON DELETE SET NULL,
    prospect_id TEXT REFERENCES prospects (id) ON DELETE SET NULL,
    event_type TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    occurred_at BIGINT NOT NULL
);
CREATE INDEX analytics_events_user_time ON analytics_events (user_id, occurred_at);
CREATE INDEX analytics_events_campaign_type ON analytics_events (campaign_id, event_type, occurred_at);

-- The audit trail outlives the accounts it mentions: no foreign key on actor.
-- One row per audit event (the fields of steadfast's AuditEvent).
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY NOT NULL,
    occurred_at BIGINT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'denied', 'error')),
    actor TEXT,
    client_ip TEXT,
    user_agent TEXT,
    request_id TEXT,
    method TEXT,
    route TEXT,
    status BIGINT,
    latency_ms DOUBLE PRECISION,
    target_type TEXT,
    target_id TEXT,
    reason TEXT,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_actor_time ON audit_log (actor, occurred_at);
CREATE INDEX audit_log_action_time ON audit_log (action, occurred_at);

CREATE TABLE mail_outbox (
    id TEXT PRIMARY KEY NOT NULL,
    to_addr TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'failed', 'logged')),
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX mail_outbox_status ON mail_outbox (status, created_at);
CREATE INDEX mail_outbox_to ON mail_outbox (to_addr, created_at);
