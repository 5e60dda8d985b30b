"""Permission classes for the two token scopes."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from core.authentication import Principal


def principal_of(request: Request) -> Principal:
    user = request.user
    assert isinstance(user, Principal)  # guaranteed by the permission classes below
    return user


class IsOperator(BasePermission):
    message = "This operation needs an operator token."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Principal) and request.user.is_operator


class IsOperatorOrCustomer(BasePermission):
    """Any valid token; customer tokens are then scoped by the selectors."""

    message = "This operation needs an API token."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Principal)
