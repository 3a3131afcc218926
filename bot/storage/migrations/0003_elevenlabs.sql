-- What a provider returns besides the audio: song metadata, a composition plan, stem files.
ALTER TABLE jobs ADD COLUMN result_json TEXT NOT NULL DEFAULT '{}';

-- Composition plans people edit before composing (ElevenLabs Music). A song made from a plan keeps
-- a copy of it in its job, so "compose again with changes" works later too.
CREATE TABLE plans (
    id          TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    guild_id    INTEGER,
    channel_id  INTEGER,
    model_id    TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    plan_json   TEXT NOT NULL,
    message_id  INTEGER,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX plans_user ON plans (user_id, created_at);
