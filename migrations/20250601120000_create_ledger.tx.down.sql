-- Drops the ledger created by the matching up migration.
DROP TABLE IF EXISTS stock;
--bun:split
DROP TABLE IF EXISTS movements;
--bun:split
DROP TABLE IF EXISTS events;
