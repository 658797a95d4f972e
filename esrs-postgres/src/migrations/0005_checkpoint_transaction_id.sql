-- A checkpoint's parts are named like the events table's columns they point into: the
-- writing transaction's id and the event's sequence number.
ALTER TABLE {schema}.checkpoints RENAME COLUMN commit TO transaction_id;
