"""The SDK's busiest calls, activate and heartbeat, served without the layers they do not use.

A device fleet sends these all day; on the 2-core reference machine the session, message,
authentication and common middleware, URL resolution and DRF's request/response cycle cost
as much CPU as the activation's own work (issue 3's benchmark). This middleware sits right
after the request-id, logging, metrics and security middleware (which still run for every
request) and serves a POST to an SDK fast route itself when its body is well-formed JSON that
the route's fast parser accepts (`sdk_api.FAST_ROUTES`). Everything else - another method, a
content type or charset DRF would refuse, malformed JSON, a value the fast parser does not
accept - goes down the normal stack, to the DRF view, which answers it exactly as before.

Errors use the one mapping of core.errors (`domain_error_parts`); an unexpected exception
propagates to Django's 500 handling, as it would from the view. X-Frame-Options comes from
Django's own middleware, and the metrics label is the route's, as if resolved.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.urls import Resolver404, ResolverMatch, resolve, reverse

from activation import sdk_api
from core.errors import domain_error_parts

_JSON_TYPE = "application/json"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: DRF's parser refuses them too


def _encode(body: dict[str, Any]) -> bytes:
    # DRF's JSONRenderer with its defaults (compact, UTF-8): the same bytes either way.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class SdkFastPathMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.frame_options = XFrameOptionsMiddleware(get_response)
        self._routes: dict[str, tuple[ResolverMatch, Any, Any]] | None = None

    def routes(self) -> dict[str, tuple[ResolverMatch, Any, Any]]:
        """path -> (its resolver match, fast parser, server), both spellings of each path;
        built on first use, when the URLconf is loaded."""
        if self._routes is None:
            routes = {}
            for name, (parse, serve) in sdk_api.FAST_ROUTES.items():
                path = reverse(name).rstrip("/")
                for spelling in (path, path + "/"):
                    try:
                        routes[spelling] = (resolve(spelling), parse, serve)
                    except Resolver404:  # pragma: no cover - a route without the optional slash
                        continue
            self._routes = routes
        return self._routes

    def __call__(self, request: HttpRequest) -> HttpResponse:
        route = self.routes().get(request.path_info) if request.method == "POST" else None
        values = self._fast_values(request, route[1]) if route is not None else None
        if route is None or values is None:
            return self.get_response(request)
        match, _, serve = route
        request.resolver_match = match  # the metrics label, as if resolved
        try:
            status_code, body = serve(values, getattr(request, "request_id", ""))
            headers: dict[str, str] = {}
        except Exception as exc:
            parts = domain_error_parts(exc)
            if parts is None:
                raise  # Django's 500 handling, as from the view
            status_code, body, headers = parts
        response = HttpResponse(
            _encode(body), status=status_code, content_type=_JSON_TYPE, headers=headers
        )
        response["Content-Length"] = str(len(response.content))
        if status_code >= 400:
            response.data = body  # type: ignore[attr-defined]  # read by the metrics middleware
        return self.frame_options.process_response(request, response)

    @staticmethod
    def _fast_values(request: HttpRequest, parse: Any) -> dict[str, Any] | None:
        """The route's validated input, or None when the request must go to the view."""
        charset = (request.content_params or {}).get("charset", "utf-8").lower()
        if request.content_type != _JSON_TYPE or charset not in ("utf-8", "utf8"):
            return None
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length <= 0 or (limit is not None and length > limit):
            return None
        try:
            data = json.loads(request.body.decode("utf-8"), parse_constant=_reject_constant)
        except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
            return None
        values: dict[str, Any] | None = parse(data)
        return values
