"""Migration 19 on both backends: a call's list is its own campaign's binding's; and 22,
PostgreSQL's lookup of that list kept planned (below).

A number exists once in `contacts`, whose `source` keeps the first importer's list, maybe
another campaign's: its name showed in this campaign's report.csv, and this campaign's calls
counted under it in report.json. Each campaign's own list is its binding's
(campaign_contacts.source); the contact's row counts only for a call with no binding in its
campaign. The kept counts (call_counts) and report.csv's block versions (call_chunks) follow a
binding made, renamed or removed. Each object is dropped first (IF EXISTS, OR REPLACE): a store
rolled back by hand migrates again. The counts are rebuilt from the calls, and every block
version is bumped (a block rendered before may name the other campaign's list).

22 (PostgreSQL; nothing changes on SQLite): the trigger's lookup of a call's list was a
LANGUAGE sql function with a FROM, which PostgreSQL neither inlines nor keeps a plan of from
one transaction to the next: each trigger firing parsed and planned it again, three times a
call. In PL/pgSQL its plan is kept for the session. Measured on the capacity bench's server
(pg_stat_user_functions, 2,000 calls, two runs): 158-223 µs of the server's time a lookup,
35 µs in PL/pgSQL; a trigger on a plain insert, each in its own transaction: ~110-150 µs more
than the PL/pgSQL one.

25 (both): a binding's name. A contact's `name` was the first list's that gave one, maybe
another party's, and the console's contacts page showed it to every campaign holding the
number. Each binding now keeps the name its own list gave (campaign_contacts.name; an import
fills it when empty, `ivr contacts share` copies the origin binding's). Existing bindings get the
contact's name only when their list is the one that created the contact (or a share of it,
the same list name): the others show none until their list is imported again. The contact's
own name stays, for the right of access and the erasure. The erasure's partial index of rows
with a '+' (schema 12) covers the new column.
"""
from __future__ import annotations

