"""The console's erasure warns, in `ivr gdpr erase`'s own words, when the SQLite checkpoint
found another process reading the store: the number is still in the -wal file. It said
"erased" and nothing more. On PostgreSQL the console's erasure always answers
wal_checkpointed false (the store's own thread rewrites the tables just after): no warning."""
from __future__ import annotations

import html
import re
import sqlite3

import pytest

from conftest import Backend, add_contact
from web_fixture import CAMPAIGN, NOW, login, make_web

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
FIRST, SECOND = "+33612345678", "+33612345679"


def cli_warning(path: str) -> str:
    """What `ivr gdpr erase` prints on stderr then (ivr/cli.py gdpr_erase)."""
    return (f"warning: another process holds {path} open: the erased number stays in its "
            "-wal file until that process closes the store; run `ivr gdpr erase` again then")


@pytest.fixture
def web(backend: Backend, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch, backend)


def _erase_both(web):  # type: ignore[no-untyped-def]
    """One erasure from the rights page, one from the API; the flash page and the answer."""
    for number in (FIRST, SECOND):
        add_contact(web.store, number, at=NOW, name="Jeanne Secret", campaigns=(CAMPAIGN,))
    c = web.client()
    token = login(c, "ada")
    r = c.post(f"/c/{CAMPAIGN}/rights/erase",
               data={"number": FIRST, "confirm": FIRST, "csrf_token": token})
    assert r.status_code == 303
    page = html.unescape(c.get(r.headers["location"]).text)
    answer = c.post(f"/api/numbers/{SECOND}/erase", json={"confirm": SECOND},
                    headers={"X-CSRF-Token": token})
    assert answer.status_code == 200, answer.text
    return page, answer.json()


def test_an_erasure_while_another_process_reads_warns_as_the_cli_does(web) -> None:
    reader = None
    if web.path is not None:  # another process mid-read (`ivr report`, a run)
        reader = sqlite3.connect(web.path)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM contacts").fetchone()
    try:
        page, answer = _erase_both(web)
    finally:
        if reader is not None:
            reader.rollback()
            reader.close()
    flash = re.search(r'<p id="flash" class="flash (\w+)"[^>]*>(.*?)</p>', page, re.S)
    assert flash, "no message after the erasure"
    assert answer["wal_checkpointed"] is False  # both backends, for different reasons
    if web.path is None:
        assert flash.groups() == ("ok", f"{FIRST} : effacé")  # French first
        assert "warning" not in answer
        return
    warning = cli_warning(web.cfg.store.path)
    # In French, all of it (found in review: "effacé; warning: …" in English, so the operator
    # could tell the person the erasure was done)
    kind, text = flash.group(1), html.unescape(flash.group(2))
    assert kind == "warning" and text.startswith(f"{FIRST} : effacement INCOMPLET, le numéro "
                                                 "reste sur le disque — un autre processus")
    assert str(web.cfg.store.path) in text and "relancez alors l'effacement" in text
    assert "anglais" not in text and "warning" not in text and "effacé;" not in text
    assert answer["warning"] == warning


def test_an_erasure_with_the_store_to_itself_says_erased_only(web) -> None:
    page, answer = _erase_both(web)
    if web.path is not None:
        assert answer["wal_checkpointed"] is True
    assert re.search(rf'<p id="flash" class="flash ok" role="status">\{FIRST} : effacé</p>', page)
    assert "warning" not in answer
