-- PostgreSQL's twin of ../0001_jobs.sql (same tables, columns and indexes; the two must move together).
-- Types: Unix epoch seconds are double precision (SQLite's REAL), Discord snowflakes, sizes and seeds bigint,
-- counters integer. JSON stays text, exactly the bytes Encore wrote (as in SQLite): no second parser between
-- the repositories and their data, and escapes jsonb refuses (\u0000) are kept; the few queries that look inside
-- parse it with ::json (see bot/storage/sql.py), and 0007 indexes the one lookup that needs it.
CREATE TABLE jobs (
    id                  text PRIMARY KEY,
    user_id             bigint NOT NULL,
    guild_id            bigint,
    channel_id          bigint,
    interaction_id      bigint UNIQUE,
    token_expires_at    double precision,
    card_message_id     bigint,
    provider            text NOT NULL,
    model               text NOT NULL,
    model_ref           text NOT NULL,
    request_json        text NOT NULL,
    input_json          text NOT NULL,
    prediction_id       text UNIQUE,
    status              text NOT NULL CHECK (status IN (
                            'queued', 'submitted', 'running', 'succeeded',
                            'delivered', 'failed', 'canceled')),
    created_at          double precision NOT NULL,
    updated_at          double precision NOT NULL,
    submitted_at        double precision,
    running_at          double precision,
    succeeded_at        double precision,
    delivered_at        double precision,
    failed_at           double precision,
    canceled_at         double precision,
    attempts            integer NOT NULL DEFAULT 0,
    delivery_attempts   integer NOT NULL DEFAULT 0,
    error               text,
    output_path         text,
    output_size         bigint,
    output_content_type text,
    delivery_message_id bigint,
    seed                bigint,
    predict_time_s      double precision,
    total_time_s        double precision
);

CREATE INDEX jobs_active ON jobs (status) WHERE status NOT IN ('delivered', 'failed', 'canceled');
CREATE INDEX jobs_user_created ON jobs (user_id, created_at);

-- Webhook ids already handled, to drop redeliveries.
CREATE TABLE webhook_events (
    webhook_id  text PRIMARY KEY,
    received_at double precision NOT NULL
);
CREATE INDEX webhook_events_received ON webhook_events (received_at);
