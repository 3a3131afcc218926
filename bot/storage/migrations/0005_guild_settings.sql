-- What each guild's admins have set with /musicadmin (over the config's defaults).
CREATE TABLE guild_settings (
    guild_id      INTEGER PRIMARY KEY,
    settings_json TEXT NOT NULL,
    updated_at    REAL NOT NULL,
    updated_by    INTEGER NOT NULL
);
