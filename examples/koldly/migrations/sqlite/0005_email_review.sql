-- Email generation and review (issue 17): which job drafted an email, and
-- why it was rejected.

-- The generation job that drafted the email: a job that runs again (after a
-- crash or a transient failure) skips the prospects it already drafted, and
-- the unique index makes a second draft of one prospect by one job impossible.
ALTER TABLE generated_emails ADD COLUMN job_id TEXT;
CREATE UNIQUE INDEX generated_emails_job_prospect ON generated_emails (job_id, prospect_id);
ALTER TABLE generated_emails ADD COLUMN rejection_reason TEXT;
ALTER TABLE generated_emails ADD COLUMN rejected_at INTEGER;
-- The approval queue: drafts per campaign, newest first.
CREATE INDEX generated_emails_campaign_status_created ON generated_emails (campaign_id, status, created_at, id);
