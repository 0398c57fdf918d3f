-- Drops the ledger's past (its checkpoints, the history index and the columns that order
-- and sign events); the events themselves stay.
ALTER TABLE stock DROP COLUMN IF EXISTS checkpoint_at, DROP COLUMN IF EXISTS events;
--bun:split
DROP TABLE IF EXISTS stock_checkpoints;
--bun:split
DROP INDEX IF EXISTS events_history_idx;
--bun:split
ALTER TABLE events DROP COLUMN IF EXISTS delta, DROP COLUMN IF EXISTS seq;
