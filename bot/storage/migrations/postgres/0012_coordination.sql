-- PostgreSQL's twin of ../0012_coordination.sql.
ALTER TABLE jobs ADD COLUMN claimed_by text;
ALTER TABLE jobs ADD COLUMN claimed_at double precision;
CREATE INDEX jobs_provider_unfinished ON jobs (provider, status, user_id, created_at)
    WHERE status IN ('queued', 'submitted', 'running');

CREATE TABLE queue_turns (
    provider text    NOT NULL,
    user_id  bigint  NOT NULL,
    served   integer NOT NULL,
    PRIMARY KEY (provider, user_id)
);

CREATE TABLE instances (
    id         text PRIMARY KEY,
    started_at double precision NOT NULL,
    seen_at    double precision NOT NULL
);

CREATE TABLE rate_limits (
    key        text PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at double precision NOT NULL
);
