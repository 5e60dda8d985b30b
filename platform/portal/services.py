"""Writes of the portal: sign-in failures and lockout, TOTP devices, and team membership.

Everything else the portal changes goes through the owning app's service (tokens: core,
deactivation: activation, jobs: jobs); these are the writes no other app owns.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import pyotp
from customers.models import CustomerUser
from customers.services import customer_user_add
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from core import sealing
from core.audit import Actor, audit_record
from core.errors import Conflict, DomainError, NotFound
from core.models import AuditLog
from portal.models import LoginFailure, PasswordResetRequest, TotpDevice

TOTP_STEP_S = 30


def _max_failures() -> int:
    return int(getattr(settings, "PORTAL_LOGIN_MAX_FAILURES", 5))


def _ip_max_failures() -> int:
    return int(getattr(settings, "PORTAL_LOGIN_IP_MAX_FAILURES", 50))


def _lockout_window() -> dt.timedelta:
    return dt.timedelta(seconds=int(getattr(settings, "PORTAL_LOGIN_LOCKOUT_S", 15 * 60)))


def _norm(username: str) -> str:
    # "Alice" and "alice " must share one counter, or changing case would reset the lockout.
    return username.strip().lower()[:150]


# --- sign-in failures and lockout --------------------------------------------------------------


def login_lockout_remaining_s(*, username: str, ip: str, now: dt.datetime | None = None) -> int:
    """Seconds until this username may try again from this IP (0: not locked). Locked when
    the pair has PORTAL_LOGIN_MAX_FAILURES failures inside the window, or the IP alone has
    PORTAL_LOGIN_IP_MAX_FAILURES (one address spraying many usernames). Reads only."""
    now = now or timezone.now()
    since = now - _lockout_window()
    recent = LoginFailure.objects.filter(ip=ip, created_at__gt=since)
    pair = recent.filter(username=_norm(username)).order_by("-created_at")
    oldest_counted: dt.datetime | None = None
    pair_times = list(pair.values_list("created_at", flat=True)[: _max_failures()])
    if len(pair_times) >= _max_failures():
        oldest_counted = pair_times[-1]
    else:
        ip_times = list(
            recent.order_by("-created_at").values_list("created_at", flat=True)[
                : _ip_max_failures()
            ]
        )
        if len(ip_times) >= _ip_max_failures():
            oldest_counted = ip_times[-1]
    if oldest_counted is None:
        return 0
    return max(1, int((oldest_counted + _lockout_window() - now).total_seconds()))


def login_failure_record(*, username: str, ip: str) -> None:
    """Count one failed sign-in of username+IP (append-only; pruned by age on each write)."""
    now = timezone.now()
    with transaction.atomic():
        LoginFailure.objects.create(username=_norm(username), ip=ip, created_at=now)
        # Rows older than the window never count again; keep the table small.
        LoginFailure.objects.filter(created_at__lt=now - 4 * _lockout_window()).delete()


def login_failures_clear(*, username: str, ip: str) -> None:
    """A successful sign-in forgives the pair's earlier failures."""
    LoginFailure.objects.filter(username=_norm(username), ip=ip).delete()


# --- password-reset requests ------------------------------------------------------------------


def password_reset_allowed(*, email: str, ip: str, now: dt.datetime | None = None) -> bool:
    """Record one reset request; True when a mail may go out: fewer than
    PORTAL_RESET_EMAIL_MAX requests for this address and PORTAL_RESET_IP_MAX from this IP
    inside PORTAL_RESET_WINDOW_S (refused requests count too, so hammering never helps)."""
    now = now or timezone.now()
    window = dt.timedelta(seconds=int(getattr(settings, "PORTAL_RESET_WINDOW_S", 3600)))
    email = email.strip().lower()[:254]
    since = now - window
    with transaction.atomic():
        recent = PasswordResetRequest.objects.filter(created_at__gt=since)
        allowed = recent.filter(email=email).count() < int(
            getattr(settings, "PORTAL_RESET_EMAIL_MAX", 3)
        ) and recent.filter(ip=ip).count() < int(getattr(settings, "PORTAL_RESET_IP_MAX", 20))
        PasswordResetRequest.objects.create(email=email, ip=ip, created_at=now)
        PasswordResetRequest.objects.filter(created_at__lt=now - 4 * window).delete()
    return allowed


