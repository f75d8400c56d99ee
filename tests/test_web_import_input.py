"""The console's input at its edges: numbers typed with non-breaking spaces, upload file
names, paging offsets. SQLite: none of this depends on the store."""
from __future__ import annotations

import glob
import os
import html
import re
import tempfile
from pathlib import Path

import pytest

from opposition_forms import ACCEPTED, REFUSED
from web_fixture import CAMPAIGN, login, make_web, said

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
# French formatting and e-mail copies separate the pairs with U+00A0 (or U+202F).
NBSP = "06\u00a012\u00a034\u00a056\u00a078"
NNBSP = "06\u202f12\u202f34\u202f56\u202f79"


@pytest.fixture
def web(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    return make_web(tmp_path, monkeypatch)


def _flash(html: str) -> list[str]:
    return [said(f) for f in re.findall(r'id="flash"[^>]*>(.*?)</p>', html)]


def _refused(r) -> str:  # type: ignore[no-untyped-def]
    """The opposition form's refusal: the page again (400), the error by its field."""
    assert r.status_code == 400, r.status_code
    return html.unescape(said(re.findall(r'id="optout-error"[^>]*>(.*?)</p>', r.text)[0]))


def test_the_opposition_form_and_api_take_what_the_imports_take(web) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    r = c.post(f"/api/campaigns/{CAMPAIGN}/contacts", headers=h,
               files={"file": ("l.csv", f"number\n{NBSP}\n".encode(), "text/csv")},
               data={"source": "s1", "basis": "member_file"})
    assert r.json()["added"] == 1
    r = c.post("/api/optouts", headers=h, json={"number": NBSP, "via": "email"})
    assert (r.status_code, r.json()) == (200, {"number": "+33612345678", "added": True})
    r = c.post(f"/c/{CAMPAIGN}/rights/optout",
               data={"number": NNBSP, "via": "email", "csrf_token": h["X-CSRF-Token"]})
    assert r.status_code == 303
    assert web.store.is_opted_out("+33612345678") and web.store.is_opted_out("+33612345679")
    assert web.store.db.execute("SELECT status FROM contacts").fetchall() == [("opted_out",)]


def test_the_opposition_form_and_api_read_every_unambiguous_writing(web) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    for text, number in ACCEPTED:
        r = c.post("/api/optouts", headers=h, json={"number": text, "via": "email"})
        assert (r.status_code, r.json()["number"]) == (200, number), text
        r = c.post(f"/c/{CAMPAIGN}/rights/optout",
                   data={"number": text, "via": "post", "csrf_token": h["X-CSRF-Token"]})
        assert _flash(c.get(r.headers["location"]).text) == [
            f"{number} : déjà sur la liste d&#39;opposition"], text
    listed = web.store.db.execute("SELECT number FROM optouts ORDER BY number").fetchall()
    assert listed == sorted({(number,) for _, number in ACCEPTED})


def test_the_opposition_form_and_api_say_why_they_refuse(web) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    for text, reason in REFUSED:
        r = c.post("/api/optouts", headers=h, json={"number": text, "via": "email"})
        assert r.status_code == 400 and reason in r.json()["detail"], text
        r = c.post(f"/c/{CAMPAIGN}/rights/optout",
                   data={"number": text, "via": "post", "csrf_token": h["X-CSRF-Token"]})
        said = _refused(r)
        assert said.startswith("number: ") and reason in said, text
    assert web.store.db.execute("SELECT * FROM optouts").fetchall() == []


def test_a_bad_number_names_the_field(web) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    r = c.post("/api/optouts", headers=h, json={"number": "06 12 34 56 78 x5", "via": "email"})
    assert r.status_code == 400
    assert r.json()["detail"] == ("number: '06 12 34 56 78 x5' is not a valid phone number: "
                                  "give it as +33… or 0…; an extension ('x5'): give the "
                                  "person's direct line (an opposition of the switchboard's "
                                  "number leaves theirs callable)")
    r = c.post(f"/c/{CAMPAIGN}/rights/optout",
               data={"number": "banana", "via": "email", "csrf_token": h["X-CSRF-Token"]})
    flash = [said(f) for f in re.findall(r'id="optout-error"[^>]*>(.*?)</p>', r.text)]
    assert r.status_code == 400
    assert flash == ["number: &#39;banana&#39; n&#39;est pas un numéro de téléphone valide : "
                     "donnez-le sous la forme +33… ou 0… (détail en anglais : letters "
                     "(&#39;banana&#39;) that are not a label such as &#39;Tél.&#39;: give the "
                     "number alone)"]


def _uploads() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "ivr-upload-*")))


