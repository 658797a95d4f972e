-- Filtered reads of the global log: the events of some names, in global order, found through
-- this index name by name (a reader of rare events does not scan the others). On a
-- partitioned events table it is a partitioned index, one per partition.
CREATE INDEX events_by_name ON {schema}.events (name, transaction_id, sequence);
