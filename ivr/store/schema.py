"""The SQLite schema, as numbered migrations. Each one ends by writing its own version number, so
no statement is ever built at run time (PRAGMA takes no parameters).
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from ivr.store.schema_lists import SQLITE_19, SQLITE_25


def statements(script: str) -> Iterator[str]:
    """A migration's statements one by one: split at each ';' that ends a whole statement
    (a trigger's body holds several)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending.strip()
            pending = ""

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE contacts (
        id INTEGER PRIMARY KEY,
        number TEXT NOT NULL UNIQUE,           -- E.164
        name TEXT, timezone TEXT,
        source TEXT NOT NULL,                  -- list name (provenance)
        basis TEXT, acquired_on TEXT,          -- acquisition basis and date
        extra TEXT NOT NULL DEFAULT '{}',      -- other CSV columns, JSON
        status TEXT NOT NULL DEFAULT 'pending',
        slot TEXT,                             -- preferred calling slot from a consent
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL
    );
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY,
        contact_id INTEGER REFERENCES contacts(id),
        number TEXT NOT NULL, attempt INTEGER NOT NULL, campaign TEXT NOT NULL,
        caller_id TEXT, channel_id TEXT UNIQUE,
        state TEXT NOT NULL DEFAULT 'created', -- created, dialing, answered, ended
        started_at TEXT NOT NULL, answered_at TEXT, ended_at TEXT,
        outcome TEXT, stage TEXT, keys TEXT NOT NULL DEFAULT '',
        hangup_cause TEXT, amd_status TEXT,
        prompts_sha256 TEXT NOT NULL DEFAULT '{}',  -- prompt key -> sha256, played to the end
        retry_at TEXT
    );
    CREATE INDEX calls_number ON calls(number);
    CREATE INDEX calls_contact ON calls(contact_id);
    CREATE TABLE optouts (
        id INTEGER PRIMARY KEY,
        number_hash TEXT NOT NULL UNIQUE,      -- HMAC-SHA256: survives erasure of the number
        number TEXT,                           -- cleared by `ivr gdpr erase`
        via TEXT NOT NULL, campaign TEXT, created_at TEXT NOT NULL
    );
    CREATE TABLE consents (
        id INTEGER PRIMARY KEY,
        call_id INTEGER REFERENCES calls(id), contact_id INTEGER, number TEXT,
        kind TEXT NOT NULL,                    -- consent, refusal, optout
        key TEXT, at TEXT NOT NULL, caller_id TEXT, campaign TEXT,
        prompt_key TEXT, prompt_sha256 TEXT, slot TEXT
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY, at TEXT NOT NULL, action TEXT NOT NULL,
        subject_hash TEXT, detail TEXT
    );
    PRAGMA user_version = 1
    """,
    # 2: the PBX node that placed each call (reconciliation settles only its own node's calls)
    """
    ALTER TABLE calls ADD COLUMN node TEXT;
    PRAGMA user_version = 2
    """,
    # 3: the SHA-256 of the attempt's FastAGI token (never the token); cleared once spent
    """
    ALTER TABLE calls ADD COLUMN token_hash TEXT;
    PRAGMA user_version = 3
    """,
    # 4: proof of consent: every prompt the person heard (key -> sha256, JSON), the AMD
    # status and when the call was answered, on the consent row itself
    """
    ALTER TABLE consents ADD COLUMN heard_sha256 TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE consents ADD COLUMN amd_status TEXT;
    ALTER TABLE consents ADD COLUMN answered_at TEXT;
    PRAGMA user_version = 4
    """,
    # 5: lists belong to campaigns. A contact (one number) may be bound to several campaigns,
    # each binding with its own provenance and progress. Existing contacts are bound to every
    # campaign that already called them; the others stay unbound (no run calls them until
    # `ivr contacts share` binds their list).
    """
    CREATE TABLE campaign_contacts (
        contact_id INTEGER NOT NULL REFERENCES contacts(id),
        campaign TEXT NOT NULL,
        source TEXT NOT NULL, basis TEXT, acquired_on TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        bound_at TEXT NOT NULL,
        PRIMARY KEY (contact_id, campaign)
    );
    CREATE INDEX campaign_contacts_campaign ON campaign_contacts(campaign, status);
    INSERT INTO campaign_contacts (contact_id, campaign, source, basis, acquired_on, status,
                                   bound_at)
        SELECT DISTINCT k.id, c.campaign, k.source, k.basis, k.acquired_on, k.status,
               k.created_at
        FROM contacts k JOIN calls c ON c.contact_id = k.id;
    PRAGMA user_version = 5
    """,
    # 6: several controllers on one store (PostgreSQL shares a campaign's work between them):
    # each heartbeats into `controllers`; an attempt names the controller that placed it, so
    # another can settle it once that controller's lease has expired.
    """
    ALTER TABLE calls ADD COLUMN controller TEXT;
    CREATE TABLE controllers (
        id TEXT PRIMARY KEY,                   -- random, one per `ivr run` process
        campaign TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
        started_at TEXT NOT NULL, heartbeat_at TEXT NOT NULL,
        lease_s REAL NOT NULL,                 -- dead once heartbeat_at + lease_s has passed
        stopped_at TEXT
    );
    CREATE INDEX calls_controller ON calls(controller);
    PRAGMA user_version = 6
    """,
    # 7: the web console. A run's desired state and pacing are rows the controllers read every
    # tick, and each controller publishes its run-state snapshot here: the console never
    # reaches into a controller. Users, their API tokens (hashes only), and the audit's actor.
    """
    CREATE TABLE run_control (
        campaign TEXT PRIMARY KEY,
        desired TEXT NOT NULL DEFAULT 'running', -- running, paused, stopped, hard_stop
        max_concurrent INTEGER, calls_per_second REAL, -- NULL: the config's values
        updated_at TEXT NOT NULL, updated_by TEXT
    );
    CREATE TABLE run_snapshots (
        campaign TEXT NOT NULL, controller TEXT NOT NULL,
        at TEXT NOT NULL, snapshot TEXT NOT NULL,  -- JSON of campaign.state.Snapshot
        PRIMARY KEY (campaign, controller)
    );
    CREATE TABLE users (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,                    -- admin, operator, viewer
        password_hash TEXT NOT NULL,           -- argon2id
        created_at TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
        token_hash TEXT NOT NULL UNIQUE,       -- SHA-256 of the token, never the token
        created_at TEXT NOT NULL, last_used_at TEXT
    );
    ALTER TABLE audit ADD COLUMN actor TEXT;   -- the console user or API token's user
    CREATE INDEX calls_campaign ON calls(campaign, id);
    PRAGMA user_version = 7
    """,
    # 8: consents found by call (the answer time corrects the proof) and by number (each claim
    # reads the number's last refusal): without these, both walked every consent row, and a
    # store with 100,000 past attempts cost 7.3 ms of controller CPU per call instead of 1
    # (bench/bench_capacity.py --history 100000)
    """
    CREATE INDEX consents_call ON consents(call_id);
    CREATE INDEX consents_number ON consents(number);
    PRAGMA user_version = 8
    """,
    # 9: the console's contacts page walks a campaign's bindings in contact order: without
    # this it sorted every binding of the campaign for each page (330 ms p99 over 100,000)
    """
    CREATE INDEX campaign_contacts_order ON campaign_contacts(campaign, contact_id);
    PRAGMA user_version = 9
    """,
    # 10: the report's call counts, kept by triggers (the console's report.json is computed
    # afresh after every commit of a run: counting 300,000 calls joined to their contacts took
    # 0.5 s). One row per (campaign, attempt, the contact's list, outcome): source NULL for a
    # call without a contact, outcome NULL while in flight; `slot` is 0 here (PostgreSQL: the
    # writing backend, so concurrent writers never share a row). A row is bumped through the
    # view call_counts_bump (its INSTEAD OF trigger: add to the row, or create it; inside a
    # trigger, changes() counts the trigger's own last statement). They cost a call's claim and
    # settlement ~50 % more SQLite VM steps (530 -> 740), ~0.05 ms of CPU. The
    # indexes: the report's contact counts read the bindings' (source, status) from an index,
    # and only the opposed contacts' bindings are joined.
    """
    CREATE TABLE call_counts (
        campaign TEXT NOT NULL, attempt INTEGER NOT NULL,
        source TEXT,                           -- the contact's list; NULL: no contact
        outcome TEXT,                          -- NULL: in flight
        slot INTEGER NOT NULL DEFAULT 0,
        n INTEGER NOT NULL
    );
    CREATE INDEX call_counts_key ON call_counts(campaign, attempt, outcome, source);
    CREATE VIEW call_counts_bump AS
        SELECT campaign, attempt, source, outcome, n AS d FROM call_counts;
    CREATE TRIGGER call_counts_add INSTEAD OF INSERT ON call_counts_bump BEGIN
        UPDATE call_counts SET n = n + NEW.d WHERE campaign = NEW.campaign
            AND attempt = NEW.attempt AND outcome IS NEW.outcome AND source IS NEW.source;
        INSERT INTO call_counts (campaign, attempt, source, outcome, n)
            SELECT NEW.campaign, NEW.attempt, NEW.source, NEW.outcome, NEW.d
            WHERE changes() = 0;           -- the UPDATE just above found no row
    END;
    CREATE TRIGGER call_counts_insert AFTER INSERT ON calls BEGIN
        INSERT INTO call_counts_bump SELECT NEW.campaign, NEW.attempt,
            (SELECT source FROM contacts WHERE id = NEW.contact_id), NEW.outcome, 1;
    END;
    CREATE TRIGGER call_counts_update AFTER UPDATE OF campaign, attempt, contact_id, outcome
        ON calls WHEN OLD.campaign IS NOT NEW.campaign OR OLD.attempt IS NOT NEW.attempt
        OR OLD.contact_id IS NOT NEW.contact_id OR OLD.outcome IS NOT NEW.outcome BEGIN
        INSERT INTO call_counts_bump SELECT OLD.campaign, OLD.attempt,
            (SELECT source FROM contacts WHERE id = OLD.contact_id), OLD.outcome, -1;
        INSERT INTO call_counts_bump SELECT NEW.campaign, NEW.attempt,
            (SELECT source FROM contacts WHERE id = NEW.contact_id), NEW.outcome, 1;
    END;
    CREATE TRIGGER call_counts_delete AFTER DELETE ON calls BEGIN
        INSERT INTO call_counts_bump SELECT OLD.campaign, OLD.attempt,
            (SELECT source FROM contacts WHERE id = OLD.contact_id), OLD.outcome, -1;
    END;
    CREATE TRIGGER call_counts_contact_source AFTER UPDATE OF source ON contacts
        WHEN OLD.source IS NOT NEW.source BEGIN
        INSERT INTO call_counts_bump SELECT campaign, attempt, OLD.source, outcome, -COUNT(*)
            FROM calls WHERE contact_id = NEW.id GROUP BY campaign, attempt, outcome;
        INSERT INTO call_counts_bump SELECT campaign, attempt, NEW.source, outcome, COUNT(*)
            FROM calls WHERE contact_id = NEW.id GROUP BY campaign, attempt, outcome;
    END;
    -- A contact deleted while calls still name it (only on a connection without foreign
    -- keys: they forbid it): those calls have no contact any more.
    CREATE TRIGGER call_counts_contact_gone AFTER DELETE ON contacts BEGIN
        INSERT INTO call_counts_bump SELECT campaign, attempt, OLD.source, outcome, -COUNT(*)
            FROM calls WHERE contact_id = OLD.id GROUP BY campaign, attempt, outcome;
        INSERT INTO call_counts_bump SELECT campaign, attempt, NULL, outcome, COUNT(*)
            FROM calls WHERE contact_id = OLD.id GROUP BY campaign, attempt, outcome;
    END;
    INSERT INTO call_counts (campaign, attempt, source, outcome, n)
        SELECT c.campaign, c.attempt, k.source, c.outcome, COUNT(*) FROM calls c
        LEFT JOIN contacts k ON k.id = c.contact_id GROUP BY 1, 2, 3, 4;
    CREATE INDEX contacts_status ON contacts(status, source);
    CREATE INDEX campaign_contacts_source ON campaign_contacts(campaign, source, status);
    PRAGMA user_version = 10
    """,
    # 11: the console's report.csv kept per block of 8,192 call ids (block = id >> 13), so
    # that after a commit only the blocks that changed are rendered again (store/*_export.py).
    # call_chunks holds a version per (campaign, block), bumped in the writing transaction by
    # every INSERT, DELETE and UPDATE of a column the CSV shows, and by a change of a contact's
    # list (the CSV joins contacts.source) for the blocks of that contact's calls. A version
    # only grows, so a block rendered at version v is the block while the version is v.
    # `slot` is 0 here (PostgreSQL: the writing backend). One UPSERT per written call.
    """
    CREATE TABLE call_chunks (
        campaign TEXT NOT NULL, block INTEGER NOT NULL,
        slot INTEGER NOT NULL DEFAULT 0,
        version INTEGER NOT NULL,
        PRIMARY KEY (campaign, block, slot)
    ) WITHOUT ROWID;
    CREATE TRIGGER call_chunks_insert AFTER INSERT ON calls BEGIN
        INSERT INTO call_chunks (campaign, block, version) VALUES (NEW.campaign, NEW.id >> 13, 1)
            ON CONFLICT (campaign, block, slot) DO UPDATE SET version = version + 1;
    END;
    CREATE TRIGGER call_chunks_update AFTER UPDATE OF id, contact_id, number, attempt, campaign,
        channel_id, started_at, answered_at, ended_at, outcome, stage, keys, hangup_cause,
        prompts_sha256, caller_id ON calls BEGIN
        INSERT INTO call_chunks (campaign, block, version) VALUES (OLD.campaign, OLD.id >> 13, 1)
            ON CONFLICT (campaign, block, slot) DO UPDATE SET version = version + 1;
        INSERT INTO call_chunks (campaign, block, version) SELECT NEW.campaign, NEW.id >> 13, 1
            WHERE NEW.campaign IS NOT OLD.campaign OR (NEW.id >> 13) IS NOT (OLD.id >> 13)
            ON CONFLICT (campaign, block, slot) DO UPDATE SET version = version + 1;
    END;
    CREATE TRIGGER call_chunks_delete AFTER DELETE ON calls BEGIN
        INSERT INTO call_chunks (campaign, block, version) VALUES (OLD.campaign, OLD.id >> 13, 1)
            ON CONFLICT (campaign, block, slot) DO UPDATE SET version = version + 1;
    END;
    CREATE TRIGGER call_chunks_contact_source AFTER UPDATE OF source ON contacts
        WHEN OLD.source IS NOT NEW.source BEGIN
        INSERT INTO call_chunks (campaign, block, version)
            SELECT DISTINCT campaign, id >> 13, 1 FROM calls WHERE contact_id = NEW.id
            ON CONFLICT (campaign, block, slot) DO UPDATE SET version = version + 1;
    END;
    -- A contact deleted while calls still name it (SQLite without foreign keys): their
    -- source field empties.
    CREATE TRIGGER call_chunks_contact_gone AFTER DELETE ON contacts BEGIN
        INSERT INTO call_chunks (campaign, block, version)
            SELECT DISTINCT campaign, id >> 13, 1 FROM calls WHERE contact_id = OLD.id
            ON CONFLICT (campaign, block, slot) DO UPDATE SET version = version + 1;
    END;
    INSERT INTO call_chunks (campaign, block, version)
        SELECT campaign, id >> 13, 1 FROM calls GROUP BY 1, 2;
    PRAGMA user_version = 11
    """,
    # 12: the erasure's leftover scan reads no big table row by row (sqlite_privacy.SCANS): an
    # E.164 number holds a '+', so each big table gets a partial index of the rows with a '+'
    # in a free-text column (normally none: it costs a write nothing but evaluating its WHERE),
    # and caller_id, which holds one by design, an index walked once per distinct value; and
    # the consents of a contact are found by its id (the erasure's DELETE read them all). The
    # scan over 100,000 contacts and 300,000 calls: ~100 ms -> under 1 ms.
    """
    CREATE INDEX contacts_plus ON contacts(id) WHERE instr(name, '+') > 0 OR
        instr(timezone, '+') > 0 OR instr(source, '+') > 0 OR instr(basis, '+') > 0 OR
        instr(acquired_on, '+') > 0 OR instr(extra, '+') > 0 OR instr(slot, '+') > 0;
    CREATE INDEX campaign_contacts_plus ON campaign_contacts(contact_id) WHERE
        instr(campaign, '+') > 0 OR instr(source, '+') > 0 OR instr(basis, '+') > 0 OR
        instr(acquired_on, '+') > 0;
    CREATE INDEX calls_plus ON calls(id) WHERE instr(channel_id, '+') > 0 OR
        instr(campaign, '+') > 0 OR instr(node, '+') > 0 OR instr(controller, '+') > 0 OR
        instr(hangup_cause, '+') > 0 OR instr(amd_status, '+') > 0;
    CREATE INDEX calls_caller_id ON calls(caller_id);
    CREATE INDEX consents_plus ON consents(id) WHERE instr(campaign, '+') > 0 OR
        instr(prompt_key, '+') > 0 OR instr(slot, '+') > 0 OR instr(amd_status, '+') > 0;
    CREATE INDEX consents_caller_id ON consents(caller_id);
    CREATE INDEX consents_contact ON consents(contact_id);
    PRAGMA user_version = 12
    """,
    # 13: a console session names the user's session epoch it was opened under; logout, a new
    # password and a disable bump it, so every cookie issued before no longer authenticates
    # (the signed cookie alone stays valid until it expires). Read with the user's row, which
    # the console reads at each request anyway: no extra round trip.
    """
    ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;
    PRAGMA user_version = 13
    """,
    # 14: an API token can be revoked on its own (`ivr users revoke`); a disable revokes them
    # all, so enabling the user again does not bring old tokens back. The row stays (when it
    # was issued, last used, revoked), only its use ends.
    """
    ALTER TABLE api_tokens ADD COLUMN revoked_at TEXT;
    PRAGMA user_version = 14
    """,
    # 15: the opposition key's fingerprint (HMAC of a constant: it tells keys apart and reveals
    # neither the key nor a number), written by the first process to open the store. A process
    # with another key is refused at open (sqlite_optout_key.check_key): it would see no
    # opposition and dial every opposed number, even when the list is empty or all erased.
    """
    CREATE TABLE optout_key (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        fingerprint TEXT NOT NULL
    );
    PRAGMA user_version = 15
    """,
    # 16: each controller reads, once a second, the open attempts of the campaign's other live
    # controllers (campaign/nodes.py, Shares: the caps they share); this index holds only open
    # attempts, so that read does not walk every call a controller ever placed.
    """
    CREATE INDEX calls_open ON calls(controller, node) WHERE outcome IS NULL;
    PRAGMA user_version = 16
    """,
    # 17: the console reads, about once a second, the snapshots fresh enough to show
    # (sqlite_console.fresh_snapshots); run_snapshots keeps a row per past `ivr run` of the
    # campaign, so without this index that read walked them all (83 ms at 50,000 past runs).
    """
    CREATE INDEX run_snapshots_at ON run_snapshots(campaign, at);
    PRAGMA user_version = 17
    """,
    # 18: what an erasure keeps of a number for the calling rules, under its keyed hash and
    # for a bounded time (store/erasure_holds.py): the refusal cooldown and the attempt cap
    # survive the erasure. attempts: a JSON list of UTC attempt start times in the cap window.
    """
    CREATE TABLE erasure_holds (
        number_hash TEXT PRIMARY KEY,
        last_refusal TEXT,
        attempts TEXT NOT NULL DEFAULT '[]',
        kept_until TEXT NOT NULL
    );
    PRAGMA user_version = 18
    """,
    # 19: a call's list is its own campaign's binding's (schema_lists.py says why)
    SQLITE_19,
    # 20: the tokens of a user disabled before 14 were never revoked (no column yet), so
    # enabling the user brought them back. Revoke them now, as a disable since 14 does; a
    # re-run touches nothing (only unrevoked tokens of users still disabled). Its step also
    # keeps an erased opposition of a box's other form under the box contact's form
    # (box_lines.erased_box_aliases: keyed hashes, computed by the program, not SQL).
    """
    UPDATE api_tokens SET revoked_at = replace(datetime('now'), ' ', 'T') || '.000Z'
        WHERE revoked_at IS NULL AND user_id IN (SELECT id FROM users WHERE disabled <> 0);
    PRAGMA user_version = 20
    """,
    # 21: a user bound to some campaigns sees and acts on those alone (web/scope.py); a user
    # with no row here sees every campaign, as every user did before.
    """
    CREATE TABLE IF NOT EXISTS user_campaigns (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        campaign TEXT NOT NULL,
        PRIMARY KEY (user_id, campaign)
    );
    PRAGMA user_version = 21
    """,
    # 22: PostgreSQL's alone (schema_lists.py); the numbers of both backends stay in step.
    """
    PRAGMA user_version = 22
    """,
    # 23: PostgreSQL's alone (pg_functions.py: a call's writes as server functions).
    """
    PRAGMA user_version = 23
    """,
    # 24: PostgreSQL's alone (pg_functions.py: an unanswered call's outcome).
    """
    PRAGMA user_version = 24
    """,
    # 25: a binding's name, its own list's (schema_lists.py says why)
    SQLITE_25,
]
