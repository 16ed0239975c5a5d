-- Repository rosters (and repository lookups) one replica fetched from GitHub, shared with the replicas on this store, and
-- the invalidations that make them stale. A roster is served by another replica only while no
-- invalidation that covers it (scope `all`, its owner, or its repository) has a `seq` above the
-- roster's `seen` (the newest `seq` when its fetch began), only while `seen` is within the newest
-- 100,000 (older invalidations are pruned), and only within its lifetime counted from
-- `confirmed_at`. `started_at` is when its fetch began; times are milliseconds since the Unix
-- epoch. `roles` is JSON (`[[user_id, role, custom_name_or_null], ...]`), NULL where the roster
-- was refused or too large.
CREATE TABLE github_rosters (
    repo_id      INTEGER PRIMARY KEY,
    owner_id     INTEGER NOT NULL,
    least_role   TEXT NOT NULL,
    roles        TEXT,
    started_at   INTEGER NOT NULL,
    confirmed_at INTEGER NOT NULL,
    seen         INTEGER NOT NULL
);
CREATE INDEX github_rosters_by_age ON github_rosters (confirmed_at);
-- Which repository answers at some coordinates (lower case `owner/name`), likewise shared;
-- `repo_id` and `owner_id` NULL where nothing answers (then any repository's or owner's
-- invalidation makes it stale); `renamed` and `not_installed` are 0 or 1.
CREATE TABLE github_repos (
    coords        TEXT PRIMARY KEY,
    repo_id       INTEGER,
    owner_id      INTEGER,
    renamed       INTEGER NOT NULL,
    not_installed INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    confirmed_at  INTEGER NOT NULL,
    seen          INTEGER NOT NULL
);
CREATE INDEX github_repos_by_age ON github_repos (confirmed_at);
CREATE TABLE fact_invalidations (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    id    INTEGER NOT NULL
);
