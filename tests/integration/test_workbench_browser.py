"""The review workbench in a real browser (Chromium) against `mimamori api` and the real stack.

Two cases are enrolled from one photo each; edited re-uploads of those photos (cropped,
mirrored, bordered, two of them side by side in one image) go through Kafka and the
pipeline, and the watchlist makes the matches. Then staff use the workbench as people do:
the first admin follows the invitation link that `mimamori users create` printed, reviewers
sign in with a password and a TOTP code, see only their cases' matches, see blurred images
until they reveal one, decide one match or a whole cluster, and never hold the same item.
Every check of an outcome reads the case database or the audit log directly.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from mimamori.services import access, cases, enrolment
from mimamori.services.audit import Actor
from mimamori.services.consent import ConsentRecord, record_consent
from mimamori.services.workspace import Workspace
from mimamori.stack.process import free_port
from mimamori.stores.cases import AuditEvent, Match, MatchDecision, User
from mimamori.stores.takedowns import Notice, Takedown
from tests.integration import samples as sample_sets
from tests.integration.helpers import isolated_settings, publish, run_pipeline, site_config
from tests.integration.workbench import (
    MIMAMORI,
    PASSWORD,
    Staff,
    api_process,
    chromium,
    enrol_staff,
    invitation_token,
    sign_in,
)
from tests.support import edits

pytestmark = pytest.mark.integration
OPERATOR = Actor("cli:test", "operator")
PAUL, KATE = "case-paul", "case-kate"
# Screenshots of the queue, a case page and the operations page (blurred images only): in the
# test's own folder, or where MIMAMORI_SCREENSHOTS says (docs/screenshots for the README).
SCREENSHOTS = os.environ.get("MIMAMORI_SCREENSHOTS")


def jpeg(image: Image.Image, quality: int = 88) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def side_by_side(left: Image.Image, right: Image.Image, height: int = 600) -> Image.Image:
    """Two photos in one image (one media, two faces: a cluster of two matches)."""
    left = left.resize((round(left.width * height / left.height), height))
    right = right.resize((round(right.width * height / right.height), height))
    canvas = Image.new("RGB", (left.width + right.width + 40, height), (240, 240, 240))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + 40, 0))
    return canvas


def open_case(work: Workspace, case_id: str, photo: bytes) -> None:
    now = dt.datetime.now(dt.UTC)
    cases.create_case(work, OPERATOR, case_id, f"Client {case_id[5:].title()}")
    record_consent(work, OPERATOR, case_id, ConsentRecord(
        given_by="the client", given_at=now - dt.timedelta(days=1), scope=["search", "watchlist", "takedown"],
        expires_at=now + dt.timedelta(days=365), recorded_by="staff-7"))
    enrolment.enroll(work, OPERATOR, case_id, [(f"{case_id}.jpg", photo, "image/jpeg")])


def reuploads(testdata) -> list[sample_sets.Sample]:
    photos = sample_sets.photos(testdata)
    paul, kate = photos["paul_rudd"], photos["kate_siegel"]
    cropped = jpeg(edits.border(edits.crop(paul, 0.2), 0.05), 80)
    made = {
        "paul_cropped": cropped,
        "paul_mirrored": jpeg(edits.mirror(edits.crop(paul, 0.1))),
        "paul_tight": jpeg(edits.resize(edits.crop(paul, 0.3), 0.7), 80),
        "paul_pair": jpeg(side_by_side(edits.crop(paul, 0.3), edits.mirror(edits.crop(paul, 0.15)))),
        "kate_cropped": jpeg(edits.crop(kate, 0.2)),
    }
    samples = [sample_sets.Sample(name, data, "image/jpeg", "") for name, data in made.items()]
    samples.append(sample_sets.Sample("paul_cropped_again", cropped, "image/jpeg", ""))  # a sighting
    return samples


class Env:
    def __init__(self, settings, work, api, browser, staff, folder):
        self.settings, self.work, self.api, self.browser, self.staff = settings, work, api, browser, staff
        self.folder = folder
        self.screenshots = Path(SCREENSHOTS) if SCREENSHOTS else folder / "screenshots"
        self.screenshots.mkdir(parents=True, exist_ok=True)
        self.pages: dict[str, object] = {}

    @property
    def url(self) -> str:
        return self.api.url

    def page(self, username: str):
        """A signed-in browser tab of its own (own cookies) for each staff member, kept for the module."""
        if username not in self.pages:
            context = self.browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            sign_in(page, self.url, self.staff[username])
            assert "/login" not in page.url, page.content()[:2000]
            self.pages[username] = page
        return self.pages[username]

    def matches(self, case_id: str) -> list[Match]:
        with self.work.sessions() as session:
            return list(session.scalars(select(Match).where(Match.case_id == case_id).order_by(Match.id)))

    def audit(self, **where) -> list[AuditEvent]:
        with self.work.sessions() as session:
            query = select(AuditEvent).order_by(AuditEvent.id)
            for name, value in where.items():
                query = query.where(getattr(AuditEvent, name) == value)
            return list(session.scalars(query))


@pytest.fixture(scope="module")
def env(stack, settings, testdata, tmp_path_factory):
    folder = tmp_path_factory.mktemp("workbench")
    with isolated_settings(settings) as s:
        port = free_port()
        s.api.port = port  # the invitation links name the test's API
        work = Workspace(s)
        site = site_config(s, folder)
        photos = testdata / "faces"
        open_case(work, PAUL, (photos / "paul_rudd.jpg").read_bytes())
        open_case(work, KATE, (photos / "kate_siegel.jpg").read_bytes())
        staff = {name: enrol_staff(work, OPERATOR, name, role) for name, role in
                 [("alice", "reviewer"), ("bob", "reviewer"), ("carol", "reviewer"), ("dave", "reviewer"),
                  ("erin", "reviewer")]}
        for case_id, name in [(PAUL, "alice"), (PAUL, "carol"), (PAUL, "dave"), (KATE, "bob")]:
            access.assign(work, OPERATOR, case_id, name)
        publish(s, reuploads(testdata), "live")
        run_pipeline(s, s.kafka.consumer_group)
        with api_process(site, port, folder / "api.log") as api, chromium() as browser:
            yield Env(s, work, api, browser, staff, folder)
            print(f"mimamori api's log:\n{api.log_tail(3000)}")


def test_the_pipeline_made_the_matches_the_workbench_shows(env):
    paul, kate = env.matches(PAUL), env.matches(KATE)
    print("matches (case, media, similarity):", [(m.case_id, m.media_sha256[:8], round(m.similarity, 3))
                                                 for m in paul + kate])
    assert len(paul) == 5, "three single re-uploads and a side-by-side pair"
    assert len(kate) >= 1
    assert all(m.status == "pending_review" and m.source == "stream" for m in paul + kate)
    shared = [sha for sha in {m.media_sha256 for m in paul} if sum(m.media_sha256 == sha for m in paul) == 2]
    assert shared, "the side-by-side re-upload should be one media with two matches (a cluster)"


def test_the_first_admin_follows_the_invitation_that_users_create_printed(env):
    """`mimamori users create` prints the link; the browser sets the password and the TOTP code."""
    site = ["--config", str(env.folder / "site.yaml")]
    printed = subprocess.run([str(MIMAMORI), *site, "users", "create", "root", "--role", "admin"],
                             capture_output=True, text=True, timeout=120, check=True)
    link = printed.stdout.strip().splitlines()[0]
    assert link == f"{env.url}/invite/{invitation_token(link)}"
    context = env.browser.new_context()
    page = context.new_page()
    page.goto(link)
    secret = page.inner_text("#totp-secret").replace(" ", "")  # the key to type by hand, beside the QR code
    assert re.fullmatch(r"[A-Z2-7]{16,}", secret) and page.locator("#totp-qr svg").count() == 1
    admin = Staff("root", "admin", secret)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_again]", PASSWORD)
    page.fill("input[name=code]", admin.code())
    page.press("input[name=code]", "Enter")
    page.wait_for_url(re.compile(r"/login\?enrolled=1"))
    sign_in(page, env.url, admin, "/admin/users")  # not the queue: opening it would claim the reviewers' items
    assert page.url.endswith("/admin/users")
    env.staff["root"] = admin
    env.pages["root"] = page
    with env.work.sessions() as session:
        user = session.scalars(select(User).where(User.username == "root")).one()
        assert user.totp_confirmed and user.invite_sha256 is None


def test_sign_in_needs_the_password_then_the_code_and_refuses_a_wrong_code(env):
    erin = env.staff["erin"]
    page = env.browser.new_context().new_page()
    page.goto(f"{env.url}/queue")
    assert "/login" in page.url  # not signed in: to the sign-in page
    page.fill("input[name=username]", "erin")
    page.fill("input[name=password]", "not the password at all")
    page.press("input[name=password]", "Enter")
    page.wait_for_load_state()
    assert page.locator("input[name=code]").count() == 0 and page.locator("input[name=password]").count() == 1
    page.fill("input[name=username]", "erin")
    page.fill("input[name=password]", erin.password)
    page.press("input[name=password]", "Enter")
    page.wait_for_selector("input[name=code]")
    cookie = next(c for c in page.context.cookies() if c["name"] == "mimamori_session")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"  # kept on http://127.0.0.1
    right = erin.code()
    page.fill("input[name=code]", f"{(int(right) + 500_000) % 1_000_000:06d}")  # a wrong code
    page.press("input[name=code]", "Enter")
    page.wait_for_load_state()
    assert page.locator("input[name=code]").count() == 1  # asked for the code again
    page.goto(f"{env.url}/queue")
    assert "/login" in page.url  # the password alone opens no page
    page.goto(f"{env.url}/login/code")
    page.fill("input[name=code]", right)
    page.press("input[name=code]", "Enter")
    page.wait_for_url(re.compile(r"/queue$"))
    steps = [(r.outcome, r.details.get("step"), r.details.get("reason"))
             for r in env.audit(actor="erin", action="sign_in")]
    assert steps[0][:2] == ("rejected", "password")
    assert ("ok", "password", None) in steps and steps[-1] == ("ok", "code", None)
    assert ("rejected", "code", "wrong_code") in steps


def queue_ids(page) -> list[int]:
    """The match ids the queue page shows (each item's decision form posts to /matches/<id>/decision)."""
    actions = page.eval_on_selector_all("form[action$='/decision']", "forms => forms.map(f => f.action)")
    return sorted(int(re.search(r"/matches/(\d+)/decision", a).group(1)) for a in actions)


def test_a_match_is_in_the_assigned_reviewers_queue_only(env):
    alice = env.page("alice")
    alice.goto(f"{env.url}/queue")
    paul_ids = {m.id for m in env.matches(PAUL)}
    kate_ids = {m.id for m in env.matches(KATE)}
    shown = set(queue_ids(alice))
    assert shown and shown <= paul_ids and not shown & kate_ids, alice.inner_text("main")[:3000]
    bob = env.page("bob")
    bob.goto(f"{env.url}/queue")
    assert set(queue_ids(bob)) == kate_ids
    assert "Client Paul" not in bob.content() and "Client Kate" not in alice.content()
    refused = bob.goto(f"{env.url}/cases/{PAUL}")
    assert refused.status == 403 and "Client Paul" not in bob.content()  # the case page is refused too
    assert env.audit(actor="bob", outcome="rejected")[-1].details.get("reason") == "not_assigned"
    alice.goto(f"{env.url}/queue")
    alice.screenshot(path=str(env.screenshots / "queue.png"), full_page=True)


def claimed_by(env, ids) -> set[str | None]:
    return {m.claimed_by for m in env.matches(PAUL) if m.id in ids}


def test_two_reviewers_never_hold_the_same_item(env):
    alice, carol = env.page("alice"), env.page("carol")
    alice.goto(f"{env.url}/queue")
    held = set(queue_ids(alice))
    assert held and claimed_by(env, held) == {"alice"}
    carol.goto(f"{env.url}/queue")
    assert not set(queue_ids(carol)) & held  # assigned to the same case, but these are alice's
    carol.goto(f"{env.url}/matches/{min(held)}")  # opening one directly does not take it either
    assert claimed_by(env, held) == {"alice"}
    alice.click("#release")  # alice gives the batch back: carol gets it, and alice none of it
    alice.wait_for_url(re.compile(r"paused"))
    assert claimed_by(env, held) == {None}
    carol.goto(f"{env.url}/queue")
    assert set(queue_ids(carol)) == held and claimed_by(env, held) == {"carol"}
    alice.goto(f"{env.url}/queue")
    assert not set(queue_ids(alice)) & held
    carol.click("#release")  # and back to alice, for the decisions that follow
    carol.wait_for_url(re.compile(r"paused"))
    alice.goto(f"{env.url}/queue")
    assert set(queue_ids(alice)) == held and claimed_by(env, held) == {"alice"}


def pixels(data: bytes, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize(size), dtype=np.float32)


def test_images_are_blurred_until_revealed_and_each_reveal_is_audited(env):
    alice = env.page("alice")
    alice.goto(f"{env.url}/queue")
    match_id = queue_ids(alice)[0]
    image = alice.locator(f"#found-{match_id}")
    image.wait_for()
    served = alice.request.get(f"{env.url}/images/matches/{match_id}/found")
    assert served.ok and served.headers["cache-control"].startswith("no-store")
    face = env.work.searcher.faces_by_id({next(m.face_id for m in env.matches(PAUL) if m.id == match_id)})
    crop_key = next(iter(face.values())).crop_key
    original = env.work.objects.get_object(env.settings.minio.buckets.crops.name, crop_key).read()
    assert served.body() != original
    size = (128, 128)
    blurred, sharp = pixels(served.body(), size), pixels(original, size)
    assert np.abs(blurred[..., 0] - blurred[..., 1]).max() <= 2  # greyscale
    assert np.abs(blurred - sharp).mean() > 10
    # Detail (the high frequencies) is gone from the blurred one.
    assert np.abs(np.diff(blurred.mean(axis=2), axis=1)).mean() < 0.5 * np.abs(np.diff(sharp.mean(axis=2),
                                                                                          axis=1)).mean()
    before = len(env.audit(actor="alice", action="reveal"))
    rendered_before = image.screenshot()
    alice.click(f"#reveal-found-{match_id}")
    alice.wait_for_function("id => { const i = document.getElementById(id);"
                            " return i.src !== new URL(i.dataset.blurredSrc, location).href"
                            " && i.complete && i.naturalWidth > 0; }", arg=f"found-{match_id}")
    rendered_after = image.screenshot()
    assert np.abs(pixels(rendered_after, size) - sharp).mean() < np.abs(pixels(rendered_before, size) - sharp).mean()
    revealed = pixels(rendered_after, size)
    assert np.abs(revealed[..., 0] - revealed[..., 2]).mean() > 2  # colour again: the original's pixels
    reveals = env.audit(actor="alice", action="reveal")
    assert len(reveals) == before + 1 and reveals[-1].case_id == PAUL


def decision_of(env, match_id: int) -> tuple[str, list[MatchDecision]]:
    with env.work.sessions() as session:
        match = session.get(Match, match_id)
        rows = list(session.scalars(select(MatchDecision).where(MatchDecision.match_id == match_id)))
        return match.status, rows


def decide_in_page(page, match_id: int, decision: str, note: str) -> None:
    form = page.locator(f"form[action$='/matches/{match_id}/decision']")
    form.locator("textarea[name=note], input[name=note]").first.fill(note)
    form.locator(f"button[name=decision][value={decision}]").click()
    page.wait_for_load_state()


def test_confirm_reject_unsure_and_a_bulk_decision_change_the_database(env):
    alice = env.page("alice")
    alice.goto(f"{env.url}/queue")
    paul = env.matches(PAUL)
    pair_sha = next(sha for sha in {m.media_sha256 for m in paul} if sum(m.media_sha256 == sha for m in paul) == 2)
    pair = sorted(m.id for m in paul if m.media_sha256 == pair_sha)
    singles = [i for i in queue_ids(alice) if i not in pair]
    assert len(singles) >= 3, "alice holds three single matches to decide"
    for match_id, decision in zip(singles, ["confirmed", "rejected", "unsure"], strict=False):
        decide_in_page(alice, match_id, decision, f"{decision} in the browser")
        status, rows = decision_of(env, match_id)
        assert status == decision
        assert [(r.decision, r.note, r.actor, r.bulk) for r in rows] == [
            (decision, f"{decision} in the browser", "alice", False)]
    alice.goto(f"{env.url}/queue")
    bulk = alice.locator("form.bulk").filter(
        has=alice.locator(f"input[name=match_ids][value='{pair[0]}']"))
    bulk.locator("textarea[name=note], input[name=note]").first.fill("the same upload twice")
    bulk.locator("button[name=decision][value=confirmed]").click()
    alice.wait_for_load_state()
    for match_id in pair:
        status, rows = decision_of(env, match_id)
        assert status == "confirmed" and [(r.decision, r.bulk, r.actor) for r in rows] == [("confirmed", True,
                                                                                           "alice")]
    assert {r.action for r in env.audit(actor="alice", case_id=PAUL)} >= {"review", "claim", "reveal"}
    assert env.audit(actor="alice", action="view_queue")  # every decision in the audit log under her name
    # The unsure one is in the second-opinion lane of another reviewer, not of alice.
    unsure = singles[2]
    carol = env.page("carol")
    carol.goto(f"{env.url}/queue?lane=unsure")
    assert unsure in queue_ids(carol)
    alice.goto(f"{env.url}/queue?lane=unsure")
    assert unsure not in queue_ids(alice)


def search_by_photo(page, url: str, photo: Path) -> list[int]:
    page.goto(f"{url}/search")
    page.set_input_files("#search-photo", str(photo))
    page.click("#search-submit")
    page.wait_for_selector("#results")
    ids = page.eval_on_selector_all("#results article.item", "items => items.map(i => i.dataset.faceId)")
    return [int(i) for i in ids]


def test_search_by_photo_and_the_decision_log_are_audited_under_the_reviewers_name(env, testdata):
    portrait = testdata / "faces" / "paul_rudd.jpg"
    alice = env.page("alice")
    found = search_by_photo(alice, env.url, portrait)
    paul_faces = {m.face_id for m in env.matches(PAUL)}
    assert found and set(found) <= paul_faces  # a reviewer's search: only faces of their cases' matches
    for src in alice.eval_on_selector_all("#results img.face", "imgs => imgs.map(i => i.getAttribute('src'))"):
        assert "/reveal" not in src  # blurred variants only
    bobs = set(search_by_photo(env.page("bob"), env.url, portrait))  # the nearest faces of bob's cases' matches
    assert bobs <= {m.face_id for m in env.matches(KATE)} and not bobs & paul_faces
    searches = env.audit(action="search", outcome="ok")
    assert {r.actor for r in searches} >= {"alice", "bob"}
    alice.goto(f"{env.url}/cases/{PAUL}")
    with alice.expect_download() as download:
        alice.click("#decisions-csv")
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0].startswith("id,at,case_id,match_id,decision") and len(rows) == 1 + 5
    assert all(",alice," in row for row in rows[1:])
    assert env.audit(actor="alice", action="export_decisions", case_id=PAUL)


