"""Forms of the portal: they validate input; services do the writes."""

from __future__ import annotations

from typing import Any

from customers.models import CustomerUser
from django import forms
from django.conf import settings
from jobs.models import BASELINE_CODECS, BASELINE_METRICS, QUALITY_MAX, QUALITY_MIN
from licences.models import Licence


class SignInForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


class SignInCodeForm(forms.Form):
    """The second sign-in step: the app's six digits, or one recovery code."""

    code = forms.RegexField(
        regex=r"^\s*(\d{3}\s?\d{3}|[A-Za-z2-9]{5}-?[A-Za-z2-9]{5})\s*$",
        label="Six-digit code (or a recovery code)",
        error_messages={
            "invalid": "Enter the six digits your authenticator app shows, or a recovery code."
        },
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autofocus": True, "maxlength": 12}
        ),
    )


class CodeForm(forms.Form):
    code = forms.RegexField(
        regex=r"^\s*\d{3}\s?\d{3}\s*$",
        label="Six-digit code",
        error_messages={"invalid": "Enter the six digits your authenticator app shows."},
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "autofocus": True,
                "maxlength": 7,
            }
        ),
    )


class PasswordConfirmForm(forms.Form):
    password = forms.CharField(
        strip=False,
        label="Your password",
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        label="Token name",
        help_text="Where it will be used, e.g. “CI pipeline” or “edge fleet”.",
    )


class InviteForm(forms.Form):
    username = forms.RegexField(
        regex=r"^[\w.@+-]{3,150}$",
        max_length=150,
        help_text="3–150 letters, digits and @ . + - _",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    email = forms.EmailField(help_text="The set-password link is sent here.")
    role = forms.ChoiceField(
        choices=CustomerUser.Role.choices,
        initial=CustomerUser.Role.VIEWER,
        help_text="Viewers see everything and change nothing.",
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=CustomerUser.Role.choices)


class LicenceChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.policy.product.name} · {obj.policy.name} (until {obj.expires_at:%d %b %Y})"


class JobUploadForm(forms.Form):
    input = forms.FileField(
        label="Input file",
        help_text="An image (PNG, JPEG), a video file, or a ZIP of same-sized images.",
    )
    quality = forms.TypedChoiceField(
        coerce=int,
        choices=[(q, str(q)) for q in range(QUALITY_MIN, QUALITY_MAX + 1)],
        initial=4,
        help_text=f"{QUALITY_MIN} = smallest files, {QUALITY_MAX} = best quality.",
    )
    baseline = forms.ChoiceField(
        choices=[(c, c) for c in BASELINE_CODECS],
        initial="x265",
        label="Compare against",
        help_text="The codec whose bytes at equal quality are the baseline.",
    )
    baseline_metric = forms.ChoiceField(
        choices=[(m, m.upper()) for m in BASELINE_METRICS], initial="psnr", label="Quality metric"
    )
    licence = LicenceChoiceField(
        queryset=Licence.objects.none(),
        required=False,
        empty_label="Newest active licence",
    )

    def __init__(self, *args: Any, licences: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["licence"]
        if licences is not None and isinstance(field, forms.ModelChoiceField):
            field.queryset = licences

    def clean_input(self) -> Any:
        upload = self.cleaned_data["input"]
        if upload.size > settings.JOBS_MAX_INPUT_BYTES:
            raise forms.ValidationError(
                f"The file is larger than {settings.JOBS_MAX_INPUT_BYTES // 1_000_000} MB."
            )
        return upload