# --- TOTP two-factor -------------------------------------------------------------------------


def totp_device_of(user: AbstractBaseUser) -> TotpDevice | None:
    return TotpDevice.objects.filter(user_id=user.pk).first()


def totp_has_confirmed(user: AbstractBaseUser) -> bool:
    return TotpDevice.objects.filter(user_id=user.pk, confirmed_at__isnull=False).exists()


_TOTP_PURPOSE = sealing.Purpose(
    salt=b"codec-control-plane/portal-totp", info=b"aes-256-gcm totp seed envelope v1"
)


def _totp_aad(user_id: Any) -> bytes:
    return f"portal-totp:{user_id}".encode()


def totp_seal_secret(user_id: Any, secret: str) -> bytes:
    return sealing.seal(_TOTP_PURPOSE, _totp_aad(user_id), secret.encode())


def totp_secret(device: TotpDevice) -> str:
    """The device's base32 seed (shown once during enrolment, and to check codes)."""
    return sealing.unseal(_TOTP_PURPOSE, _totp_aad(device.user_id), device.sealed_secret).decode()


def totp_begin(*, user: AbstractBaseUser) -> TotpDevice:
    """Start (or restart) enrolment with a fresh secret. Refused while a confirmed device
    exists: turn it off first. No audit row (nothing is in force until confirmed)."""
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user_id=user.pk).first()
        if device is not None and device.confirmed:
            raise Conflict("Two-factor sign-in is already on.", code="TOTP_ALREADY_ON")
        if device is None:
            device = TotpDevice(user_id=user.pk)
        device.sealed_secret = totp_seal_secret(user.pk, pyotp.random_base32())
        device.last_step = 0
        device.save()
    return device


def totp_provisioning_uri(device: TotpDevice, *, username: str, issuer: str) -> str:
    return pyotp.TOTP(totp_secret(device)).provisioning_uri(name=username, issuer_name=issuer)


def _accept_code(device: TotpDevice, code: str) -> bool:
    """True when `code` is valid now (±1 step for clock drift) and its step is newer than the
    last accepted one; the step is then recorded with a conditional update (no replay, even
    by two requests at once)."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return False
    totp = pyotp.TOTP(totp_secret(device))
    now_step = int(timezone.now().timestamp()) // TOTP_STEP_S
    for step in (now_step - 1, now_step, now_step + 1):
        if step > device.last_step and totp.at(step * TOTP_STEP_S) == code:
            changed = TotpDevice.objects.filter(pk=device.pk, last_step__lt=step).update(
                last_step=step
            )
            return bool(changed)
    return False


def totp_confirm(
    *, actor: Actor, user: AbstractBaseUser, customer_id: uuid.UUID, code: str
) -> None:
    """Turn two-factor sign-in on with the first valid code. Audit row."""
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user_id=user.pk).first()
        if device is None or device.confirmed:
            raise Conflict("Start enrolment first.", code="TOTP_NOT_PENDING")
        if not _accept_code(device, code):
            raise DomainError("That code is not valid. Try the newest one.", code="TOTP_INVALID")
        device.confirmed_at = timezone.now()
        device.save(update_fields=["confirmed_at"])
        audit_record(
            actor=actor,
            action="portal.totp_enable",
            object_type="user",
            object_id=user.pk,
            customer_id=customer_id,
        )


def totp_verify(*, user: AbstractBaseUser, code: str) -> bool:
    """Check a sign-in code against the user's confirmed device. No audit row (sign-in)."""
    device = TotpDevice.objects.filter(user_id=user.pk, confirmed_at__isnull=False).first()
    return device is not None and _accept_code(device, code)


