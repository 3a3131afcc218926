-- PostgreSQL's twin of ../0003_elevenlabs.sql.
ALTER TABLE jobs ADD COLUMN result_json text NOT NULL DEFAULT '{}';

CREATE TABLE plans (
    id          text PRIMARY KEY,
    user_id     bigint NOT NULL,
    guild_id    bigint,
    channel_id  bigint,
    model_id    text NOT NULL,
    prompt      text NOT NULL,
    plan_json   text NOT NULL,
    message_id  bigint,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL
);
CREATE INDEX plans_user ON plans (user_id, created_at);
