-- PostgreSQL's twin of ../0009_voice_messages.sql.
CREATE TABLE voice_messages (
    job_id     text PRIMARY KEY REFERENCES jobs (id),
    claimed_at double precision NOT NULL,
    channel_id bigint,
    message_id bigint,
    posted_at  double precision
);
