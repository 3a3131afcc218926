-- PostgreSQL's twin of ../0008_bot_state.sql.
CREATE TABLE bot_state (
    key        text PRIMARY KEY,
    value      text NOT NULL,
    updated_at double precision NOT NULL
);
