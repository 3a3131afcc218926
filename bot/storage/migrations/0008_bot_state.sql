-- What the bot itself must remember across restarts, one row a fact: whether its operator paused new jobs
-- ("paused"), and the command set last synced to Discord ("commands:<application id>:<scope>", a hash).
CREATE TABLE bot_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
