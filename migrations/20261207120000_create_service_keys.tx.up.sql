-- Secrets that every process of one ledger shares and that publishers never see. The
-- consumer signs the retry count it puts on the messages it sends through the delayed-retry
-- queue with the 'control-headers' key, so that a count a publisher sets is ignored; every
-- consumer of a queue must verify what the others signed, and the ledger's database is the
-- one place they all reach. The key is 32 bytes from gen_random_uuid (PostgreSQL's strong
-- random source; 244 random bits), made once here and never rotated by the service.
CREATE TABLE service_keys (
    name       text        PRIMARY KEY,
    secret     bytea       NOT NULL CHECK (octet_length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
--bun:split
INSERT INTO service_keys (name, secret)
VALUES ('control-headers', decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
