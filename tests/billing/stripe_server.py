"""A Stripe-compatible test server: a real HTTP server on a loopback port that the real
`stripe` library talks to (STRIPE_API_BASE points at it).

Stateful for what billing uses: customers, invoices (draft → open → paid | void), invoice
items, finalize, send, pay, void. Idempotency keys are checked like Stripe does: the same key
with the same parameters replays the first response (header Idempotent-Replayed: true); the
same key with other parameters is a 400 idempotency_error. It signs and POSTs webhook events
(Stripe-Signature: t=<unix>,v1=<HMAC-SHA256 of "t.body">) to the URL it is given.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import requests


def stripe_signature(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class StripeError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


@dataclass
class Logged:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    replayed: bool


@dataclass
class FakeStripe:
    api_key: str
    webhook_secret: str
    webhook_url: str = ""
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    _keys: dict[str, tuple[str, int, bytes]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    # --- server -----------------------------------------------------------------------------

    def start(self) -> FakeStripe:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                path = self.path.split("?", 1)[0]
                status, body, replayed = fake.handle(
                    method,
                    path,
                    raw,
                    self.headers.get("Authorization", ""),
                    self.headers.get("Idempotency-Key"),
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Request-Id", f"req_{next(fake._ids)}")
                if replayed:
                    self.send_header("Idempotent-Replayed", "true")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(
        self, method: str, path: str, raw: str, auth: str, key: str | None
    ) -> tuple[int, bytes, bool]:
        if auth != f"Bearer {self.api_key}":
            return 401, _error("invalid_request_error", "Invalid API Key provided"), False
        pairs = sorted(parse_qsl(raw, keep_blank_values=True))
        params = _nest(pairs)
        fingerprint = json.dumps([method, path, pairs])
        with self._lock:
            if method == "POST" and key is not None and key in self._keys:
                first, status, body = self._keys[key]
                if first != fingerprint:
                    self.log.append(Logged(method, path, params, key, False))
                    return (
                        400,
                        _error(
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with.",
                        ),
                        False,
                    )
                self.log.append(Logged(method, path, params, key, True))
                return status, body, True
            try:
                status, obj = 200, self._route(method, path, params)
                body = json.dumps(obj).encode()
            except StripeError as exc:
                status, body = exc.status, _error(exc.kind, exc.message)
            self.log.append(Logged(method, path, params, key, False))
            if method == "POST" and key is not None:
                self._keys[key] = (fingerprint, status, body)
            return status, body, False

    # --- resources --------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):06d}"

    def _route(self, method: str, path: str, p: dict[str, Any]) -> dict[str, Any]:
        if path == "/v1/customers" and method == "POST":
            cid = self._new_id("cus")
            self.customers[cid] = {
                "id": cid,
                "object": "customer",
                "name": p.get("name"),
                "email": p.get("email"),
                "metadata": p.get("metadata", {}),
            }
            return self.customers[cid]
        if m := re.fullmatch(r"/v1/customers/(\w+)", path):
            return self._get(self.customers, m.group(1), "customer")
        if path == "/v1/invoices" and method == "POST":
            customer = p.get("customer", "")
            self._get(self.customers, customer, "customer")
            iid = self._new_id("in")
            self.invoices[iid] = {
                "id": iid,
                "object": "invoice",
                "status": "draft",
                "customer": customer,
                "currency": p.get("currency"),
                "auto_advance": p.get("auto_advance") == "true",
                "collection_method": p.get("collection_method"),
                "days_until_due": int(p.get("days_until_due", 0) or 0),
                "description": p.get("description"),
                "metadata": p.get("metadata", {}),
                "number": None,
                "total": 0,
                "amount_due": 0,
                "amount_paid": 0,
                "sent": False,
                "lines": {"object": "list", "data": [], "has_more": False},
            }
            return self._public(self.invoices[iid])
        if path == "/v1/invoiceitems" and method == "POST":
            invoice = self._get(self.invoices, p.get("invoice", ""), "invoice")
            if invoice["status"] != "draft":
                raise StripeError(400, "invalid_request_error", "The invoice is not a draft.")
            if p.get("customer") != invoice["customer"]:
                raise StripeError(400, "invalid_request_error", "Customer mismatch.")
            if not re.fullmatch(r"-?\d+", p.get("amount", "")):
                raise StripeError(400, "invalid_request_error", "amount must be an integer.")
            ii = self._new_id("ii")
            item = {
                "id": ii,
                "object": "invoiceitem",
                "amount": int(p["amount"]),
                "currency": p.get("currency"),
                "customer": p["customer"],
                "invoice": invoice["id"],
                "description": p.get("description"),
                "metadata": p.get("metadata", {}),
            }
            self.items[ii] = item
            invoice["lines"]["data"].append(item)
            invoice["total"] = invoice["amount_due"] = sum(
                i["amount"] for i in invoice["lines"]["data"]
            )
            return item
        if m := re.fullmatch(r"/v1/invoices/(\w+)(?:/(finalize|send|pay|void))?", path):
            invoice = self._get(self.invoices, m.group(1), "invoice")
            action = m.group(2)
            if action is None:
                return self._public(invoice)
            return self._public(self._transition(invoice, action))
        raise StripeError(404, "invalid_request_error", f"Unrecognized request URL ({path}).")

    def _transition(self, invoice: dict[str, Any], action: str) -> dict[str, Any]:
        allowed = {"finalize": "draft", "send": "open", "pay": "open", "void": "open"}
        if invoice["status"] != allowed[action]:
            raise StripeError(
                400, "invalid_request_error", f"Cannot {action} an invoice in {invoice['status']}."
            )
        if action == "finalize":
            invoice["status"] = "open"
            invoice["number"] = f"FAKE-{next(self._ids):04d}"
        elif action == "send":
            invoice["sent"] = True
        elif action == "pay":
            invoice["status"] = "paid"
            invoice["amount_paid"], invoice["amount_due"] = invoice["total"], 0
        elif action == "void":
            invoice["status"] = "void"
        return invoice

    def _get(self, table: dict[str, dict[str, Any]], key: str, kind: str) -> dict[str, Any]:
        if key not in table:
            raise StripeError(404, "invalid_request_error", f"No such {kind}: '{key}'")
        return table[key]

    @staticmethod
    def _public(invoice: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in invoice.items() if k != "sent"}

    # --- what a test does "in the Stripe dashboard" -------------------------------------------

    def pay(self, invoice_id: str) -> requests.Response:
        with self._lock:
            invoice = self._transition(self.invoices[invoice_id], "pay")
        return self.emit("invoice.paid", self._public(invoice))

    def void(self, invoice_id: str) -> requests.Response:
        with self._lock:
            invoice = self._transition(self.invoices[invoice_id], "void")
        return self.emit("invoice.voided", self._public(invoice))

    def fail_payment(self, invoice_id: str) -> requests.Response:
        return self.emit("invoice.payment_failed", self._public(self.invoices[invoice_id]))

    def event(self, kind: str, obj: dict[str, Any], *, created: int | None = None) -> bytes:
        event = {
            "id": self._new_id("evt"),
            "object": "event",
            "type": kind,
            "created": int(time.time()) if created is None else created,
            "api_version": "2025-01-01",
            "data": {"object": obj},
        }
        self.events.append(event)
        return json.dumps(event).encode()

    def deliver(
        self, payload: bytes, *, timestamp: int | None = None, secret: str | None = None
    ) -> requests.Response:
        """POST a (re)delivery of an event body, signed as Stripe does."""
        signature = stripe_signature(payload, secret or self.webhook_secret, timestamp)
        return requests.post(
            self.webhook_url,
            data=payload,
            headers={"Content-Type": "application/json", "Stripe-Signature": signature},
            timeout=30,
        )

    def emit(self, kind: str, obj: dict[str, Any]) -> requests.Response:
        return self.deliver(self.event(kind, obj))

    def requests_to(self, path_prefix: str) -> list[Logged]:
        return [entry for entry in self.log if entry.path.startswith(path_prefix)]


def _error(kind: str, message: str) -> bytes:
    return json.dumps({"error": {"type": kind, "message": message}}).encode()


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """a[b]=c form keys → {"a": {"b": "c"}} (one level: what billing sends)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if m := re.fullmatch(r"(\w+)\[(\w+)\]", key):
            out.setdefault(m.group(1), {})[m.group(2)] = value
        else:
            out[key] = value
    return out
