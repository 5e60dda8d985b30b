"""The portal in a real browser: Playwright for Python driving Debian's chromium against
pytest-django's live server. Every page visited is saved to tests/screenshots/ at desktop
and phone width (the folder is git-ignored).

Skips with a message when /usr/bin/chromium or the playwright package is missing (.ci/run
installs both)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from activation.models import Activation
from jobs.models import EncodeJob

from core.models import ApiToken
from tests.portal.world import PASSWORD, World, build_world, photo

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install chromium); browser tests skipped",
        allow_module_level=True,
    )

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # The sync API runs an event loop in this thread; Django's ORM (used by the test's own
    # setup and assertions, never concurrently with the browser) must be allowed here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def live_world(transactional_db: None, live_server: Any) -> World:
    return build_world()


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP, base_url=live_server.url, accept_downloads=True)
    context.set_default_timeout(20_000)
    pg = context.new_page()
    yield pg
    context.close()


def shot(page: Any, name: str) -> None:
    """Save the page at desktop and at phone width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def sign_in(page: Any, username: str, *, screenshot: bool = False) -> None:
    page.goto("/portal/sign-in/")
    if screenshot:
        shot(page, "01-sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/portal/$"))


def test_admin_journey(page: Any, live_world: World, tmp_path: Path) -> None:
    """alice (admin of Acme): sign in, dashboard, licences, deactivate a device, create and
    revoke a token, upload a job and watch it finish, open an invoice and download its PDF,
    team and security pages."""
    acme = live_world.acme
    sign_in(page, "alice", screenshot=True)
    expect = sync_api.expect
    expect(page.get_by_role("heading", name="Your savings")).to_be_visible()
    expect(page.locator("svg.chart")).to_be_visible()
    shot(page, "02-dashboard")

    # Licences → the licence → deactivate its device (with a confirmation page).
    page.get_by_role("link", name="Licences").click()
    expect(page.get_by_role("heading", name="Licences")).to_be_visible()
    shot(page, "03-licences")
    page.get_by_role("link", name=re.compile("Neural codec SDK")).click()
    expect(page.locator("strong", has_text="acme-edge-01")).to_be_visible()
    shot(page, "04-licence-detail")
    page.get_by_role("link", name="Deactivate acme-edge-01").click()
    expect(page.get_by_role("heading", name="Deactivate this device?")).to_be_visible()
    shot(page, "05-deactivate-confirm")
    page.get_by_role("button", name="Deactivate device").click()
    expect(page.get_by_text("was deactivated; its seat is free")).to_be_visible()
    assert Activation.objects.get(pk=acme.activation.pk).state == "deactivated"
    page.get_by_role("link", name="Devices").click()
    page.get_by_label("State").select_option("all")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".badge", has_text="Deactivated")).to_be_visible()
    shot(page, "06-devices")

    # API tokens: create (shown once), then revoke.
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Token name").fill("Edge fleet")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#token-secret").inner_text()
    assert secret.startswith("ncp_")
    shot(page, "07-token-created")
    page.get_by_role("link", name="API tokens").click()
    expect(page.locator("#token-secret")).to_have_count(0)
    page.get_by_role("link", name="Revoke Edge fleet").click()
    shot(page, "08-token-revoke-confirm")
    page.get_by_role("button", name="Revoke token").click()
    expect(page.get_by_text("Token “Edge fleet” was revoked.")).to_be_visible()
    assert ApiToken.objects.get(name="Edge fleet").revoked_at is not None

    # Encode job: upload, watch it finish, compare, download.
    page.get_by_role("link", name="Encode jobs").click()
    shot(page, "09-jobs")
    upload = tmp_path / "harbour.png"
    upload.write_bytes(photo(160, 112))
    page.get_by_label("Input file").set_input_files(str(upload))
    page.get_by_label("Compare against").select_option("jpeg")
    page.get_by_role("button", name="Upload and encode").click()
    page.wait_for_url(re.compile(r"/portal/jobs/[0-9a-f-]+/$"), timeout=180_000)
    expect(page.get_by_test_id("job-state")).to_have_text("Succeeded", timeout=180_000)
    expect(page.get_by_role("heading", name="Original and decoded, side by side")).to_be_visible()
    for img in page.locator(".compare img").all():
        assert img.evaluate("el => el.complete && el.naturalWidth") == 160
    shot(page, "10-job-detail")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download output (.nce)").click()
    assert download_info.value.suggested_filename.endswith(".nce")
    job = EncodeJob.objects.get(input_name="harbour.png")
    assert job.state == "succeeded" and job.created_by == "portal:alice"

    # Progress is polled in place (htmx) while a job runs, and polling stops once it ends.
    queued = EncodeJob.objects.create(
        customer=acme.customer,
        licence=acme.licence,
        kind="frames",
        quality=4,
        input_name="trailer-frames.zip",
        input_bytes=10_000,
        width=64,
        height=48,
        frame_count=10,
    )
    page.goto(f"/portal/jobs/{queued.pk}/")
    expect(page.get_by_test_id("job-state")).to_have_text("Queued")
    EncodeJob.objects.filter(pk=queued.pk).update(state="running", progress=42, frames_done=5)
    expect(page.get_by_test_id("job-state")).to_have_text("Running", timeout=10_000)
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "42")
    shot(page, "10b-job-running")
    EncodeJob.objects.filter(pk=queued.pk).update(
        state="failed", failure_code="INPUT_INVALID", failure_message="frame 6 is damaged"
    )
    expect(page.get_by_text("frame 6 is damaged")).to_be_visible(timeout=10_000)
    expect(page.locator("#job-status[hx-trigger]")).to_have_count(0)

    # Invoices: list → detail → PDF.
    page.get_by_role("link", name="Invoices").click()
    shot(page, "11-invoices")
    page.get_by_role("link", name=acme.invoice.number or "", exact=True).click()
    expect(page.get_by_role("heading", name="Lines and the usage behind them")).to_be_visible()
    shot(page, "12-invoice-detail")
    with page.expect_download() as pdf_info:
        page.get_by_role("link", name="Download PDF").click()
    pdf = pdf_info.value
    assert pdf.suggested_filename == f"invoice-{acme.invoice.number}.pdf"
    assert Path(pdf.path()).read_bytes().startswith(b"%PDF")

    page.get_by_role("link", name="Team").click()
    shot(page, "13-team")
    page.get_by_role("link", name="Security").click()
    page.get_by_role("button", name="Set up two-factor sign-in").click()
    expect(page.locator("#totp-secret")).to_be_visible()
    shot(page, "14-security")

    # Keyboard: the skip link is the first stop, then the navigation in order.
    page.goto("/portal/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Dashboard")).to_be_focused()


