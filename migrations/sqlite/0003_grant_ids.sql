-- Version 3: every invitation is a grant with an id of its own, never reused (AUTOINCREMENT), and
-- a link records the grant it was issued under; a change log carries changes to apps and grants
-- to every process that has the file open.
CREATE TABLE viewers_v3 (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id   TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    email    TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    UNIQUE (app_id, email)
);
INSERT INTO viewers_v3 (app_id, email, added_at)
    SELECT app_id, email, added_at FROM viewers ORDER BY added_at, app_id, email;
DROP TABLE viewers;
ALTER TABLE viewers_v3 RENAME TO viewers;

-- A link needed a live grant when it was issued, so a link issued at or after the current grant
-- was added, and not followed by a removal of that address, belongs to it; any other belongs to
-- a grant that has since ended (NULL: revoked). The audit log's removals settle a removal and a
-- re-invitation within one millisecond, or across replicas' clocks.
ALTER TABLE links ADD COLUMN grant_id INTEGER;
UPDATE links SET grant_id = (
    SELECT v.id FROM viewers v
    WHERE v.app_id = links.app_id AND v.email = links.email AND links.issued_at >= v.added_at
      AND NOT EXISTS (
          SELECT 1 FROM audit a
          WHERE a.app_id = links.app_id AND a.email = links.email AND a.action = 'viewer_removed'
            AND a.at >= links.issued_at
      )
);
CREATE INDEX links_grant ON links (grant_id);

CREATE TABLE changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    at   INTEGER NOT NULL,
    body TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('changes_pruned_through', '0');