def test_a_form_post_without_the_csrf_token_is_refused(env):
    carol = env.page("carol")
    carol.goto(f"{env.url}/queue?lane=unsure")  # alice's unsure match, waiting for a second opinion
    ids = queue_ids(carol)
    assert ids
    target = ids[0]
    before = decision_of(env, target)
    form = f"form[action$='/matches/{target}/decision']"
    removed = carol.eval_on_selector(form, "f => { const t = f.querySelector('input[name=csrf_token]');"
                                           " t.remove(); return true; }")
    assert removed
    with carol.expect_response(lambda r: r.request.method == "POST") as answer:
        carol.locator(f"{form} button[name=decision][value=rejected]").click()
    assert answer.value.status == 403
    status, rows = decision_of(env, target)
    assert status == before[0] == "unsure" and [r.id for r in rows] == [r.id for r in before[1]]
    assert env.audit(actor="carol", outcome="denied")[-1].details.get("reason") == "csrf"


def test_a_disabled_users_session_ends_at_once(env):
    dave = env.page("dave")
    dave.goto(f"{env.url}/account")
    assert "/account" in dave.url
    admin = env.pages.get("root")
    assert admin is not None, "the first admin signed in (test of the invitation)"
    admin.goto(f"{env.url}/admin/users")
    admin.locator("form[action$='/admin/users/dave/disable'] button").click()
    admin.wait_for_load_state()
    with env.work.sessions() as session:
        assert session.scalars(select(User).where(User.username == "dave")).one().disabled_at is not None
    dave.goto(f"{env.url}/queue")
    assert "/login" in dave.url