SQLITE_19 = """
    DROP TRIGGER IF EXISTS call_counts_insert;
    CREATE TRIGGER call_counts_insert AFTER INSERT ON calls BEGIN
        INSERT INTO call_counts_bump SELECT NEW.campaign, NEW.attempt, (SELECT
            ifnull(b.source, k.source) FROM contacts k LEFT JOIN campaign_contacts b ON
            b.contact_id = k.id AND b.campaign = NEW.campaign WHERE k.id = NEW.contact_id),
            NEW.outcome, 1;
    END;
    DROP TRIGGER IF EXISTS call_counts_update;
    CREATE TRIGGER call_counts_update AFTER UPDATE OF campaign, attempt, contact_id, outcome
        ON calls WHEN OLD.campaign IS NOT NEW.campaign OR OLD.attempt IS NOT NEW.attempt
        OR OLD.contact_id IS NOT NEW.contact_id OR OLD.outcome IS NOT NEW.outcome BEGIN
        INSERT INTO call_counts_bump SELECT OLD.campaign, OLD.attempt, (SELECT
            ifnull(b.source, k.source) FROM contacts k LEFT JOIN campaign_contacts b ON
            b.contact_id = k.id AND b.campaign = OLD.campaign WHERE k.id = OLD.contact_id),
            OLD.outcome, -1;
        INSERT INTO call_counts_bump SELECT NEW.campaign, NEW.attempt, (SELECT
            ifnull(b.source, k.source) FROM contacts k LEFT JOIN campaign_contacts b ON
            b.contact_id = k.id AND b.campaign = NEW.campaign WHERE k.id = NEW.contact_id),
            NEW.outcome, 1;
    END;
    DROP TRIGGER IF EXISTS call_counts_delete;
    CREATE TRIGGER call_counts_delete AFTER DELETE ON calls BEGIN
        INSERT INTO call_counts_bump SELECT OLD.campaign, OLD.attempt, (SELECT
            ifnull(b.source, k.source) FROM contacts k LEFT JOIN campaign_contacts b ON
            b.contact_id = k.id AND b.campaign = OLD.campaign WHERE k.id = OLD.contact_id),
            OLD.outcome, -1;
    END;
    -- The contact's own list: only its calls in campaigns without a binding of it.
    DROP TRIGGER IF EXISTS call_counts_contact_source;
    CREATE TRIGGER call_counts_contact_source AFTER UPDATE OF source ON contacts
        WHEN OLD.source IS NOT NEW.source BEGIN
        INSERT INTO call_counts_bump SELECT campaign, attempt, OLD.source, outcome, -COUNT(*)
            FROM calls c WHERE contact_id = NEW.id AND NOT EXISTS (SELECT 1 FROM
            campaign_contacts b WHERE b.contact_id = NEW.id AND b.campaign = c.campaign)
            GROUP BY campaign, attempt, outcome;
        INSERT INTO call_counts_bump SELECT campaign, attempt, NEW.source, outcome, COUNT(*)
            FROM calls c WHERE contact_id = NEW.id AND NOT EXISTS (SELECT 1 FROM
            campaign_contacts b WHERE b.contact_id = NEW.id AND b.campaign = c.campaign)
            GROUP BY campaign, attempt, outcome;
    END;
    DROP TRIGGER IF EXISTS call_counts_contact_gone;
    CREATE TRIGGER call_counts_contact_gone AFTER DELETE ON contacts BEGIN
        INSERT INTO call_counts_bump SELECT c.campaign, c.attempt, ifnull(b.source, OLD.source),
            c.outcome, -COUNT(*) FROM calls c LEFT JOIN campaign_contacts b ON b.contact_id =
            OLD.id AND b.campaign = c.campaign WHERE c.contact_id = OLD.id GROUP BY 1, 2, 3, 4;
        INSERT INTO call_counts_bump SELECT campaign, attempt, NULL, outcome, COUNT(*)
            FROM calls WHERE contact_id = OLD.id GROUP BY campaign, attempt, outcome;
    END;
    -- A binding made: its campaign's calls of the contact (if it still exists) leave the
    -- contact's list for the binding's; removed: the other way; changed: both.
    DROP TRIGGER IF EXISTS call_counts_bound;
    CREATE TRIGGER call_counts_bound AFTER INSERT ON campaign_contacts WHEN EXISTS (SELECT 1
        FROM calls WHERE contact_id = NEW.contact_id AND campaign = NEW.campaign) BEGIN
        INSERT INTO call_counts_bump SELECT c.campaign, c.attempt, k.source, c.outcome,
            -COUNT(*) FROM calls c JOIN contacts k ON k.id = c.contact_id WHERE c.contact_id =
            NEW.contact_id AND c.campaign = NEW.campaign GROUP BY 1, 2, 3, 4;
        INSERT INTO call_counts_bump SELECT c.campaign, c.attempt, NEW.source, c.outcome,
            COUNT(*) FROM calls c JOIN contacts k ON k.id = c.contact_id WHERE c.contact_id =
            NEW.contact_id AND c.campaign = NEW.campaign GROUP BY 1, 2, 3, 4;
        INSERT INTO call_chunks (campaign, block, version) SELECT DISTINCT campaign, id >> 13,
            1 FROM calls WHERE contact_id = NEW.contact_id AND campaign = NEW.campaign
            ON CONFLICT (campaign, block, slot) DO UPDATE SET version = version + 1;
    END;
    DROP TRIGGER IF EXISTS call_counts_unbound;
    CREATE TRIGGER call_counts_unbound AFTER DELETE ON campaign_contacts WHEN EXISTS (SELECT 1
        FROM calls WHERE contact_id = OLD.contact_id AND campaign = OLD.campaign) BEGIN
        INSERT INTO call_counts_bump SELECT c.campaign, c.attempt, OLD.source, c.outcome,
            -COUNT(*) FROM calls c JOIN contacts k ON k.id = c.contact_id WHERE c.contact_id =
            OLD.contact_id AND c.campaign = OLD.campaign GROUP BY 1, 2, 3, 4;
        INSERT INTO call_counts_bump SELECT c.campaign, c.attempt, k.source, c.outcome,
            COUNT(*) FROM calls c JOIN contacts k ON k.id = c.contact_id WHERE c.contact_id =
            OLD.contact_id AND c.campaign = OLD.campaign GROUP BY 1, 2, 3, 4;
        INSERT INTO call_chunks (campaign, block, version) SELECT DISTINCT campaign, id >> 13,
            1 FROM calls WHERE contact_id = OLD.contact_id AND campaign = OLD.campaign
            ON CONFLICT (campaign, block, slot) DO UPDATE SET version = version + 1;
    END;
    DROP TRIGGER IF EXISTS call_counts_rebound;  -- (contact_id, campaign): never changed
    CREATE TRIGGER call_counts_rebound AFTER UPDATE OF source ON campaign_contacts
        WHEN OLD.source IS NOT NEW.source BEGIN
        INSERT INTO call_counts_bump SELECT c.campaign, c.attempt, OLD.source, c.outcome,
            -COUNT(*) FROM calls c JOIN contacts k ON k.id = c.contact_id WHERE c.contact_id =
            NEW.contact_id AND c.campaign = NEW.campaign GROUP BY 1, 2, 3, 4;
        INSERT INTO call_counts_bump SELECT c.campaign, c.attempt, NEW.source, c.outcome,
            COUNT(*) FROM calls c JOIN contacts k ON k.id = c.contact_id WHERE c.contact_id =
            NEW.contact_id AND c.campaign = NEW.campaign GROUP BY 1, 2, 3, 4;
        INSERT INTO call_chunks (campaign, block, version) SELECT DISTINCT campaign, id >> 13,
            1 FROM calls WHERE contact_id = NEW.contact_id AND campaign = NEW.campaign
            ON CONFLICT (campaign, block, slot) DO UPDATE SET version = version + 1;
    END;
    DELETE FROM call_counts;
    INSERT INTO call_counts (campaign, attempt, source, outcome, n)
        SELECT c.campaign, c.attempt, ifnull(b.source, k.source), c.outcome, COUNT(*)
        FROM calls c LEFT JOIN contacts k ON k.id = c.contact_id LEFT JOIN campaign_contacts b
        ON b.contact_id = k.id AND b.campaign = c.campaign GROUP BY 1, 2, 3, 4;
    UPDATE call_chunks SET version = version + 1;
    PRAGMA user_version = 19
"""

