-- Billing with Stripe, dashboards, analytics and admin (issue 19).

-- An admin only by `koldly admin grant EMAIL`.
ALTER TABLE users ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0;
-- The IANA time zone the dashboards count local days in.
ALTER TABLE users ADD COLUMN timezone TEXT NOT NULL DEFAULT 'UTC';

-- Every Stripe event applied, recorded in the same transaction as its effect:
-- a redelivered event finds its id here and changes nothing.
CREATE TABLE stripe_events (
    id TEXT PRIMARY KEY NOT NULL,
    event_type TEXT NOT NULL,
    created INTEGER NOT NULL,
    processed_at INTEGER NOT NULL
);

-- Each subscription as its newest applied event left it: an event created
-- before `last_event_created` is older news and is ignored.
CREATE TABLE stripe_subscriptions (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    price_id TEXT,
    plan TEXT NOT NULL,
    current_period_end INTEGER,
    last_event_created INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX stripe_subscriptions_user ON stripe_subscriptions (user_id);

-- Dashboards: a user's sent mail by time, platform-wide sends and replies by
-- time (admin metrics), the activity feed's keyset order.
CREATE INDEX campaign_sending_queue_campaign_sent ON campaign_sending_queue (campaign_id, status, sent_at);
CREATE INDEX campaign_sending_queue_sent ON campaign_sending_queue (status, sent_at);
CREATE INDEX prospect_replies_received ON prospect_replies (received_at);
CREATE INDEX analytics_events_user_feed ON analytics_events (user_id, occurred_at, id);
CREATE INDEX analytics_events_time ON analytics_events (occurred_at, user_id);
CREATE INDEX users_created ON users (created_at);
CREATE INDEX campaigns_created ON campaigns (created_at);
CREATE INDEX users_subscription ON users (subscription_status, subscription_plan);
