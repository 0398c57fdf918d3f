-- Restores the unique key on the events' (movement_id, event); it fails if the ledger
-- holds two events for one leg of a movement, which the write path never stores.
ALTER TABLE events ADD CONSTRAINT events_movement_event_key UNIQUE (movement_id, event);
