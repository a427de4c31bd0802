-- When a message last became `pending` (stored, or claimed for a resend), in
-- Unix seconds; NULL means its created_at. A `pending` row older than the
-- longest a live send can take is one whose sender was cut off (a request's
-- route timeout, a shutdown): the outbox job claims it again so that it is
-- neither lost nor left unreported.
ALTER TABLE mail_outbox ADD COLUMN pending_since INTEGER;