@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The uploads' folders go to this test's own temp dir: the other xdist workers' uploads
    in the shared /tmp (a CI run at -n 3 saw one) are not this test's leftovers."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.mark.parametrize("name", ["..", ".", "a" * 300 + ".csv", "é" * 130 + ".csv",
                                  "../../etc/x.csv", "bad\x00name.csv"])
def test_any_upload_file_name_imports_and_leaves_no_folder(web, name: str, own_tmp: None
                                                         ) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    before = _uploads()
    r = c.post(f"/api/campaigns/{CAMPAIGN}/contacts", headers=h,
               files={"file": (name, b"number\n0199000030\n", "text/csv")},
               data={"source": "s1", "basis": "member_file"})
    assert (r.status_code, r.json()["added"]) == (200, 1), r.text
    r = c.post(f"/c/{CAMPAIGN}/contacts/upload",
               files={"file": (name, b"number\n0199000031\n", "text/csv")},
               data={"source": "s1", "basis": "member_file", "csrf_token": h["X-CSRF-Token"]})
    assert r.status_code == 200 and "1 ajouté(s)" in r.text  # the page's words
    r = c.post("/api/optouts/import", headers=h, data={"via": "post"},
               files={"file": (name, b"0199000032\n", "text/csv")})
    assert r.json() == {"added": 1, "rejected": []}
    assert _uploads() <= before


def test_a_refused_upload_names_the_safe_name_and_leaves_no_folder(web, own_tmp: None) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    before = _uploads()
    r = c.post(f"/api/campaigns/{CAMPAIGN}/contacts", headers=h,
               files={"file": ("..", b"", "text/csv")},
               data={"source": "s1", "basis": "member_file"})
    assert (r.status_code, r.json()["detail"].split(" ")[0]) == (400, "upload.csv")
    assert _uploads() <= before


def test_a_huge_offset_is_an_empty_page_not_a_500(web) -> None:
    c = web.client()
    login(c, "vera")
    huge = "99999999999999999999"  # past 2**64
    r = c.get(f"/api/campaigns/{CAMPAIGN}/contacts?offset={huge}")
    assert r.status_code == 200 and r.json()["contacts"] == []
    assert r.json()["offset"] == 10 ** 12
    r = c.get(f"/api/campaigns/{CAMPAIGN}/contacts?offset=-{huge}&limit=-5")
    assert r.status_code == 200 and r.json()["offset"] == 0
    assert c.get(f"/c/{CAMPAIGN}/contacts?offset={huge}").status_code == 200


def test_an_upload_with_a_stray_quote_is_refused_whole(web) -> None:
    c = web.client()
    h = {"X-CSRF-Token": login(c, "otto")}
    lines = [f"+3319{i:07d},Name {i}" for i in range(2000)]
    lines[4] = '+33190000004,"Dupont'  # line 6 of the file
    data = ("number,name\n" + "\n".join(lines) + "\n").encode()
    r = c.post(f"/api/campaigns/{CAMPAIGN}/contacts", headers=h,
               files={"file": ("list.csv", data, "text/csv")},
               data={"source": "s1", "basis": "member_file"})
    assert (r.status_code, r.json()["detail"]) == (
        400, "list.csv line 6: a quote opens a field that runs on to line 2001: close or remove "
             "the quote (a cell cannot hold a line break)")
    assert web.store.db.execute("SELECT count(*) FROM contacts").fetchone() == (0,)
    r = c.post(f"/c/{CAMPAIGN}/contacts/upload", files={"file": ("list.csv", data, "text/csv")},
               data={"source": "s1", "basis": "member_file", "csrf_token": h["X-CSRF-Token"]})
    assert r.status_code == 400 and "line 6: a quote opens a field" in r.text
