-- ghauthz SQLite store, version 6: support windows, opened by someone who may edit an app so that
-- the platform's support staff (or one agent) may view or edit it until `ends_at`. Capabilities
-- are a comma-separated list of `view` and `edit`; times are milliseconds since the Unix epoch.
CREATE TABLE support_windows (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id       TEXT NOT NULL REFERENCES apps (id),
    agent        TEXT,
    capabilities TEXT NOT NULL,
    opened_at    INTEGER NOT NULL,
    ends_at      INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    granted_by   TEXT NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX support_windows_by_app ON support_windows (app_id);
