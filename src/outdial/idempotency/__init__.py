"""`Idempotency-Key` on create requests: a retried create returns the first response."""
