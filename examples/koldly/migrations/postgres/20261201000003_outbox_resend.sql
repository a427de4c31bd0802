-- 1 when a failed message may be sent again: its failure proved the provider
-- did not accept it (connection refused, 429, 503). A message whose fate is
-- unknown (a timeout, a 502 or 504) keeps 0: resending it could deliver it
-- twice, and the providers koldly uses honour no idempotency key.
ALTER TABLE mail_outbox ADD COLUMN resend BIGINT NOT NULL DEFAULT 0;
