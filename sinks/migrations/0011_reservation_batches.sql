-- reservations.v1 records may hold a batch of answers (one inventory step's for one partition): a row is
-- identified by its record's position and its place in the record.
ALTER TABLE reservations ADD COLUMN IF NOT EXISTS src_index UInt32 AFTER src_offset, MODIFY ORDER BY (src_partition, src_offset, src_index)
