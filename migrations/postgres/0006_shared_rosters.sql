-- Repository rosters one replica fetched from GitHub, shared with the replicas on this store, and
-- the invalidations that make them stale. A roster is served by another replica only while no
-- invalidation that covers it (scope `all`, its owner, or its repository) has a `seq` above the
-- roster's `seen` (the newest `seq` when its fetch began), and only within its lifetime counted
-- from `confirmed_at`; `started_at` is when its fetch began (milliseconds since the Unix epoch). `roles` is JSON
-- (`[[user_id, role, custom_name_or_null], ...]`), NULL where the roster was refused or too large.
CREATE TABLE github_rosters (
    repo_id      BIGINT PRIMARY KEY,
    owner_id     BIGINT NOT NULL,
    least_role   TEXT NOT NULL,
    roles        TEXT,
    started_at   BIGINT NOT NULL,
    confirmed_at BIGINT NOT NULL,
    seen         BIGINT NOT NULL
);
CREATE TABLE fact_invalidations (
    seq   BIGSERIAL PRIMARY KEY,
    scope TEXT NOT NULL,
    id    BIGINT NOT NULL
);
