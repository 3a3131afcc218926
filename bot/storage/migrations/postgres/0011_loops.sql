-- PostgreSQL's twin of ../0011_loops.sql.
CREATE TABLE loops (
    job_id     text             NOT NULL REFERENCES jobs (id),
    bars       integer          NOT NULL,
    channel_id bigint           NOT NULL,
    user_id    bigint           NOT NULL,
    token      text             NOT NULL,
    claimed_at double precision NOT NULL,
    message_id bigint,
    guild_id   bigint,
    PRIMARY KEY (job_id, bars, channel_id)
);
CREATE INDEX loops_user ON loops (user_id, claimed_at);