def test_screenshots_of_a_case_page_and_the_operations_page(env):
    admin = env.pages["root"]
    admin.goto(f"{env.url}/cases/{PAUL}")
    assert "Client Paul" in admin.content()
    admin.screenshot(path=str(env.screenshots / "case.png"), full_page=True)
    admin.goto(f"{env.url}/operations")
    assert admin.locator("svg").count() >= 1
    admin.screenshot(path=str(env.screenshots / "operations.png"), full_page=True)


# -- takedowns (issue 19): after the decisions above, so the module's counts stay as they were --
def test_confirming_a_match_makes_its_takedown_and_the_queue_links_it(env):
    bob = env.page("bob")
    bob.goto(f"{env.url}/queue")
    [match_id] = queue_ids(bob)[:1]  # Kate's re-upload, the last match still waiting
    decide_in_page(bob, match_id, "confirmed", "Kate's photo, cropped")
    link = bob.locator(f"#confirmed-takedowns a[data-match-id='{match_id}']").first
    link.wait_for()
    with env.work.sessions() as session:
        made = list(session.scalars(select(Takedown).where(Takedown.match_id == match_id)))
    assert made and {t.case_id for t in made} == {KATE} and {t.state for t in made} == {"draft"}
    assert all(t.page_url.startswith("https://example.test/") for t in made)
    link.click()
    bob.wait_for_url(re.compile(r"/takedowns/\d+$"))
    assert bob.locator("#takedown-facts").get_attribute("data-state") == "draft"
    assert bob.inner_text("#takedown-url") in {t.page_url for t in made}
    assert bob.locator("main img").count() == 0  # no image on a takedown's page
    alice = env.page("alice")
    assert alice.goto(bob.url).status == 403  # of bob's case only


