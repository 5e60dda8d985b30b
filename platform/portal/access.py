"""Who is asking and what they may do: every portal query is scoped through `Access`.

A signed-in user belongs to exactly one customer (customers.services.customer_user_add keeps
it so). `Access.customer_id` is passed to every selector as `scope_customer_id`, so another
customer's object is simply not found (404), never shown. Admins change things; viewers
read: `admin_required` refuses a viewer's POST on the server, whatever the page showed.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, cast

from customers.models import Customer, CustomerUser
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponseBase
from django.shortcuts import render

from core.audit import Actor
from core.models import AuditLog

P = ParamSpec("P")


@dataclass(frozen=True)
class Access:
    membership: CustomerUser
    request_id: str

    @property
    def customer(self) -> Customer:
        return self.membership.customer

    @property
    def customer_id(self) -> uuid.UUID:
        return self.membership.customer_id

    @property
    def is_admin(self) -> bool:
        return self.membership.role == CustomerUser.Role.ADMIN

    @property
    def actor(self) -> Actor:
        # Portal changes are the customer's own, like a customer token's; the label says which
        # person made them.
        return Actor(
            kind=AuditLog.ActorKind.CUSTOMER,
            label=f"portal:{self.membership.user.get_username()}",
            request_id=self.request_id,
        )


def access_of(request: HttpRequest) -> Access | None:
    user_pk = request.user.pk
    if user_pk is None:
        return None
    membership = (
        CustomerUser.objects.select_related("customer", "user").filter(user_id=user_pk).first()
    )
    if membership is None:
        return None
    return Access(membership=membership, request_id=getattr(request, "request_id", ""))


View = Callable[Concatenate[HttpRequest, Access, P], HttpResponseBase]


def portal_view(view: View[P]) -> Callable[Concatenate[HttpRequest, P], HttpResponseBase]:
    """Signed in and a member of a customer; the view receives its `Access`."""

    @login_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
        access = access_of(request)
        if access is None:
            return render(request, "portal/no_customer.html", status=403)
        request.portal_access = access  # type: ignore[attr-defined]
        try:
            return view(request, access, *args, **kwargs)
        except Http404:
            return render(request, "portal/404.html", {"access": access}, status=404)

    return cast("Callable[Concatenate[HttpRequest, P], HttpResponseBase]", wrapper)


def admin_required(view: View[P]) -> View[P]:
    """Writes are for admins: a viewer's POST is refused with 403 before the view runs (the
    buttons are hidden too, but hiding is not enforcement)."""

    @functools.wraps(view)
    def wrapper(
        request: HttpRequest, access: Access, *args: P.args, **kwargs: P.kwargs
    ) -> HttpResponseBase:
        if not access.is_admin:
            return render(request, "portal/403.html", {"access": access}, status=403)
        return view(request, access, *args, **kwargs)

    return cast("View[P]", wrapper)
