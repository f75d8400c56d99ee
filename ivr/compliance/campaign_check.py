"""Preflight for a whole campaign: config rules, legal mentions, consent first, the opposition
line's notice, the prompt build (this campaign's, from the config's sources as they are now),
and the lists about to be called."""
from __future__ import annotations

from collections.abc import Iterator

from ivr.config import Config
from ivr.compliance.consent_first import intro_problems, slot_problems
from ivr.compliance.preflight import ERROR, WARNING, Violation, preflight, raise_on_errors
from ivr.compliance.prompt_legal import callback_line_problems, missing_legal_items
from ivr.compliance.prompt_scope import (call_to_vote_problems, legal_scope_problems,
                                         optout_key_problems)
from ivr.store.base import StoreBackend

__all__ = ["check_campaign", "pbx_violations", "raise_on_errors"]


def list_sources(store: StoreBackend, campaign: str) -> list[dict[str, object]]:
    """Provenance, for this campaign, of every list it still has contacts to call."""
    return store.pending_sources(campaign)


def unbound_violations(store: StoreBackend, campaign: str) -> list[Violation]:
    """Lists imported before campaigns existed: no run calls them until they are bound."""
    return [Violation("unbound_list", f"list {r['source']!r}: {r['contacts']} contact(s) "
                      "belong to no campaign and are not called: bind them with `ivr contacts "
                      f"share --source {r['source']} --campaign {campaign} --basis BASIS`",
                      WARNING) for r in store.unbound_sources()]


def prompt_violations(cfg: Config) -> list[Violation]:
    """Legal mentions, the consent-first intro and the time slot (pure: the config only)."""
    legal = [Violation("legal_mentions", problem, ERROR) for problem in
             missing_legal_items(cfg) + optout_key_problems(cfg) + legal_scope_problems(cfg)]
    legal += [Violation("callback_line", problem, ERROR) for problem in callback_line_problems(cfg)]
    intro = [Violation("consent_first", problem, ERROR) for problem in
             intro_problems(cfg) + call_to_vote_problems(cfg)]
    slot = [Violation("ask_slot", message, severity) for severity, message in slot_problems(cfg)]
    return legal + intro + slot


def build_violations(cfg: Config, dry_run: bool = False) -> list[Violation]:
    """The build in prompts.build_dir: this campaign's, made from the config's sources as they
    are now (prompts/manifest.py). None at all is an error, as `ivr run` refuses to start
    without one; only a dry run, which plays nothing, is just warned."""
    from ivr.prompts.manifest import build_problem, is_built
    problem = build_problem(cfg)
    if not problem:
        return []
    if is_built(cfg):
        return [Violation("prompts_stale", problem, ERROR)]
    if dry_run:
        return [Violation("prompts_not_built", f"{problem} (a real run refuses)", WARNING)]
    return [Violation("prompts_not_built", problem, ERROR)]


def _pending_numbers(store: StoreBackend, campaign: str) -> Iterator[str]:
    """Read only when iterated: only a fiction caller ID looks at the callees (every pending
    contact read at each check and run, 100,000 rows held for nothing, before)."""
    for c in store.pending_contacts(campaign):
        yield str(c["number"])


def check_campaign(cfg: Config, store: StoreBackend, build: bool = True,
                   dry_run: bool = False, prompts: bool = True) -> list[Violation]:
    """`build`: also judge the prompt build (the console skips it for another campaign's
    controller, which has its own config and build, and while its own config is stale).
    `prompts`: also judge the prompt texts (the console skips them for another campaign, whose
    texts are in its own config). `dry_run`: for `ivr run --dry-run`, which needs no build."""
    # The pending callees let preflight refuse a fiction caller ID that would call real people.
    name = cfg.campaign.name
    callees = _pending_numbers(store, name)
    built = build_violations(cfg, dry_run) if build else []
    texts = prompt_violations(cfg) if prompts else []
    return (texts + built + unbound_violations(store, name)
            + preflight(cfg, sources=list_sources(store, name), callees=callees))


def pbx_violations(cfg: Config) -> list[Violation]:
    """Each PBX node asked over AMI whether it takes this controller's calls: its AMI user's
    write classes, the dialplan's contexts, [globals] IVR_AGI_URL (ivr/telephony/pbx_probe.py).
    `ivr check` only: the console's preflight and `ivr run` do not wait on the network here."""
    from ivr.telephony.pbx_probe import probe_pbx
    return [Violation(f.code, f.message, f.severity) for f in probe_pbx(cfg)]
