-- PostgreSQL's twin of ../0012_leases.sql.
CREATE TABLE leases (
    kind       text             NOT NULL,
    key        text             NOT NULL,
    holder     text             NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX leases_holder ON leases (holder);