RECOVERY_CODES = 10
_RECOVERY_PURPOSE = sealing.Purpose(
    salt=b"codec-control-plane/portal-recovery", info=b"hmac-sha256 recovery code v1"
)
_RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l: read off paper
RECOVERY_CODE_RE = re.compile(r"^[a-z2-9]{5}-?[a-z2-9]{5}$")


def _recovery_digest(user_id: Any, code: str) -> str:
    normal = code.strip().lower().replace("-", "").replace(" ", "")
    return sealing.keyed_digest(_RECOVERY_PURPOSE, f"{user_id}:{normal}".encode())


def looks_like_recovery_code(code: str) -> bool:
    return bool(RECOVERY_CODE_RE.match(code.strip().lower().replace(" ", "")))


def _confirmed_device_locked(user: AbstractBaseUser) -> TotpDevice | None:
    """The user's confirmed TOTP device, row-locked (inside the caller's transaction)."""
    return (
        TotpDevice.objects.select_for_update()
        .filter(user_id=user.pk, confirmed_at__isnull=False)
        .first()
    )


def totp_recovery_codes_issue(
    *, actor: Actor, user: AbstractBaseUser, customer_id: uuid.UUID
) -> list[str]:
    """Ten new one-time recovery codes (50 bits each) for a user with two-factor on; the old
    ones stop working. Only keyed digests are stored: the codes are shown this once. Audit."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    with transaction.atomic():
        device = _confirmed_device_locked(user)
        if device is None:
            raise Conflict("Turn two-factor sign-in on first.", code="TOTP_NOT_ON")
        device.recovery_code_digests = [_recovery_digest(user.pk, code) for code in codes]
        device.save(update_fields=["recovery_code_digests"])
        audit_record(
            actor=actor,
            action="portal.totp_recovery_codes_issue",
            object_type="user",
            object_id=user.pk,
            customer_id=customer_id,
        )
    return codes


def totp_recovery_code_use(*, user: AbstractBaseUser, code: str, request_id: str = "") -> bool:
    """Sign-in with a recovery code instead of the app's code: True once per code (it is
    struck off under the row lock, so two requests cannot both use it). Audit row."""
    if not looks_like_recovery_code(code):
        return False
    presented = _recovery_digest(user.pk, code)
    with transaction.atomic():
        device = _confirmed_device_locked(user)
        if device is None:
            return False
        digests = list(device.recovery_code_digests or [])
        matched = [d for d in digests if hmac.compare_digest(d, presented)]
        if not matched:
            return False
        device.recovery_code_digests = [d for d in digests if d not in matched]
        device.save(update_fields=["recovery_code_digests"])
        membership = CustomerUser.objects.filter(user_id=user.pk).first()
        audit_record(
            actor=Actor(
                kind=AuditLog.ActorKind.CUSTOMER,
                label=f"portal:{user.get_username()}",
                request_id=request_id,
            ),
            action="portal.totp_recovery_code_use",
            object_type="user",
            object_id=user.pk,
            customer_id=membership.customer_id if membership else None,
            changes={"recovery_codes_left": len(device.recovery_code_digests)},
        )
    return True


def totp_disable(*, actor: Actor, user: AbstractBaseUser, customer_id: uuid.UUID) -> None:
    """Turn two-factor sign-in off (the view has re-checked the password). Audit row."""
    with transaction.atomic():
        deleted, _ = TotpDevice.objects.filter(user_id=user.pk).delete()
        if deleted:
            audit_record(
                actor=actor,
                action="portal.totp_disable",
                object_type="user",
                object_id=user.pk,
                customer_id=customer_id,
            )


# --- team --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invitation:
    membership: CustomerUser
    set_password_url: str  # absolute; valid until used or PASSWORD_RESET_TIMEOUT passes


def set_password_path(user: AbstractBaseUser) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)  # type: ignore[arg-type]
    return reverse("portal:password_reset_confirm", kwargs={"uidb64": uid, "token": token})


def team_member_invite(
    *,
    actor: Actor,
    customer_id: uuid.UUID,
    username: str,
    email: str,
    role: str,
    site_url: str,
    customer_name: str,
) -> Invitation:
    """Create a new user in the customer with a role and no usable password, and e-mail them a
    one-time link to set one (after commit). A username that exists anywhere is a 409
    USERNAME_TAKEN: an invitation never adopts an existing account. Audit row (customers)."""
    user_model = get_user_model()
    with transaction.atomic():
        if user_model.objects.filter(username__iexact=username).exists():
            raise Conflict("That username is taken.", code="USERNAME_TAKEN")
        membership = customer_user_add(
            actor=actor, customer_id=customer_id, username=username, email=email, role=role
        )
        user = membership.user
        user.set_unusable_password()
        user.save(update_fields=["password"])
        link = site_url.rstrip("/") + set_password_path(user)
        transaction.on_commit(
            lambda: send_mail(
                subject=f"You are invited to the {customer_name} codec portal",
                message=(
                    f"{actor.label.removeprefix('portal:')} added you to {customer_name}'s "
                    f"portal as {role}.\n\nYour username: {username}\n"
                    f"Choose your password here (the link works once):\n{link}\n"
                ),
                from_email=None,
                recipient_list=[email],
                fail_silently=True,
            )
        )
    return Invitation(membership=membership, set_password_url=link)


def _locked_members(customer_id: uuid.UUID) -> list[CustomerUser]:
    # Locking every membership of the customer serialises the "last admin" checks.
    return list(
        CustomerUser.objects.select_for_update()
        .select_related("user")
        .filter(customer_id=customer_id)
        .order_by("pk")
    )


def _member(members: list[CustomerUser], membership_id: int) -> CustomerUser:
    for member in members:
        if member.pk == membership_id:
            return member
    raise NotFound("No such team member.", code="MEMBER_NOT_FOUND")


def _admins(members: list[CustomerUser]) -> int:
    return sum(m.role == CustomerUser.Role.ADMIN for m in members)


def team_member_set_role(
    *, actor: Actor, customer_id: uuid.UUID, membership_id: int, role: str
) -> CustomerUser:
    """Change a member's role (customers.services.customer_user_add writes it and the audit
    row). The customer always keeps one admin: 409 LAST_ADMIN otherwise."""
    with transaction.atomic():
        members = _locked_members(customer_id)
        member = _member(members, membership_id)
        if (
            member.role == CustomerUser.Role.ADMIN
            and role != CustomerUser.Role.ADMIN
            and _admins(members) == 1
        ):
            raise Conflict("The team needs at least one admin.", code="LAST_ADMIN")
        return customer_user_add(
            actor=actor,
            customer_id=customer_id,
            username=member.user.get_username(),
            role=role,
        )


def team_member_remove(
    *, actor: Actor, customer_id: uuid.UUID, membership_id: int, by_user_id: int
) -> None:
    """Remove a member from the customer and switch their account off (an account without a
    customer has no use, and an inactive user's sessions stop working at once). Refused: your
    own membership (409 CANNOT_REMOVE_SELF) and the last admin (409 LAST_ADMIN). Audit row."""
    with transaction.atomic():
        members = _locked_members(customer_id)
        member = _member(members, membership_id)
        if member.user_id == by_user_id:
            raise Conflict("You cannot remove yourself.", code="CANNOT_REMOVE_SELF")
        if member.role == CustomerUser.Role.ADMIN and _admins(members) == 1:
            raise Conflict("The team needs at least one admin.", code="LAST_ADMIN")
        user = member.user
        member.delete()
        if not user.is_staff and not CustomerUser.objects.filter(user_id=user.pk).exists():
            user.is_active = False
            user.save(update_fields=["is_active"])
        audit_record(
            actor=actor,
            action="customer_user.remove",
            object_type="customer_user",
            object_id=membership_id,
            customer_id=customer_id,
            changes={"username": user.get_username(), "role": member.role},
        )
