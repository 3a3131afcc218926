-- Each person's own defaults (/music prefer), the same in every server; a server's rules narrow them where
-- they generate. NULL: no preference (the server's or the model's default).
CREATE TABLE user_preferences (
    user_id    INTEGER PRIMARY KEY,
    model      TEXT,
    duration_s INTEGER CHECK (duration_s BETWEEN 1 AND 600),
    format     TEXT CHECK (format IN ('wav', 'mp3', 'opus')),
    count      INTEGER CHECK (count BETWEEN 1 AND 4),
    updated_at REAL NOT NULL
);
