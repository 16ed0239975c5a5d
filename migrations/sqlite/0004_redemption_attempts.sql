-- Version 4: a used link records the attempt that used it, so that a redemption whose commit's
-- answer was lost can tell whether the link was used by it.
ALTER TABLE links ADD COLUMN used_by BLOB;
