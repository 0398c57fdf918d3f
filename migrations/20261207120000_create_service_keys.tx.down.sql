-- Drops the shared secrets; the next `migrate up` makes a new key, and retries in flight
-- then count from zero again.
DROP TABLE IF EXISTS service_keys;
