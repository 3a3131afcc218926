-- Loops made of delivered tracks (Make it loop, and the `loop` option of /music generate): each loop of a track
-- (its length in bars, in one channel) is made once. A row claims it while it is made (message_id NULL; a claim
-- older than a few minutes is abandoned and may be taken again) and then says where it was posted, so a second
-- click, a double click included, is shown that message instead of posting the loop again.
CREATE TABLE loops (
    job_id     TEXT    NOT NULL REFERENCES jobs (id),
    bars       INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    token      TEXT    NOT NULL,
    claimed_at REAL    NOT NULL,
    message_id INTEGER,
    guild_id   INTEGER,
    PRIMARY KEY (job_id, bars, channel_id)
);
-- How many loops a person made in the last hour ([limits] user_loops_per_hour).
CREATE INDEX loops_user ON loops (user_id, claimed_at);
