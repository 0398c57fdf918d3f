-- The ledger's past: stock as of any time, each stock row's history with running balances,
-- and events found by identity. Answers are folds of the events in business-time order
-- (occurred_at), ties broken by the ledger order (seq).

-- seq is the ledger order. For the events of one stock row it is also the commit order: a
-- batch allocates its seqs when it inserts its events, and a batch that loses the race for
-- a stock row to one that committed first is judged and inserted again. delta is the
-- event's signed change of its stock row. Both fill existing rows in one table rewrite.
ALTER TABLE events
    ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY,
    ADD COLUMN delta bigint GENERATED ALWAYS AS (CASE WHEN event = 'arrival' THEN quantity ELSE -quantity END) STORED;

--bun:split

-- One index serves as-of (an index-only sum of delta over a key's events up to a time) and
-- history pages (a range of a key's events in (occurred_at, seq) order); stored_at answers
-- "when did an answer last change" without visiting the table.
CREATE INDEX events_history_idx ON events (warehouse_id, product_id, occurred_at, seq) INCLUDE (delta, stored_at);

--bun:split

-- A checkpoint is the balance of a stock row at a position of its history: the sum of the
-- deltas of its events at or before (at, seq). As-of then sums only the events after the
-- nearest checkpoint instead of the row's whole history. The write path makes one at
-- every 128th event of a row in position order (several when a batch brings many), each
-- holding the running balance from the checkpoint before it, and adds a late event (one
-- dated before a checkpoint) to the checkpoints after it. Each checkpoint also counts its
-- events and the latest time one of them was stored.
CREATE TABLE stock_checkpoints (
    warehouse_id uuid        NOT NULL,
    product_id   uuid        NOT NULL,
    at           timestamptz NOT NULL,
    seq          bigint      NOT NULL,
    balance      bigint      NOT NULL,
    events       bigint      NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (warehouse_id, product_id, at, seq)
);

--bun:split

-- events counts a row's events (the write path compares it with the quantity, so that any
-- concurrent commit to the row makes a batch's compare-and-set fail); checkpoint_at is the
-- position in time of its newest checkpoint, so that only a batch holding an event dated
-- before it touches the checkpoints.
ALTER TABLE stock
    ADD COLUMN events        bigint NOT NULL DEFAULT 0 CHECK (events >= 0),
    ADD COLUMN checkpoint_at timestamptz;

--bun:split

UPDATE stock s SET events = c.n
FROM (SELECT warehouse_id, product_id, count(*) AS n FROM events GROUP BY 1, 2) c
WHERE s.warehouse_id = c.warehouse_id AND s.product_id = c.product_id;