def test_an_unknown_host_gets_its_contact_and_the_notice_is_previewed_copied_and_downloaded(env):
    kate = takedowns_of(env, KATE)
    admin = env.pages["root"]
    admin.goto(f"{env.url}/hosts")
    admin.click("a.add-contact[href$='domain=example.test']")
    admin.fill("#operator", "Example Test Hosting")
    admin.fill("#country", "NL")
    admin.fill("#abuse_email", "abuse@example.test")
    admin.fill("#escalation", "- kind: resend\n- kind: hotline\n  name: Meldpunt\n")
    admin.check("#verified")
    admin.click("#host-save")
    admin.wait_for_url(re.compile(r"/hosts\?done=saved"))
    assert {t.host_key for t in takedowns_of(env, KATE)} == {"example.test"}
    bob = env.page("bob")
    bob.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=env.url)
    bob.goto(f"{env.url}/notices")
    bob.click("a.preview-notice[data-host='example.test']")
    bob.wait_for_selector("#notice-text")
    text = bob.input_value("#notice-text")
    assert all(t.page_url in text and t.media_sha256 in text for t in kate)
    assert "Kate" not in text and KATE not in text  # never the client's name or case
    assert bob.inner_text("#notice-recipient") == "abuse@example.test"
    bob.click("#copy-notice")
    bob.wait_for_selector("#copy-notice[data-done='true']")
    assert bob.evaluate("navigator.clipboard.readText()") == text
    with bob.expect_download() as download:
        bob.click("#download-eml")
    assert download.value.suggested_filename.endswith("-example.test.eml")
    message = email.message_from_bytes(Path(download.value.path()).read_bytes(), policy=email.policy.default)
    assert message["To"] == "abuse@example.test" and message["Subject"]
    assert message.get_content().replace("\r\n", "\n").strip() == text.strip()
    assert not [part for part in message.walk() if part.get_content_maintype() == "image"]
    with env.work.sessions() as session:
        notice = session.scalars(select(Notice).order_by(Notice.id.desc())).first()
    assert notice.method == "eml" and notice.sent_by == "bob" and notice.host_key == "example.test"
    assert {t.state for t in takedowns_of(env, KATE)} == {"sent"}
    assert env.audit(actor="bob", action="notice_eml")


