-- Each job's cost in US dollars: estimated when it is queued, the actual figure once it has run.
ALTER TABLE jobs ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
CREATE INDEX jobs_guild_created ON jobs (guild_id, created_at);
CREATE INDEX jobs_created ON jobs (created_at);
