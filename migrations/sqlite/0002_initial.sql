-- ghauthz SQLite store, version 2: apps, viewer grants, links, the audit log, deleted-app records
-- and webhook deliveries. Times are milliseconds since the Unix epoch. Every statement is
-- idempotent, so that processes opening one file at once cannot trip over each other, and a
-- version-1 store (without `deliveries`) is brought to version 2. Later versions are the files
-- numbered after this one, each run once, in a write transaction.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS apps (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    repo        TEXT NOT NULL,
    repo_id     INTEGER NOT NULL,
    branch      TEXT NOT NULL,
    main_file   TEXT NOT NULL,
    visibility  TEXT NOT NULL CHECK (visibility IN ('public', 'private')),
    deployed_by INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS apps_deployed_by ON apps (deployed_by);
CREATE TABLE IF NOT EXISTS viewers (
    app_id   TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    email    TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, email)
);
CREATE TABLE IF NOT EXISTS audit (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    app_id TEXT NOT NULL,
    action TEXT NOT NULL,
    email  TEXT
);
CREATE TABLE IF NOT EXISTS links (
    hash       BLOB PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX IF NOT EXISTS links_by_grant ON links (app_id, email, issued_at);
CREATE TABLE IF NOT EXISTS deleted_apps (
    owner       TEXT NOT NULL,
    repo        TEXT NOT NULL,
    branch      TEXT NOT NULL,
    main_file   TEXT NOT NULL,
    deployed_by INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS deleted_apps_once ON deleted_apps (owner, repo, branch, main_file, deployed_by);
CREATE TABLE IF NOT EXISTS deliveries (
    id      TEXT PRIMARY KEY,
    seen_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_seen_at ON deliveries (seen_at);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '2');
UPDATE meta SET value = '2' WHERE key = 'schema_version' AND value = '1';
