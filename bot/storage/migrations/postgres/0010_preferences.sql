-- PostgreSQL's twin of ../0010_preferences.sql.
CREATE TABLE user_preferences (
    user_id    bigint PRIMARY KEY,
    model      text,
    duration_s integer CHECK (duration_s BETWEEN 1 AND 600),
    format     text CHECK (format IN ('wav', 'mp3', 'opus')),
    count      integer CHECK (count BETWEEN 1 AND 4),
    updated_at double precision NOT NULL
);
