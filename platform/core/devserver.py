"""Serve the control plane from a background thread (for `manage.py demo` and tests).

Django's own threaded WSGI server, which closes each request thread's database connections
when the request ends, bound to a free loopback port. Not for production (use gunicorn).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.servers.basehttp import (
    ThreadedWSGIServer,
    WSGIRequestHandler,
    get_internal_wsgi_application,
)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def background_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Yield the base URL of a server running until the block exits."""
    server = ThreadedWSGIServer((host, port), _QuietHandler, allow_reuse_address=False)
    server.set_app(get_internal_wsgi_application())
    thread = threading.Thread(target=server.serve_forever, name="controlplane-demo", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
