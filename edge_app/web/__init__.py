"""The reader's web app: accounts and tokens, the marking view, and the JSON API it uses (``mammo-edge serve``)."""

from __future__ import annotations

from edge_app.web.app import create_app
from edge_app.web.server import serve

__all__ = ["create_app", "serve"]