# PostgreSQL: the functions the triggers on calls and contacts run are replaced; the bindings
# get their own. The contact's list (k.source) counts only while the contact exists (the join).
PG_19 = """
CREATE OR REPLACE FUNCTION call_source(call_campaign TEXT, contact BIGINT) RETURNS TEXT
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(b.source, k.source) FROM contacts k LEFT JOIN campaign_contacts b
        ON b.contact_id = k.id AND b.campaign = call_campaign WHERE k.id = contact
$$;
CREATE OR REPLACE FUNCTION call_counts_calls() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM call_counts_bump(OLD.campaign, OLD.attempt,
            call_source(OLD.campaign, OLD.contact_id), OLD.outcome, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM call_counts_bump(NEW.campaign, NEW.attempt,
            call_source(NEW.campaign, NEW.contact_id), NEW.outcome, 1);
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION call_counts_contacts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM call_counts_bump(campaign, attempt, OLD.source, outcome, -COUNT(*))
        FROM calls c WHERE contact_id = NEW.id AND NOT EXISTS (SELECT 1 FROM
        campaign_contacts b WHERE b.contact_id = NEW.id AND b.campaign = c.campaign)
        GROUP BY campaign, attempt, outcome;
    PERFORM call_counts_bump(campaign, attempt, NEW.source, outcome, COUNT(*))
        FROM calls c WHERE contact_id = NEW.id AND NOT EXISTS (SELECT 1 FROM
        campaign_contacts b WHERE b.contact_id = NEW.id AND b.campaign = c.campaign)
        GROUP BY campaign, attempt, outcome;
    RETURN NULL;
END $$;
-- A binding made, renamed or removed: its campaign's calls of the contact move between the
-- contact's list and the binding's ((contact_id, campaign), its key, is never changed).
CREATE OR REPLACE FUNCTION call_counts_bindings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN  -- the binding's list leaves, the contact's comes
        PERFORM call_counts_bump(c.campaign, c.attempt, OLD.source, c.outcome, -COUNT(*))
            FROM calls c JOIN contacts k ON k.id = c.contact_id WHERE c.contact_id =
            OLD.contact_id AND c.campaign = OLD.campaign
            GROUP BY c.campaign, c.attempt, c.outcome;
        PERFORM call_counts_bump(c.campaign, c.attempt, k.source, c.outcome, COUNT(*))
            FROM calls c JOIN contacts k ON k.id = c.contact_id WHERE c.contact_id =
            OLD.contact_id AND c.campaign = OLD.campaign
            GROUP BY c.campaign, c.attempt, k.source, c.outcome;
        PERFORM call_chunks_bump(x.campaign, x.block) FROM (SELECT DISTINCT campaign,
            id >> 13 AS block FROM calls WHERE contact_id = OLD.contact_id
            AND campaign = OLD.campaign) x;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN  -- the contact's list leaves, the binding's comes
        PERFORM call_counts_bump(c.campaign, c.attempt, k.source, c.outcome, -COUNT(*))
            FROM calls c JOIN contacts k ON k.id = c.contact_id WHERE c.contact_id =
            NEW.contact_id AND c.campaign = NEW.campaign
            GROUP BY c.campaign, c.attempt, k.source, c.outcome;
        PERFORM call_counts_bump(c.campaign, c.attempt, NEW.source, c.outcome, COUNT(*))
            FROM calls c JOIN contacts k ON k.id = c.contact_id WHERE c.contact_id =
            NEW.contact_id AND c.campaign = NEW.campaign
            GROUP BY c.campaign, c.attempt, c.outcome;
        PERFORM call_chunks_bump(x.campaign, x.block) FROM (SELECT DISTINCT campaign,
            id >> 13 AS block FROM calls WHERE contact_id = NEW.contact_id
            AND campaign = NEW.campaign) x;
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS call_counts_bound ON campaign_contacts;
CREATE TRIGGER call_counts_bound AFTER INSERT OR DELETE ON campaign_contacts
    FOR EACH ROW EXECUTE FUNCTION call_counts_bindings();
DROP TRIGGER IF EXISTS call_counts_rebound ON campaign_contacts;
CREATE TRIGGER call_counts_rebound AFTER UPDATE OF source ON campaign_contacts
    FOR EACH ROW WHEN (OLD.source IS DISTINCT FROM NEW.source)
    EXECUTE FUNCTION call_counts_bindings();
DELETE FROM call_counts;
INSERT INTO call_counts (campaign, attempt, source, outcome, n)
    SELECT c.campaign, c.attempt, COALESCE(b.source, k.source), c.outcome, COUNT(*)
    FROM calls c LEFT JOIN contacts k ON k.id = c.contact_id LEFT JOIN campaign_contacts b
    ON b.contact_id = k.id AND b.campaign = c.campaign GROUP BY 1, 2, 3, 4;
UPDATE call_chunks SET version = version + 1;
INSERT INTO schema_version (version, applied_at) VALUES (19, now()::text)
"""

