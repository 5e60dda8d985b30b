"""Portal pages (healthchecks style): function views with decorators; `Access` scopes every
query to the signed-in user's customer; a form validates; a service writes.

Object URLs of another customer answer 404 (the scoped selector finds nothing). Every POST
that changes something is wrapped in `admin_required`, so a viewer is refused on the server.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
import zipfile
from typing import Any

from activation.models import Activation
from activation.selectors import activation_get, activation_list
from activation.services import activation_deactivate
from billing import documents
from billing.selectors import invoice_get, invoice_list
from customers.models import CustomerUser
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, get_user_model, login, logout
from django.contrib.auth import views as auth_views
from django.core.files.storage import default_storage
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from jobs.inputs import frame_members
from jobs.models import EncodeJob
from jobs.selectors import encode_job_get, encode_job_list
from jobs.services import encode_job_cancel, encode_job_submit
from licences.selectors import licence_get, licence_list

from core.errors import DomainError
from core.selectors import api_token_list
from core.services import api_token_create, api_token_revoke
from portal import forms, selectors, services
from portal.access import Access, admin_required, portal_view

logger = logging.getLogger(__name__)

PAGE_SIZE = 25
TWO_FACTOR_SESSION_KEY = "portal_2fa_pending"
TWO_FACTOR_TTL_S = 300


def _page(request: HttpRequest, qs: QuerySet[Any]) -> Page[Any]:
    return Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))


def _client_ip(request: HttpRequest) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is written by the client unless a trusted proxy
    # rewrites it, and a lockout keyed on it could be dodged by changing the header.
    return request.META.get("REMOTE_ADDR") or "0.0.0.0"  # noqa: S104


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset view, with a cap on mails per address and per IP. Over the cap the
    same "sent" page is shown and nothing is mailed: the page never tells whether an
    address exists or was capped."""

    def form_valid(self, form: Any) -> HttpResponse:
        email = form.cleaned_data["email"]
        if services.password_reset_allowed(email=email, ip=_client_ip(self.request)):
            return super().form_valid(form)
        logger.info("password reset not mailed: the per-address or per-IP cap is reached")
        return HttpResponseRedirect(self.get_success_url())


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("portal:dashboard")


def _refused(request: HttpRequest, exc: DomainError) -> None:
    messages.error(request, exc.message)


