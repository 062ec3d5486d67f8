-- Access keys. The secret key is sealed with the service's master key (AES-256-GCM).
CREATE TABLE credentials (
    access_key       TEXT PRIMARY KEY,
    secret_sealed    BYTEA NOT NULL,
    project_id       TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    user_name        TEXT NOT NULL,
    role             TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    revoked_at       BIGINT,
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    locked_until     BIGINT
);

-- Who did what: one row per authenticated mutating request.
CREATE TABLE audit_events (
    seq          BIGSERIAL PRIMARY KEY,
    at           BIGINT NOT NULL,
    request_id   TEXT NOT NULL,
    project_id   TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    user_name    TEXT NOT NULL,
    access_key   TEXT,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    status       INTEGER NOT NULL,
    detail       TEXT
);
CREATE INDEX audit_by_project ON audit_events (project_id, at);
CREATE INDEX audit_by_time ON audit_events (at);
