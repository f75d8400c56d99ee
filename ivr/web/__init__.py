"""The web console (`ivr web`): pages and a JSON API over the store; see ivr/web/app.py."""
from ivr.web.app import create_app

__all__ = ["create_app"]