def _locked_message(seconds: int) -> str:
    minutes = max(1, (seconds + 59) // 60)
    return (
        f"Too many failed sign-in attempts. For your security, sign-in is paused for "
        f"{minutes} minute{'s' if minutes != 1 else ''}."
    )


# --- sign in, second factor, sign out ----------------------------------------------------------


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(_safe_next(request, request.GET.get("next")))
    form = forms.SignInForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        username, ip = form.cleaned_data["username"], _client_ip(request)
        locked = services.login_lockout_remaining_s(username=username, ip=ip)
        if locked:
            form.add_error(None, _locked_message(locked))
            status = 429
        else:
            user = authenticate(request, username=username, password=form.cleaned_data["password"])
            if user is None:
                services.login_failure_record(username=username, ip=ip)
                locked = services.login_lockout_remaining_s(username=username, ip=ip)
                form.add_error(
                    None, _locked_message(locked) if locked else "Wrong username or password."
                )
                status = 429 if locked else 200
            else:
                services.login_failures_clear(username=username, ip=ip)
                next_url = _safe_next(request, request.POST.get("next"))
                if services.totp_has_confirmed(user):
                    request.session.cycle_key()
                    request.session[TWO_FACTOR_SESSION_KEY] = {
                        "user_id": user.pk,
                        "backend": getattr(user, "backend", ""),
                        "at": time.time(),
                        "next": next_url,
                    }
                    return redirect("portal:sign_in_verify")
                login(request, user)
                return HttpResponseRedirect(next_url)
    return render(
        request,
        "portal/sign_in.html",
        {"form": form, "next": request.POST.get("next") or request.GET.get("next", "")},
        status=status,
    )


@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def sign_in_verify(request: HttpRequest) -> HttpResponse:
    pending = request.session.get(TWO_FACTOR_SESSION_KEY)
    if not pending or time.time() - float(pending.get("at", 0)) > TWO_FACTOR_TTL_S:
        request.session.pop(TWO_FACTOR_SESSION_KEY, None)
        messages.info(request, "Sign in again to continue.")
        return redirect("portal:sign_in")
    user_model = get_user_model()
    user = user_model.objects.filter(pk=pending["user_id"], is_active=True).first()
    if user is None:
        return redirect("portal:sign_in")
    form = forms.SignInCodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        username, ip = user.get_username(), _client_ip(request)
        code = form.cleaned_data["code"]
        locked = services.login_lockout_remaining_s(username=username, ip=ip)
        if locked:
            form.add_error(None, _locked_message(locked))
            status = 429
        elif (
            services.totp_recovery_code_use(
                user=user, code=code, request_id=getattr(request, "request_id", "")
            )
            if services.looks_like_recovery_code(code)
            else services.totp_verify(user=user, code=code)
        ):
            services.login_failures_clear(username=username, ip=ip)
            del request.session[TWO_FACTOR_SESSION_KEY]
            login(request, user, backend=pending["backend"] or None)
            return HttpResponseRedirect(_safe_next(request, pending.get("next")))
        else:
            services.login_failure_record(username=username, ip=ip)
            form.add_error("code", "That code is not valid. Try the newest one.")
    return render(request, "portal/sign_in_verify.html", {"form": form}, status=status)


@require_POST
@csrf_protect
def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    messages.success(request, "You have signed out.")
    return redirect("portal:sign_in")


# --- dashboard ---------------------------------------------------------------------------------


@require_GET
@portal_view
def dashboard(request: HttpRequest, access: Access) -> HttpResponse:
    summary = selectors.dashboard_summary(
        customer_id=access.customer_id, today=timezone.now().date()
    )
    recent_jobs = encode_job_list(scope_customer_id=access.customer_id)[:5]
    return render(
        request,
        "portal/dashboard.html",
        {"access": access, "nav": "dashboard", "d": summary, "recent_jobs": recent_jobs},
    )


# --- licences and devices ----------------------------------------------------------------------


@require_GET
@portal_view
def licences(request: HttpRequest, access: Access) -> HttpResponse:
    rows = licence_list(scope_customer_id=access.customer_id)
    return render(
        request, "portal/licences.html", {"access": access, "nav": "licences", "licences": rows}
    )


@require_GET
@portal_view
def licence_detail(request: HttpRequest, access: Access, licence_id: uuid.UUID) -> HttpResponse:
    licence = licence_get(licence_id=licence_id, scope_customer_id=access.customer_id)
    if licence is None:
        raise Http404
    activations = activation_list(scope_customer_id=access.customer_id, licence_id=licence.pk)
    return render(
        request,
        "portal/licence_detail.html",
        {
            "access": access,
            "nav": "licences",
            "licence": licence,
            "activations": _page(request, activations),
        },
    )


@require_GET
@portal_view
def devices(request: HttpRequest, access: Access) -> HttpResponse:
    state = request.GET.get("state", Activation.State.ACTIVE)
    if state not in Activation.State.values and state != "all":
        state = Activation.State.ACTIVE
    rows = activation_list(
        scope_customer_id=access.customer_id, state=None if state == "all" else state
    ).select_related("licence__policy__product")
    return render(
        request,
        "portal/devices.html",
        {
            "access": access,
            "nav": "devices",
            "activations": _page(request, rows),
            "state": state,
            "states": [("active", "Active"), ("all", "All"), *Activation.State.choices[1:]],
        },
    )


@require_http_methods(["GET", "POST"])
@portal_view
@admin_required
def device_deactivate(
    request: HttpRequest, access: Access, activation_id: uuid.UUID
) -> HttpResponse:
    activation = activation_get(activation_id=activation_id, scope_customer_id=access.customer_id)
    if activation is None:
        raise Http404
    back = reverse("portal:licence_detail", args=[activation.licence_id])
    if request.method == "POST":
        try:
            activation_deactivate(
                actor=access.actor, activation_id=activation.pk, enforce_rate_limit=True
            )
        except DomainError as exc:
            _refused(request, exc)
        else:
            messages.success(
                request,
                f"{activation.hostname or activation.platform} was deactivated; its seat is free.",
            )
        return redirect(back)
    return render(
        request,
        "portal/device_deactivate.html",
        {"access": access, "nav": "licences", "activation": activation, "back": back},
    )


# --- API tokens --------------------------------------------------------------------------------


# never_cache: the secret is on this page once; keep it out of caches and the back button.
@never_cache
@require_http_methods(["GET", "POST"])
@portal_view
def tokens(request: HttpRequest, access: Access) -> HttpResponse:
    form = forms.TokenCreateForm(request.POST or None)
    created = None
    if request.method == "POST":
        if not access.is_admin:
            return render(request, "portal/403.html", {"access": access}, status=403)
        if form.is_valid():
            try:
                created = api_token_create(
                    actor=access.actor,
                    name=form.cleaned_data["name"],
                    scope="customer",
                    customer_id=access.customer_id,
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                form = forms.TokenCreateForm()
    rows = api_token_list(customer_id=access.customer_id)
    return render(
        request,
        "portal/tokens.html",
        {
            "access": access,
            "nav": "tokens",
            "form": form,
            "created": created,
            "tokens": _page(request, rows),
        },
    )


@require_http_methods(["GET", "POST"])
@portal_view
@admin_required
def token_revoke(request: HttpRequest, access: Access, token_id: uuid.UUID) -> HttpResponse:
    token = api_token_list(customer_id=access.customer_id).filter(pk=token_id).first()
    if token is None:
        raise Http404
    if request.method == "POST":
        try:
            api_token_revoke(actor=access.actor, token_id=token.pk)
        except DomainError as exc:
            _refused(request, exc)
        else:
            messages.success(request, f"Token “{token.name}” was revoked.")
        return redirect("portal:tokens")
    return render(
        request, "portal/token_revoke.html", {"access": access, "nav": "tokens", "token": token}
    )


# --- encode jobs -------------------------------------------------------------------------------


def _job_or_404(access: Access, job_id: uuid.UUID) -> EncodeJob:
    job = encode_job_get(job_id=job_id, scope_customer_id=access.customer_id)
    if job is None:
        raise Http404
    return job


@require_http_methods(["GET", "POST"])
@portal_view
def jobs(request: HttpRequest, access: Access) -> HttpResponse:
    usable = licence_list(scope_customer_id=access.customer_id, state="active")
    form = forms.JobUploadForm(request.POST or None, request.FILES or None, licences=usable)
    if request.method == "POST":
        if not access.is_admin:
            return render(request, "portal/403.html", {"access": access}, status=403)
        if form.is_valid():
            data = form.cleaned_data
            try:
                job = encode_job_submit(
                    actor=access.actor,
                    customer_id=access.customer_id,
                    upload=data["input"],
                    quality=data["quality"],
                    baseline=data["baseline"],
                    baseline_metric=data["baseline_metric"],
                    licence_id=data["licence"].pk if data["licence"] else None,
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                return redirect("portal:job_detail", job_id=job.pk)
    rows = encode_job_list(scope_customer_id=access.customer_id)
    return render(
        request,
        "portal/jobs.html",
        {"access": access, "nav": "jobs", "form": form, "jobs": _page(request, rows)},
        status=400 if form.errors else 200,
    )


def _job_context(access: Access, job: EncodeJob) -> dict[str, Any]:
    metrics = job.metrics or {}
    quality = metrics.get("quality", {})
    return {
        "access": access,
        "nav": "jobs",
        "job": job,
        "m": metrics,
        "ours": quality.get("ours", {}),
        "theirs": quality.get("baseline", {}),
        "baseline": metrics.get("baseline", {}),
    }


@require_GET
@portal_view
def job_detail(request: HttpRequest, access: Access, job_id: uuid.UUID) -> HttpResponse:
    return render(
        request, "portal/job_detail.html", _job_context(access, _job_or_404(access, job_id))
    )


@require_GET
@portal_view
def job_status(request: HttpRequest, access: Access, job_id: uuid.UUID) -> HttpResponse:
    """The live part of the job page, polled by htmx until the job has finished."""
    job = _job_or_404(access, job_id)
    return render(request, "portal/partials/job_status.html", _job_context(access, job))


@require_POST
@portal_view
@admin_required
def job_cancel(request: HttpRequest, access: Access, job_id: uuid.UUID) -> HttpResponse:
    job = _job_or_404(access, job_id)
    try:
        encode_job_cancel(actor=access.actor, job_id=job.pk, scope_customer_id=access.customer_id)
    except DomainError as exc:
        _refused(request, exc)
    else:
        messages.success(request, "The job was cancelled.")
    return redirect("portal:job_detail", job_id=job.pk)


def _succeeded_file(job: EncodeJob, name: str) -> Any:
    if job.state != EncodeJob.State.SUCCEEDED or not name:
        raise Http404
    return default_storage.open(name, "rb")


@require_GET
@portal_view
def job_output(request: HttpRequest, access: Access, job_id: uuid.UUID) -> FileResponse:
    job = _job_or_404(access, job_id)
    return FileResponse(
        _succeeded_file(job, job.output_file.name or ""),
        as_attachment=True,
        content_type="application/octet-stream",
        filename=f"{job.pk}.nce",
    )


@require_GET
@portal_view
def job_preview(request: HttpRequest, access: Access, job_id: uuid.UUID) -> FileResponse:
    job = _job_or_404(access, job_id)
    return FileResponse(_succeeded_file(job, job.preview_file.name or ""), content_type="image/png")


def _first_frame_png(job: EncodeJob) -> bytes:
    """The input's first frame as PNG, to show beside the decoded preview."""
    from PIL import Image

    with default_storage.open(job.input_file.name or "", "rb") as handle:
        if job.kind == EncodeJob.Kind.FRAMES:
            with zipfile.ZipFile(handle) as zf:
                members = frame_members(zf)
                if not members:
                    raise Http404
                image = Image.open(io.BytesIO(zf.read(members[0])))
                image.load()
        elif job.kind == EncodeJob.Kind.VIDEO:
            import av

            with av.open(handle, mode="r") as container:
                frame = next(container.decode(video=0), None)
                if frame is None:
                    raise Http404
                image = frame.to_image()  # type: ignore[no-untyped-call]
        else:
            image = Image.open(handle)
            image.load()
    out = io.BytesIO()
    image.convert("RGB").save(out, format="PNG")
    return out.getvalue()


@require_GET
@portal_view
def job_original(request: HttpRequest, access: Access, job_id: uuid.UUID) -> HttpResponse:
    job = _job_or_404(access, job_id)
    if not job.input_file.name or not default_storage.exists(job.input_file.name):
        raise Http404
    try:
        data = _first_frame_png(job)
    except (OSError, ValueError, zipfile.BadZipFile, DomainError) as exc:
        raise Http404 from exc
    response = HttpResponse(data, content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


# --- invoices ----------------------------------------------------------------------------------


@require_GET
@portal_view
def invoices(request: HttpRequest, access: Access) -> HttpResponse:
    rows = invoice_list(scope_customer_id=access.customer_id)
    return render(
        request,
        "portal/invoices.html",
        {"access": access, "nav": "invoices", "invoices": _page(request, rows)},
    )


@require_GET
@portal_view
def invoice_detail(request: HttpRequest, access: Access, invoice_id: uuid.UUID) -> HttpResponse:
    invoice = invoice_get(invoice_id=invoice_id, scope_customer_id=access.customer_id)
    if invoice is None:
        raise Http404
    return render(
        request,
        "portal/invoice_detail.html",
        {
            "access": access,
            "nav": "invoices",
            "invoice": invoice,
            "doc": documents.invoice_document(invoice),
            "overdue": bool(
                invoice.state == invoice.State.FINALIZED
                and invoice.due_date
                and invoice.due_date < timezone.now().date()
            ),
        },
    )


@require_GET
@portal_view
def invoice_pdf(request: HttpRequest, access: Access, invoice_id: uuid.UUID) -> HttpResponse:
    invoice = invoice_get(invoice_id=invoice_id, scope_customer_id=access.customer_id)
    if invoice is None:
        raise Http404
    response = HttpResponse(documents.invoice_pdf(invoice), content_type="application/pdf")
    response["Content-Disposition"] = (
        f'attachment; filename="invoice-{invoice.number or invoice.pk}.pdf"'
    )
    return response


# --- team --------------------------------------------------------------------------------------


def _members(access: Access) -> QuerySet[CustomerUser]:
    return (
        CustomerUser.objects.filter(customer_id=access.customer_id)
        .select_related("user")
        .order_by("user__username")
    )


@never_cache
@require_http_methods(["GET", "POST"])
@portal_view
def team(request: HttpRequest, access: Access) -> HttpResponse:
    form = forms.InviteForm(request.POST or None)
    invitation = None
    if request.method == "POST":
        if not access.is_admin:
            return render(request, "portal/403.html", {"access": access}, status=403)
        if form.is_valid():
            try:
                invitation = services.team_member_invite(
                    actor=access.actor,
                    customer_id=access.customer_id,
                    username=form.cleaned_data["username"],
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    site_url=request.build_absolute_uri("/"),
                    customer_name=access.customer.name,
                )
            except DomainError as exc:
                form.add_error("username" if exc.code == "USERNAME_TAKEN" else None, exc.message)
            else:
                form = forms.InviteForm()
    return render(
        request,
        "portal/team.html",
        {
            "access": access,
            "nav": "team",
            "form": form,
            "invitation": invitation,
            "members": _members(access),
            "roles": CustomerUser.Role.choices,
        },
    )


def _member_or_404(access: Access, membership_id: int) -> CustomerUser:
    member = _members(access).filter(pk=membership_id).first()
    if member is None:
        raise Http404
    return member


@require_POST
@portal_view
@admin_required
def team_role(request: HttpRequest, access: Access, membership_id: int) -> HttpResponse:
    member = _member_or_404(access, membership_id)
    form = forms.RoleForm(request.POST)
    if form.is_valid():
        try:
            services.team_member_set_role(
                actor=access.actor,
                customer_id=access.customer_id,
                membership_id=member.pk,
                role=form.cleaned_data["role"],
            )
        except DomainError as exc:
            _refused(request, exc)
        else:
            messages.success(
                request, f"{member.user.get_username()} is now {form.cleaned_data['role']}."
            )
    return redirect("portal:team")


@require_http_methods(["GET", "POST"])
@portal_view
@admin_required
def team_remove(request: HttpRequest, access: Access, membership_id: int) -> HttpResponse:
    member = _member_or_404(access, membership_id)
    if request.method == "POST":
        try:
            services.team_member_remove(
                actor=access.actor,
                customer_id=access.customer_id,
                membership_id=member.pk,
                by_user_id=access.membership.user_id,
            )
        except DomainError as exc:
            _refused(request, exc)
        else:
            messages.success(request, f"{member.user.get_username()} was removed from the team.")
        return redirect("portal:team")
    return render(
        request, "portal/team_remove.html", {"access": access, "nav": "team", "member": member}
    )


# --- account: two-factor sign-in ---------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
@portal_view
def account(request: HttpRequest, access: Access) -> HttpResponse:
    """Each user manages their own second factor (viewers too: it protects their account and
    changes nothing of the customer's)."""
    user = access.membership.user
    device = services.totp_device_of(user)
    code_form = forms.CodeForm()
    password_form = forms.PasswordConfirmForm()
    recovery_form = forms.PasswordConfirmForm(prefix="recovery")
    recovery_codes: list[str] = []
    action = request.POST.get("action")
    if request.method == "POST":
        if action == "begin":
            try:
                device = services.totp_begin(user=user)
            except DomainError as exc:
                _refused(request, exc)
        elif action == "confirm":
            code_form = forms.CodeForm(request.POST)
            if code_form.is_valid():
                try:
                    services.totp_confirm(
                        actor=access.actor,
                        user=user,
                        customer_id=access.customer_id,
                        code=code_form.cleaned_data["code"],
                    )
                except DomainError as exc:
                    code_form.add_error("code", exc.message)
                else:
                    messages.success(request, "Two-factor sign-in is on.")
                    # Shown in this response only (like a new API token), never again.
                    recovery_codes = services.totp_recovery_codes_issue(
                        actor=access.actor, user=user, customer_id=access.customer_id
                    )
                    device = services.totp_device_of(user)
        elif action == "recovery":
            recovery_form = forms.PasswordConfirmForm(request.POST, prefix="recovery")
            if recovery_form.is_valid():
                if user.check_password(recovery_form.cleaned_data["password"]):
                    try:
                        recovery_codes = services.totp_recovery_codes_issue(
                            actor=access.actor, user=user, customer_id=access.customer_id
                        )
                    except DomainError as exc:
                        _refused(request, exc)
                    else:
                        messages.success(request, "New recovery codes: the old ones are void.")
                        recovery_form = forms.PasswordConfirmForm(prefix="recovery")
                else:
                    recovery_form.add_error("password", "That is not your password.")
        elif action == "disable":
            password_form = forms.PasswordConfirmForm(request.POST)
            if password_form.is_valid():
                if user.check_password(password_form.cleaned_data["password"]):
                    services.totp_disable(
                        actor=access.actor, user=user, customer_id=access.customer_id
                    )
                    messages.success(request, "Two-factor sign-in is off.")
                    return redirect("portal:account")
                password_form.add_error("password", "That is not your password.")
    qr_svg = uri = totp_key = ""
    if device is not None and not device.confirmed:
        totp_key = services.totp_secret(device)  # shown only while enrolling
        uri = services.totp_provisioning_uri(
            device, username=user.get_username(), issuer=getattr(settings, "PORTAL_NAME", "Codec")
        )
        qr_svg = _qr_svg(uri)
    return render(
        request,
        "portal/account.html",
        {
            "access": access,
            "nav": "account",
            "device": device,
            "uri": uri,
            "totp_key": totp_key,
            "recovery_codes": recovery_codes,
            "recovery_form": recovery_form,
            "recovery_codes_left": len(device.recovery_code_digests or []) if device else 0,
            "qr_svg": qr_svg,
            "code_form": code_form,
            "password_form": password_form,
        },
    )


def _qr_svg(uri: str) -> str:
    try:
        import segno
    except ImportError:  # the secret and URI are shown as text anyway
        return ""
    return str(segno.make(uri, error="m").svg_inline(scale=5, border=2, title="Scan me"))
