-- PostgreSQL's twin of ../0004_costs.sql.
ALTER TABLE jobs ADD COLUMN cost_usd double precision NOT NULL DEFAULT 0;
CREATE INDEX jobs_guild_created ON jobs (guild_id, created_at);
CREATE INDEX jobs_created ON jobs (created_at);
