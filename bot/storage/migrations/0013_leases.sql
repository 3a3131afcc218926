-- Leases: which process does what to a job, when several share one database (issue 14). A row is held by one
-- process (holder: an id it made at its start) until expires_at (Unix time); the holder renews it while it works,
-- and another process may take it once it has expired (the holder died). Taken and renewed by one conditional
-- upsert each (bot/storage/leases_repo.py). Kinds: 'poll' (key: a job id, whose prediction the holder polls),
-- 'fetch' (a job id, whose output the holder fetches), 'deliver' (a card: a job id or a batch id, which the
-- holder delivers), 'call' (a job id, whose long call the holder makes).
CREATE TABLE leases (
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
-- A process's own leases (renewed together, given up at a clean stop).
CREATE INDEX leases_holder ON leases (holder);
