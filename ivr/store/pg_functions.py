"""PostgreSQL's schemas 23 and 24: a call's hot writes as server functions, one command each.

Measured on this machine kind (bench/RESULTS.md, 2026-12-07): each command psycopg sends costs
the controller 70-130 us of CPU, and a pipelined transaction another ~130 us of psycopg's own,
whatever it saves in round trips. A call's outcome was BEGIN, five statements and COMMIT; its
key's proof BEGIN, two statements and COMMIT. Each is now one `SELECT fn(...)` in autocommit,
its own transaction, or one statement of a group commit's batch.

Same statements, same order, same snapshots: in a VOLATILE PL/pgSQL function each statement
takes a new snapshot under READ COMMITTED, as separate statements did, so the row lock the
first UPDATE takes still orders two writes of one call (the proof is completed, never
doubled). What the SQLite store does in Python (sqlite_calls.py) and these do in SQL is held
equal by the suite, which runs on both backends. A change to any of these functions is a new
migration (CREATE OR REPLACE), never an edit of this one.

Not here: the opposition's row (optouts: its keyed hash is computed by the program, and a
box's other forms with it), written by pg_calls after `finish_answered` in one transaction.
"""
from __future__ import annotations

PG_23 = """
-- The contact's statuses after an attempt, unless a later attempt exists (sqlite_calls.py
-- _settle_contact says why).
CREATE OR REPLACE FUNCTION settle_contact(p_call BIGINT, p_contact BIGINT, p_campaign TEXT,
        p_status TEXT, p_final BOOLEAN, p_at TEXT) RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    IF p_contact IS NULL THEN
        RETURN;
    END IF;
    UPDATE campaign_contacts SET status = p_status WHERE contact_id = p_contact
        AND campaign = p_campaign AND status != 'opted_out' AND (p_final OR (status != 'done'
        AND NOT EXISTS (SELECT 1 FROM calls n WHERE n.contact_id = p_contact AND
        n.campaign = p_campaign AND n.id > p_call)));
    UPDATE contacts SET status = p_status, updated_at = p_at WHERE id = p_contact AND
        status != 'opted_out' AND (p_final OR (NOT EXISTS (SELECT 1 FROM calls n WHERE
        n.contact_id = p_contact AND n.id > p_call) AND NOT (status = 'done' AND EXISTS (
        SELECT 1 FROM campaign_contacts b WHERE b.contact_id = p_contact AND
        b.campaign = p_campaign AND b.status = 'done'))));
END $$;

-- An answered call's outcome, its proof of the choice made and the contact's statuses
-- (pg_calls.finish_answered). o_done false: the attempt already had its outcome, nothing
-- written. p_choice NULL: no choice; p_slot: the consent's calling slot, or NULL.
CREATE OR REPLACE FUNCTION finish_answered(p_call BIGINT, p_outcome TEXT, p_stage TEXT,
        p_keys TEXT, p_prompts TEXT, p_amd TEXT, p_at TEXT, p_cause TEXT, p_retry TEXT,
        p_over_orphan BOOLEAN, p_choice TEXT, p_choice_key TEXT, p_slot TEXT,
        p_prompt_key TEXT, p_prompt_sha TEXT, p_heard TEXT, p_status TEXT, p_final BOOLEAN,
        p_erased TEXT, OUT o_done BOOLEAN, OUT o_number TEXT, OUT o_campaign TEXT,
        OUT o_cause TEXT) LANGUAGE plpgsql AS $$
DECLARE
    c RECORD;
BEGIN
    UPDATE calls SET state = 'ended', outcome = p_outcome, stage = p_stage, keys = CASE WHEN
        number = p_erased THEN '' ELSE p_keys END, prompts_sha256 = p_prompts,
        amd_status = p_amd, answered_at = COALESCE(answered_at, p_at), ended_at = p_at,
        hangup_cause = COALESCE(hangup_cause, p_cause), retry_at = p_retry
        WHERE id = p_call AND (outcome IS NULL OR (p_over_orphan AND outcome = 'error' AND
        stage = 'orphaned'))
        RETURNING contact_id, number, caller_id, campaign, answered_at, hangup_cause INTO c;
    o_done := FOUND;
    IF NOT o_done THEN
        RETURN;
    END IF;
    o_number := c.number;
    o_campaign := c.campaign;
    o_cause := c.hangup_cause;
    -- Erased while it rang or ran: no proof row (sqlite_calls says why). The call's row is
    -- locked: no other write of this choice comes between the UPDATE and the INSERT.
    IF p_choice IS NOT NULL AND c.number <> p_erased THEN
        IF p_slot IS NOT NULL AND p_choice <> 'consent' THEN
            UPDATE consents SET slot = p_slot WHERE call_id = p_call AND kind = 'consent';
        END IF;
        UPDATE consents SET prompt_key = p_prompt_key, prompt_sha256 = p_prompt_sha,
            slot = CASE WHEN p_choice = 'consent' THEN p_slot END, heard_sha256 = p_heard,
            amd_status = p_amd, answered_at = c.answered_at
            WHERE call_id = p_call AND kind = p_choice;
        IF NOT FOUND THEN
            INSERT INTO consents (call_id, contact_id, number, kind, key, at, caller_id,
                campaign, prompt_key, prompt_sha256, slot, heard_sha256, amd_status,
                answered_at)
            VALUES (p_call, c.contact_id, c.number, p_choice, p_choice_key, p_at,
                c.caller_id, c.campaign, p_prompt_key, p_prompt_sha, CASE WHEN
                p_choice = 'consent' THEN p_slot END, p_heard, p_amd, c.answered_at);
        END IF;
    END IF;
    IF p_choice = 'consent' AND p_slot IS NOT NULL THEN
        UPDATE contacts SET slot = p_slot WHERE id = c.contact_id;
    END IF;
    PERFORM settle_contact(p_call, c.contact_id, c.campaign, p_status, p_final, p_at);
END $$;

-- A refusal's or an opposition's proof as its key is pressed, and the keys so far
-- (pg_calls.record_choice): the UPDATE locks the call's row as SELECT ... FOR UPDATE would,
-- so two writes of one choice never both insert. True when this call inserted it.
CREATE OR REPLACE FUNCTION record_choice(p_call BIGINT, p_choice TEXT, p_key TEXT,
        p_at TEXT, p_keys TEXT, p_prompt_key TEXT, p_prompt_sha TEXT, p_heard TEXT,
        p_amd TEXT, p_erased TEXT) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
BEGIN
    UPDATE calls SET keys = CASE WHEN outcome IS NULL AND number <> p_erased THEN p_keys
        ELSE keys END WHERE id = p_call;
    INSERT INTO consents (call_id, contact_id, number, kind, key, at, caller_id, campaign,
            prompt_key, prompt_sha256, heard_sha256, amd_status, answered_at)
        SELECT id, contact_id, number, p_choice, p_key, p_at, caller_id, campaign,
            p_prompt_key, p_prompt_sha, p_heard, p_amd, answered_at FROM calls
        WHERE id = p_call AND number <> p_erased AND (outcome IS NULL OR (outcome = 'error'
            AND stage = 'orphaned')) AND NOT EXISTS (SELECT 1 FROM consents
            WHERE call_id = p_call AND kind = p_choice);
    RETURN FOUND;
END $$;
INSERT INTO schema_version (version, applied_at) VALUES (23, now()::text)
"""


