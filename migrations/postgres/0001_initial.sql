-- ghauthz store, version 1: apps, viewer grants, links, the audit log, deleted-app records and
-- webhook deliveries. Times are milliseconds since the Unix epoch.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE apps (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    repo        TEXT NOT NULL,
    repo_id     BIGINT NOT NULL,
    branch      TEXT NOT NULL,
    main_file   TEXT NOT NULL,
    visibility  TEXT NOT NULL CHECK (visibility IN ('public', 'private')),
    deployed_by BIGINT NOT NULL
);
CREATE INDEX apps_deployed_by ON apps (deployed_by);

CREATE TABLE viewers (
    app_id   TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    email    TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, email)
);

CREATE TABLE audit (
    seq    BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    app_id TEXT NOT NULL,
    action TEXT NOT NULL,
    email  TEXT
);
CREATE INDEX audit_app ON audit (app_id);

CREATE TABLE links (
    hash       BYTEA PRIMARY KEY CHECK (length(hash) = 32),
    app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX links_by_grant ON links (app_id, email, issued_at);

CREATE TABLE deleted_apps (
    owner       TEXT NOT NULL,
    repo        TEXT NOT NULL,
    branch      TEXT NOT NULL,
    main_file   TEXT NOT NULL,
    deployed_by BIGINT NOT NULL,
    UNIQUE (owner, repo, branch, main_file, deployed_by)
);

CREATE TABLE deliveries (
    id      TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
CREATE INDEX deliveries_seen_at ON deliveries (seen_at);