def test_the_report_page_shows_the_charts_with_the_takedowns_counted(env):
    bob = env.page("bob")
    [first, *_] = takedowns_of(env, KATE)
    bob.goto(f"{env.url}/takedowns/{first.id}")
    bob.fill("#note-removed", "the page answers 404 since this morning")
    bob.click("#to-removed")
    bob.wait_for_url(re.compile(r"done=transition"))
    assert bob.locator("#takedown-facts").get_attribute("data-state") == "removed"
    admin = env.pages["root"]
    admin.goto(f"{env.url}/takedowns")
    admin.screenshot(path=str(env.screenshots / "takedowns.png"), full_page=True)
    bob.goto(f"{env.url}/takedowns/report?by=host")
    values = {chart: bob.eval_on_selector_all(f"#chart-{chart} svg rect.chart-bar[data-value]",
                                              "rects => rects.map(r => [r.dataset.label, r.dataset.series || '',"
                                              " Number(r.dataset.value)])")
              for chart in ("months", "removal-rate", "median-days", "still-up")}
    requested = len(takedowns_of(env, KATE))
    assert [v for _label, series, v in values["months"] if series == "requested"] == [requested]
    assert [v for _label, series, v in values["months"] if series == "removed"] == [1]
    assert values["removal-rate"] == [["example.test", "", round(1 / requested, 4)]]  # the report's rounding
    assert [label for label, _s, _v in values["median-days"]] == ["example.test"]
    row = bob.locator("#report-rows tr[data-group='example.test']")
    assert row.get_attribute("data-requested") == str(requested) and row.get_attribute("data-removed") == "1"
    bob.screenshot(path=str(env.screenshots / "takedown-report.png"), full_page=True)
    with bob.expect_download() as download:
        bob.click("#report-csv")
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0].startswith("month,group,requested,removed") and len(rows) == 2


def takedowns_of(env, case_id: str) -> list[Takedown]:
    with env.work.sessions() as session:
        return list(session.scalars(select(Takedown).where(Takedown.case_id == case_id).order_by(Takedown.id)))