PG_22 = """
CREATE OR REPLACE FUNCTION call_source(call_campaign TEXT, contact BIGINT) RETURNS TEXT
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT COALESCE(b.source, k.source) FROM contacts k LEFT JOIN campaign_contacts b
        ON b.contact_id = k.id AND b.campaign = call_campaign WHERE k.id = contact);
END $$;
-- An update that keeps the call's campaign and contact (its outcome written) looks its list
-- up once, not once for the old row and once for the new.
CREATE OR REPLACE FUNCTION call_counts_calls() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    src TEXT;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        src := call_source(OLD.campaign, OLD.contact_id);
        PERFORM call_counts_bump(OLD.campaign, OLD.attempt, src, OLD.outcome, -1);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (NEW.campaign IS DISTINCT FROM OLD.campaign
            OR NEW.contact_id IS DISTINCT FROM OLD.contact_id)) THEN
        src := call_source(NEW.campaign, NEW.contact_id);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM call_counts_bump(NEW.campaign, NEW.attempt, src, NEW.outcome, 1);
    END IF;
    RETURN NULL;
END $$;
INSERT INTO schema_version (version, applied_at) VALUES (22, now()::text)
"""

# 25: a binding's name (docstring). Backfilled from the contact only for its creating list,
# and only where empty: run again (a store rolled back by hand), it overwrites nothing; its
# ADD COLUMN is then skipped by SQLite's migrate (sqlite_core: no IF NOT EXISTS there).
SQLITE_25 = """
    ALTER TABLE campaign_contacts ADD COLUMN name TEXT;
    UPDATE campaign_contacts SET name = (SELECT k.name FROM contacts k WHERE
        k.id = campaign_contacts.contact_id AND k.source = campaign_contacts.source)
        WHERE name IS NULL AND EXISTS (SELECT 1 FROM contacts k WHERE
        k.id = campaign_contacts.contact_id AND
        k.source = campaign_contacts.source AND k.name IS NOT NULL);
    DROP INDEX IF EXISTS campaign_contacts_plus;
    CREATE INDEX campaign_contacts_plus ON campaign_contacts(contact_id) WHERE
        instr(campaign, '+') > 0 OR instr(source, '+') > 0 OR instr(basis, '+') > 0 OR
        instr(acquired_on, '+') > 0 OR instr(name, '+') > 0;
    PRAGMA user_version = 25
"""

PG_25 = """
ALTER TABLE campaign_contacts ADD COLUMN IF NOT EXISTS name TEXT;
UPDATE campaign_contacts b SET name = k.name FROM contacts k
    WHERE k.id = b.contact_id AND k.source = b.source AND k.name IS NOT NULL AND b.name IS NULL;
DROP INDEX IF EXISTS campaign_contacts_plus;
CREATE INDEX campaign_contacts_plus ON campaign_contacts(contact_id) WHERE
    strpos(campaign, '+') > 0 OR strpos(source, '+') > 0 OR strpos(basis, '+') > 0 OR
    strpos(acquired_on, '+') > 0 OR strpos(name, '+') > 0;
INSERT INTO schema_version (version, applied_at) VALUES (25, now()::text)
"""
