-- Voice messages Encore posted of finished tracks (Play on phone, or a server's setting): at most one per job.
-- A row is claimed before the file is made and posted, so a double click, two processes or a retry never post
-- a track twice; message_id is set once it is posted, and a claim whose post failed is removed again.
CREATE TABLE voice_messages (
    job_id     TEXT PRIMARY KEY REFERENCES jobs (id),
    claimed_at REAL NOT NULL,
    channel_id INTEGER,
    message_id INTEGER,
    posted_at  REAL
);
