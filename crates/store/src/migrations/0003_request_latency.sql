-- Schema 3: latencies of requests to servers (null for the embedded engine's offline batches,
-- whose requests have no first token apart from their batch).
ALTER TABLE requests ADD COLUMN ttft_s REAL;
ALTER TABLE requests ADD COLUMN tpot_s REAL;