# Schema 24: an unanswered call's outcome (no answer, busy, failed, a reconciled orphan) as one
# command too (pg_calls.finish_unanswered): in a real campaign most attempts end so. It was a
# pipelined transaction of two statements (this UPDATE, then settle_contact), the same two here.
# False: the attempt already had its outcome (the first stands, but over another controller's
# guess: p_over_orphan), nothing written.
PG_24 = """
CREATE OR REPLACE FUNCTION finish_unanswered(p_call BIGINT, p_outcome TEXT, p_cause TEXT,
        p_at TEXT, p_retry TEXT, p_stage TEXT, p_over_orphan BOOLEAN, p_status TEXT,
        p_final BOOLEAN) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    c RECORD;
BEGIN
    UPDATE calls SET state = 'ended', outcome = p_outcome, hangup_cause = p_cause,
        ended_at = p_at, retry_at = p_retry, stage = p_stage
        WHERE id = p_call AND (outcome IS NULL OR (p_over_orphan AND outcome = 'error' AND
        stage = 'orphaned'))
        RETURNING contact_id, campaign INTO c;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    PERFORM settle_contact(p_call, c.contact_id, c.campaign, p_status, p_final, p_at);
    RETURN TRUE;
END $$;
INSERT INTO schema_version (version, applied_at) VALUES (24, now()::text)
"""
