-- The change log: what every committed batch changed, in commit order, for the change
-- stream (GET /api/stream) and its resume. Each stored event takes two positions (its
-- movement, then its stock row). A batch takes its range from change_log_head as its
-- last statement: the row lock it holds until commit makes the next batch wait, so
-- positions follow commit order, have no gaps, and a reader that sees a batch sees every
-- batch before it. The lock is held only from that statement to the commit.
CREATE TABLE change_log_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    position bigint  NOT NULL CHECK (position >= 0)
);

--bun:split

INSERT INTO change_log_head (position) VALUES (0);

--bun:split

-- One row per batch: positions first_position..last_position, and the changes encoded
-- by the service (the events' identities, movements and stock quantities right after
-- each event; see adapters/postgres/changes.go). Rows older than the stream's retention
-- are pruned; a reader behind them gets 410 Gone.
CREATE TABLE change_log (
    last_position  bigint      PRIMARY KEY,
    first_position bigint      NOT NULL,
    -- updated_at is the batch's transaction time, as on the stock rows it wrote;
    -- committed_at the clock when the batch took its positions, just before its commit.
    updated_at     timestamptz NOT NULL DEFAULT now(),
    committed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    changes        bytea       NOT NULL,
    CHECK (first_position <= last_position)
);

--bun:split

-- Already compact: stored out of line without a compression pass on every batch.
ALTER TABLE change_log ALTER COLUMN changes SET STORAGE EXTERNAL;

--bun:split

CREATE INDEX change_log_committed_at_idx ON change_log (committed_at);
