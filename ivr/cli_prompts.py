"""`ivr prompts prune [--yes]`: remove the campaign's old installed prompt versions.

A command of its own module, added to the `prompts` group by ivr/cli.py (at its size budget);
errors are IvrErrors, which the main group turns into one line.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import click
from rich.console import Console

console = Console(soft_wrap=True)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@click.command("prune")
@click.option("--yes", is_flag=True, help="Remove them (without it: only list them).")
@click.pass_obj
def prompts_prune(ctx, yes: bool) -> None:  # type: ignore[no-untyped-def]
    """Remove installed versions of the config's campaign older than the current build that
    no open attempt may be playing. The archive (prompts.archive_dir) is kept."""
    from ivr.prompts.prune import prune
    p = prune(ctx.cfg, ctx.store(), _now, yes=yes)
    base = p.folder.parent.parent  # the sounds folder: paths are shown as Asterisk plays them
    verb = "removed" if yes else "would remove"
    for v in p.remove:
        console.print(f"{verb} {v.path.relative_to(base)}", highlight=False)
    kept = Counter(p.kept.values())
    why = "; ".join(f"{n} {reason}" for reason, n in sorted(kept.items()))
    console.print(f"campaign {p.campaign!r}: {verb} {len(p.remove)} old version(s), kept "
                  f"{len(p.kept)}" + (f" ({why})" if why else "") +
                  f"; {p.open_attempts} open attempt(s); archive untouched", highlight=False)
    if not yes and p.remove:
        console.print("dry run: nothing removed; add --yes to remove them", highlight=False)
