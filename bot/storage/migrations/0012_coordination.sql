-- Coordination between Encore processes sharing one database (docs/ARCHITECTURE.md, "Several processes").
--
-- A queued job's turn: claimed_at is when a process's scheduler gave it its turn (NULL: it waits), claimed_by
-- that process (an instance id, see `instances`). A queued job with a claim is being started at its provider and
-- counts against the provider's cap, as submitted and running jobs do. A terminal run (`python -m bot generate`)
-- stamps its own jobs with its id while they wait: only it starts them. A claim whose process is gone is taken
-- over by another.
ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
ALTER TABLE jobs ADD COLUMN claimed_at REAL;
-- The scheduler's questions: what waits and what runs, per provider and person.
CREATE INDEX jobs_provider_unfinished ON jobs (provider, status, user_id, created_at)
    WHERE status IN ('queued', 'submitted', 'running');

-- The fair scheduler's turns: how many jobs each person has started at a provider since they last had nothing
-- waiting or running there (the least served goes next). A row goes when its person has nothing unfinished.
CREATE TABLE queue_turns (
    provider TEXT    NOT NULL,
    user_id  INTEGER NOT NULL,
    served   INTEGER NOT NULL,
    PRIMARY KEY (provider, user_id)
);

-- Encore processes (instances) and when each was last heard from, by the database's clock: one that has not
-- been heard from within [jobs] process_timeout_s is gone, and its claims are taken over.
CREATE TABLE instances (
    id         TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    seen_at    REAL NOT NULL
);

-- Rate limits shared by every process (a provider's per-account limits): a token bucket a row, spent and
-- refilled by one conditional UPDATE, by the database's clock.
CREATE TABLE rate_limits (
    key        TEXT PRIMARY KEY,
    tokens     REAL NOT NULL,
    updated_at REAL NOT NULL
);
