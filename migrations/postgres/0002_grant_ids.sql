-- Version 2: every invitation is a grant with an id of its own, never reused (a sequence), and a
-- link records the grant it was issued under.
ALTER TABLE viewers ADD COLUMN id BIGSERIAL;
ALTER TABLE viewers ADD CONSTRAINT viewers_id_key UNIQUE (id);

-- A link needed a live grant when it was issued, so a link issued at or after the current grant
-- was added, and not followed by a removal of that address, belongs to it; any other belongs to
-- a grant that has since ended (NULL: revoked). The audit log's removals settle a removal and a
-- re-invitation within one millisecond, or across replicas' clocks.
ALTER TABLE links ADD COLUMN grant_id BIGINT;
UPDATE links SET grant_id = v.id
    FROM viewers v
    WHERE v.app_id = links.app_id AND v.email = links.email AND links.issued_at >= v.added_at
      AND NOT EXISTS (
          SELECT 1 FROM audit a
          WHERE a.app_id = links.app_id AND a.email = links.email AND a.action = 'viewer_removed'
            AND a.at >= links.issued_at
      );
CREATE INDEX links_grant ON links (grant_id);
