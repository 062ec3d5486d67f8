-- Access keys. The secret key is sealed with the service's master key (AES-256-GCM).
CREATE TABLE credentials (
    access_key       TEXT PRIMARY KEY,
    secret_sealed    BLOB NOT NULL,
    project_id       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    user_name        TEXT NOT NULL,
    role             TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    revoked_at       INTEGER,
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    locked_until     INTEGER
) STRICT;

-- Who did what: one row per authenticated mutating request.
CREATE TABLE audit_events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    request_id   TEXT NOT NULL,
    project_id   TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    user_name    TEXT NOT NULL,
    access_key   TEXT,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    status       INTEGER NOT NULL,
    detail       TEXT
) STRICT;
CREATE INDEX audit_by_project ON audit_events (project_id, at);
CREATE INDEX audit_by_time ON audit_events (at);
