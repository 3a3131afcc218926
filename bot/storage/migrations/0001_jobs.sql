-- Jobs: one row per generation request, from the command to the delivered message.
-- Times are Unix epoch seconds (REAL). Discord ids are INTEGER snowflakes.
CREATE TABLE jobs (
    id                  TEXT PRIMARY KEY,
    user_id             INTEGER NOT NULL,
    guild_id            INTEGER,
    channel_id          INTEGER,
    interaction_id      INTEGER UNIQUE,
    token_expires_at    REAL,
    card_message_id     INTEGER,
    provider            TEXT NOT NULL,
    model               TEXT NOT NULL,
    model_ref           TEXT NOT NULL,
    request_json        TEXT NOT NULL,
    input_json          TEXT NOT NULL,
    prediction_id       TEXT UNIQUE,
    status              TEXT NOT NULL CHECK (status IN (
                            'queued', 'submitted', 'running', 'succeeded',
                            'delivered', 'failed', 'canceled')),
    created_at          REAL NOT NULL,
    updated_at          REAL NOT NULL,
    submitted_at        REAL,
    running_at          REAL,
    succeeded_at        REAL,
    delivered_at        REAL,
    failed_at           REAL,
    canceled_at         REAL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    delivery_attempts   INTEGER NOT NULL DEFAULT 0,
    error               TEXT,
    output_path         TEXT,
    output_size         INTEGER,
    output_content_type TEXT,
    delivery_message_id INTEGER,
    seed                INTEGER,
    predict_time_s      REAL,
    total_time_s        REAL
);

CREATE INDEX jobs_active ON jobs (status) WHERE status NOT IN ('delivered', 'failed', 'canceled');
CREATE INDEX jobs_user_created ON jobs (user_id, created_at);

-- Webhook ids already handled, to drop redeliveries.
CREATE TABLE webhook_events (
    webhook_id  TEXT PRIMARY KEY,
    received_at REAL NOT NULL
);
CREATE INDEX webhook_events_received ON webhook_events (received_at);
