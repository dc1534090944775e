-- Enqueueing a batch pages through its requests that have no job yet, in
-- id order; this index serves each page directly (rows leave it as they
-- are enqueued), where the batch index made every page sort the batch.
CREATE INDEX requests_batch_unqueued ON requests(batch_id, id)
    WHERE enqueued = 0 AND outcome IS NULL;
