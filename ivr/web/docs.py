"""The API's documentation page (/api/docs), rendered on the server from the app's own OpenAPI
document: every path and method, its summary, parameters, request body, responses and the roles
that may call it. FastAPI's Swagger and ReDoc pages load from a CDN with an inline script, which
the console's Content-Security-Policy blocks (and the project forbids CDNs): they are off."""
from __future__ import annotations

import inspect
import re
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from ivr import web_users

METHODS = ("get", "post", "put", "patch", "delete")
UNKNOWN = "?"  # a route whose check could not be read
# who(request, "view") / run_in_threadpool(who, request, "view"): the action a route checks
_WHO = re.compile(r"""\bwho\s*(?:\(\s*request\s*,|,\s*request\s*,)\s*["'](\w+)["']""")


def route_actions(app: FastAPI) -> dict[tuple[str, str], str]:
    """(path, method) -> the action the route's code checks with `who` (ivr/web/api.py), read
    from its source so the page can never disagree with the code."""
    out: dict[tuple[str, str], str] = {}
    for route in _api_routes(app.routes):
        try:
            found = _WHO.search(inspect.getsource(route.endpoint))
            action = found.group(1) if found else ""
        except (OSError, TypeError):  # no source (an install without .py files)
            action = UNKNOWN  # never shown as public
        for method in route.methods or ():
            # path_format: the OpenAPI document's path ({campaign}, not {campaign:path})
            out[(route.path_format, method.lower())] = action
    return out


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """The documented routes, also inside included routers (FastAPI >= 0.16x keeps an included
    router as one entry holding the original router; its routes carry their prefix)."""
    out: list[APIRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            out += _api_routes(inner.routes)
        elif isinstance(route, APIRoute) and route.include_in_schema:
            out.append(route)
    return out


def roles_for(action: str) -> list[str]:
    if action == UNKNOWN:
        return ["?"]
    if not action:
        return []
    return [r for r in web_users.ROLES if web_users.can(r, action)]


def _schema_name(schema: dict[str, Any] | None) -> str:
    """A body or response schema in a word: its component's name, or its type."""
    if not schema:
        return ""
    ref = schema.get("$ref") or (schema.get("items") or {}).get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return f"{name}[]" if "items" in schema else name
    if "anyOf" in schema:  # Optional[int]: "integer | null"
        return " | ".join(_schema_name(s) for s in schema["anyOf"])
    return str(schema.get("type") or schema.get("title") or "")


def _body(op: dict[str, Any]) -> str:
    content = (op.get("requestBody") or {}).get("content") or {}
    return ", ".join(f"{kind}: {_schema_name(v.get('schema'))}".rstrip(": ")
                     for kind, v in content.items())


def _params(op: dict[str, Any]) -> list[dict[str, str]]:
    return [{"name": p["name"], "in": p.get("in", ""), "required": bool(p.get("required")),
             "type": _schema_name(p.get("schema"))} for p in op.get("parameters") or []]


def _responses(op: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for code, resp in sorted((op.get("responses") or {}).items()):
        kinds = ", ".join((resp.get("content") or {}).keys())
        out.append({"code": code, "description": resp.get("description", ""), "kinds": kinds})
    return out


def _schemas(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The request bodies' models: their fields, types and whether required."""
    out = []
    for name, schema in sorted(((doc.get("components") or {}).get("schemas") or {}).items()):
        required = set(schema.get("required") or ())
        fields = [{"name": f, "type": _schema_name(s), "enum": ", ".join(map(str, s.get("enum") or ())),
                   "required": f in required}
                  for f, s in (schema.get("properties") or {}).items()]
        out.append({"name": name, "fields": fields})
    return out


def api_docs(app: FastAPI) -> dict[str, Any]:
    """What the page shows, in the OpenAPI document's order of paths; computed once per app
    (the routes do not change while it serves; the sources are read once)."""
    kept = getattr(app.state, "api_docs", None)
    if kept is None:
        kept = app.state.api_docs = _api_docs(app)
    return kept  # type: ignore[no-any-return]


def _api_docs(app: FastAPI) -> dict[str, Any]:
    doc = app.openapi()
    actions = route_actions(app)
    ops = []
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            action = actions.get((path, method), "")
            ops.append({"path": path, "method": method.upper(),
                        "summary": op.get("summary", ""),
                        "description": op.get("description", ""), "params": _params(op),
                        "body": _body(op), "responses": _responses(op), "action": action,
                        "roles": roles_for(action)})
    info = doc.get("info", {})
    return {"title": info.get("title", ""), "version": info.get("version", ""),
            "description": info.get("description", ""), "operations": ops,
            "schemas": _schemas(doc)}


# The page's own words (French, English), like ivr/web/i18n.py's table.
LABELS: dict[str, tuple[str, str]] = {
    "heading": ("Documentation de l'API", "API documentation"),
    "document": ("Document OpenAPI (JSON)", "OpenAPI document (JSON)"),
    "auth": ("Authentification : le cookie de session (une écriture demande alors l'en-tête "
             "X-CSRF-Token) ou Authorization: Bearer <jeton de `ivr users token NOM`>.",
             "Authentication: the session cookie (a write then needs the X-CSRF-Token header) "
             "or Authorization: Bearer <token from `ivr users token NAME`>."),
    "roles": ("Rôles", "Roles"), "action": ("Droit vérifié", "Checked right"),
    "params": ("Paramètres", "Parameters"), "body": ("Corps de la requête", "Request body"),
    "responses": ("Réponses", "Responses"), "schemas": ("Modèles", "Models"),
    "required": ("obligatoire", "required"), "public": ("public", "public"),
    "none": ("aucun", "none"), "field": ("Champ", "Field"), "type": ("Type", "Type"),
}


def labels(lang: str) -> dict[str, str]:
    index = 0 if lang == "fr" else 1
    return {k: v[index] for k, v in LABELS.items()}
