-- PostgreSQL's twin of ../0005_guild_settings.sql.
CREATE TABLE guild_settings (
    guild_id      bigint PRIMARY KEY,
    settings_json text NOT NULL,
    updated_at    double precision NOT NULL,
    updated_by    bigint NOT NULL
);
