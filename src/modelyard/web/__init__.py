"""The web dashboard under ``/ui``: server-rendered pages (Jinja2, a little htmx and plain JavaScript).

The dashboard is a client of the public API, like the CLI: every page reads and acts through the same
``/api/v1`` routes, called in process (no socket) with the signed-in user's key. So a page shows exactly
what that key may see, acts only where its scopes allow, and reports the API's own problem+json errors;
no second path to the data can drift from the API's rules.

Modules: ``session`` (the sign-in cookie and CSRF tokens), ``client`` (the in-process API caller),
``charts`` (pure SVG: sparklines, histograms, the pipeline DAG), ``pages`` (the routes), ``templates/``
and ``static/`` (vendored htmx, the stylesheet and the page scripts; see ``static/README.md``).
A new part adds its pages as one more module of routes plus templates, linked from ``base.html``'s nav.
"""

from modelyard.web.pages import create_ui

__all__ = ["create_ui"]
