-- ghauthz SQLite store, version 5: audit entries carry their outcome (`allowed` or `denied`), a
-- detail that is never personal, and the GitHub identity they belong to (the app's deployer), so
-- that deleting an account removes its entries. Entries written before belong to their app's
-- deployer; an app's deletion now keeps its entries without their addresses.
ALTER TABLE audit ADD COLUMN outcome TEXT NOT NULL DEFAULT 'allowed';
ALTER TABLE audit ADD COLUMN detail TEXT;
ALTER TABLE audit ADD COLUMN owner_id INTEGER;
UPDATE audit SET owner_id = (SELECT deployed_by FROM apps WHERE apps.id = audit.app_id);
CREATE INDEX audit_by_app ON audit (app_id, seq);
CREATE INDEX audit_by_owner ON audit (owner_id);