def test_viewer_cannot_change_anything(page: Any, live_world: World) -> None:
    """victor (viewer of Acme) sees the data but no buttons, and forged POSTs are refused."""
    acme = live_world.acme
    sign_in(page, "victor")
    sync_api.expect(page.get_by_text("Viewer")).to_be_visible()
    shot(page, "20-viewer-dashboard")
    for url in (
        "/portal/tokens/",
        "/portal/jobs/",
        "/portal/team/",
        f"/portal/licences/{acme.licence.pk}/",
    ):
        page.goto(url)
        for label in ("Create token", "Upload and encode", "Send invitation", "Deactivate"):
            assert page.get_by_role("button", name=label).count() == 0
            assert page.get_by_role("link", name=re.compile(label)).count() == 0
    shot(page, "21-viewer-licence")
    forged = page.evaluate(
        """async (urls) => {
            const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
            const out = [];
            for (const url of urls) {
                const r = await fetch(url, {method: "POST", headers: {"X-CSRFToken": token},
                                            body: new URLSearchParams({name: "x", role: "admin"})});
                out.push(r.status);
            }
            return out;
        }""",
        [
            "/portal/tokens/",
            f"/portal/tokens/{acme.token.pk}/revoke/",
            f"/portal/devices/{acme.activation.pk}/deactivate/",
            f"/portal/team/{acme.members['alice'].pk}/role/",
            f"/portal/team/{acme.members['alice'].pk}/remove/",
        ],
    )
    assert forged == [403] * 5
    page.goto(f"/portal/tokens/{acme.token.pk}/revoke/")
    sync_api.expect(page.get_by_role("heading", name="You cannot change this")).to_be_visible()
    shot(page, "22-viewer-refused")
    assert Activation.objects.get(pk=acme.activation.pk).state == "active"
    assert ApiToken.objects.get(pk=acme.token.pk).revoked_at is None
    assert ApiToken.objects.filter(customer=acme.customer).count() == 1


def test_second_customer_sees_none_of_the_first(page: Any, live_world: World) -> None:
    """bob (Globex) browses every page: nothing of Acme anywhere; Acme's URLs are 404."""
    acme = live_world.acme
    sign_in(page, "bob")
    needles = ["Acme", "acme-edge-01", "alice", "victor", str(acme.licence.pk), acme.token.prefix]
    for url in (
        "/portal/",
        "/portal/licences/",
        "/portal/devices/?state=all",
        "/portal/tokens/",
        "/portal/jobs/",
        "/portal/invoices/",
        "/portal/team/",
    ):
        page.goto(url)
        html = page.content()
        for needle in needles:
            assert needle not in html, (url, needle)
    shot(page, "30-globex-licences")
    for url in (
        f"/portal/licences/{acme.licence.pk}/",
        f"/portal/jobs/{acme.job.pk}/",
        f"/portal/invoices/{acme.invoice.pk}/",
        f"/portal/devices/{acme.activation.pk}/deactivate/",
    ):
        response = page.goto(url)
        assert response is not None and response.status == 404, url
    shot(page, "31-globex-404")
