"""The operator's web console: server-rendered pages (Jinja2 + htmx) under ``/ui/``.

Handlers call services through the API's gate: the session becomes a ``Caller`` on the
scope (``session.py``, ending in ``api.identity.serve_as``), and every page or change asks
``services/access.py`` by the API's action names (``pages.gate``). Nothing else decides.
"""
