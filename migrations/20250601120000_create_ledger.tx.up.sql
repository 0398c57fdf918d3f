-- The ledger: every applied event, the movements projection the API reads, and the current
-- stock per (warehouse, product). Uniqueness and CHECK constraints are the last line of
-- defence for the processing rules; the ingest code keeps them from ever firing.

-- events: one row per applied movement event. (source, id) is the CloudEvents identity and
-- the primary key; (movement_id, event) allows one departure and one arrival per movement.
CREATE TABLE events (
    source       text        NOT NULL,
    id           text        NOT NULL,
    movement_id  uuid        NOT NULL,
    event        text        NOT NULL CHECK (event IN ('arrival', 'departure')),
    warehouse_id uuid        NOT NULL,
    product_id   uuid        NOT NULL,
    quantity     bigint      NOT NULL CHECK (quantity BETWEEN 1 AND 1000000000),
    occurred_at  timestamptz NOT NULL,
    event_time   timestamptz,
    attributes   jsonb,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_pkey PRIMARY KEY (source, id),
    CONSTRAINT events_movement_event_key UNIQUE (movement_id, event)
);

--bun:split

-- movements: the read model of each movement, kept in the same transaction as its events.
-- moved_at (departure time, else arrival time) orders lists; status is derived.
CREATE TABLE movements (
    movement_id            uuid PRIMARY KEY,
    product_id             uuid NOT NULL,
    departure_warehouse_id uuid,
    departure_source       text,
    departure_at           timestamptz,
    departure_quantity     bigint,
    arrival_warehouse_id   uuid,
    arrival_source         text,
    arrival_at             timestamptz,
    arrival_quantity       bigint,
    moved_at               timestamptz GENERATED ALWAYS AS (coalesce(departure_at, arrival_at)) STORED,
    status                 text GENERATED ALWAYS AS (
        CASE
            WHEN departure_at IS NOT NULL AND arrival_at IS NOT NULL THEN 'completed'
            WHEN departure_at IS NOT NULL THEN 'in_transit'
            WHEN arrival_at IS NOT NULL THEN 'arrived'
        END) STORED
);

--bun:split

-- One index per list filter, each ending in the keyset order, so no list scans the table.
CREATE INDEX movements_moved_at_idx ON movements (moved_at DESC, movement_id DESC);
--bun:split
CREATE INDEX movements_departure_wh_idx ON movements (departure_warehouse_id, moved_at DESC, movement_id DESC);
--bun:split
CREATE INDEX movements_arrival_wh_idx ON movements (arrival_warehouse_id, moved_at DESC, movement_id DESC);
--bun:split
CREATE INDEX movements_product_idx ON movements (product_id, moved_at DESC, movement_id DESC);
--bun:split
CREATE INDEX movements_status_idx ON movements (status, moved_at DESC, movement_id DESC);

--bun:split

-- stock: current quantity of each product at each warehouse; never negative.
CREATE TABLE stock (
    warehouse_id uuid        NOT NULL,
    product_id   uuid        NOT NULL,
    quantity     bigint      NOT NULL CHECK (quantity >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (warehouse_id, product_id)
);
