"""Pages: one Jinja2 environment per language, the security headers every page carries.

Templates are escaped by default and use no inline script or style, so the Content Security
Policy below can forbid both. Every page and image is ``Cache-Control: no-store``: what a
reviewer saw is not left in a browser's cache.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from mimamori.core.errors import Forbidden, MimamoriError, Misconfigured, NotFound, Unauthenticated, Unavailable
from mimamori.web.i18n import LANGUAGES, N_, translations

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

# Refusals a person meets on a page, said in their language; others show the service's sentence.
REASONS = {
    "too_large": N_("The file is too large."),
    "file_too_large": N_("The file is too large."),
    "unsupported_media_type": N_("This is not an image: upload a JPEG, PNG, WebP, GIF, BMP or TIFF photo."),
    "unsupported_format": N_("This is not an image: upload a JPEG, PNG, WebP, GIF, BMP or TIFF photo."),
    "corrupt_image": N_("The image is damaged and cannot be read."),
    "empty_file": N_("The file is empty."),
    "image_too_large": N_("The image has too many pixels to be read safely."),
    "decompression_bomb": N_("The image has too many pixels to be read safely."),
    "image_too_small": N_("The image is too small to find a face in."),
    "no_face": N_("No face was found in the photo; use a photo where the face is clearly visible."),
    "several_faces": N_("Several faces were found; use a photo of the client alone."),
    "not_a_photo": N_("Enrol photos, not videos."),
    "no_photo": N_("Choose a photo first."),
    "nothing_enrolled": N_("The case has no enrolled photo yet."),
    "consent_missing": N_("The case has no consent on record for this."),
    "consent_expired": N_("The consent of this case has expired."),
    "consent_out_of_scope": N_("The consent in force does not cover this."),
    "case_exists": N_("A case with this id exists already."),
    "unknown_case": N_("There is no such case."),
    "unknown_match": N_("There is no such match."),
    "not_assigned": N_("This case is not assigned to you; an admin assigns cases."),
    "forbidden": N_("Your role does not allow this."),
    "role_cannot_review": N_("Your role does not allow deciding matches."),
    "claimed_by_other": N_("Another reviewer holds this item now."),
    "already_decided": N_("Another reviewer decided this item meanwhile."),
    "second_opinion_needed": N_("You marked this item unsure: another reviewer gives the second opinion."),
    "note_too_long": N_("The note is too long (2000 characters at most)."),
    "sign_in_failed": N_("The username or password is wrong, or this account cannot sign in now."),
    "wrong_code": N_("The code is wrong or was used already; wait for the next one and try again."),
    "throttled": N_("Too many failed sign-ins; try again later."),
    "session_expired": N_("Sign in again with your password."),
    "invitation_invalid": N_("This invitation is unknown, used or expired; ask an admin for a new one."),
    "password_too_short": N_("The password is too short."),
    "password_has_username": N_("The password must not contain the username."),
    "wrong_password": N_("The current password is wrong."),
    "passwords_differ": N_("The two new passwords differ."),
    "confirmation_differs": N_("Type the case id exactly to confirm."),
    "csrf": N_("This form has expired. Reload the page and try again."),
    "bad_username": N_("A username is 1 to 64 lower-case letters, digits or . _ @ -."),
    "user_exists": N_("This user exists already."),
    "own_account": N_("You cannot disable your own account."),
    "invalid_request": N_("Some fields of the form are missing or wrong."),
    "unavailable": N_("A service the workbench needs is not reachable now. Try again later."),
    "bad_time": N_("A date and time is not valid; use the date picker."),
    "naive_time": N_("A time needs its time zone."),
    "bad_threshold": N_("The threshold is a number between 0 and 1."),
    "bad_blur_radius": N_("The blur strength is a whole number from 4 to 64."),
    "bad_greyscale": N_("Greyscale is on or off."),
    "bad_minutes": N_("Minutes are a whole number from 1 to 480."),
    "bad_limit": N_("The number of items asked for is out of range."),
    "bad_view": N_("These image settings are not valid."),
    "invalid_consent": N_("The consent record is incomplete or not valid; check these fields:"),
    "unknown_user": N_("There is no such user."),
    "unknown_assignment": N_("This case is not assigned to this user."),
    "unknown_role": N_("There is no such role: choose admin, reviewer or auditor."),
    "unknown_setting": N_("There is no such setting."),
    "unknown_language": N_("This language is not offered: choose English or Japanese."),
    "unknown_lane": N_("There is no such queue lane."),
    "unknown_order": N_("There is no such order for the queue."),
    "unknown_status": N_("There is no such decision."),
    "unknown_photo": N_("There is no such enrolled photo."),
    "no_matches": N_("Choose at least one match to decide."),
    "password_too_long": N_("The password is too long (1024 characters at most)."),
    "enrolment_not_begun": N_("Open the invitation link again to get the QR code first."),
    "image_missing": N_("The image is no longer stored."),
    "face_missing": N_("This face is no longer in the index."),
    "photo_or_case": N_("Upload a photo to search with."),
    # Takedowns (issue 19): services/takedowns.py, notices.py, hosts.py and their pages.
    "bad_url": N_("This is not a web address (http or https, with a host)."),
    "bad_sha256": N_("A SHA-256 is 64 hexadecimal digits."),
    "bad_phash": N_("A pHash is 16 hexadecimal digits."),
    "bad_pdq": N_("A PDQ hash is 64 hexadecimal digits."),
    "bad_evidence": N_("The evidence of this change is not valid."),
    "bad_check_id": N_("The re-check's id is not valid."),
    "check_id_reused": N_("This re-check was recorded for another takedown."),
    "unknown_outcome": N_("There is no such re-check outcome."),
    "bad_report": N_("A report is by month, host, platform or country."),
    "bad_month": N_("A month is a year and a month, like 2026-11."),
    "unknown_state": N_("There is no such takedown state."),
    "unknown_takedown": N_("There is no such takedown."),
    "no_takedowns": N_("Choose at least one takedown."),
    "illegal_transition": N_("A takedown in this state cannot change to that one; "
                             "the page shows the changes it allows."),
    "removal_needs_evidence": N_("Removed needs evidence: say in the note what you saw and when "
                                 "(or wait for a re-check that finds it gone)."),
    "withdrawn": N_("This takedown's case is withdrawn: it stays closed."),
    "not_escalable": N_("Only a request without removal (sent, acknowledged, refused, no response, reappeared) "
                        "goes to the next step."),
    "ladder_exhausted": N_("Every step of this host's escalation ladder is taken: add a step to the host "
                           "directory, or close the takedown."),
    "unknown_host": N_("This host is not in the host directory: add its contact and escalation ladder first."),
    "invalid_host": N_("The host entry is not complete or not valid; check these fields:"),
    "invalid_hosts": N_("The host directory file is not valid; nothing was imported."),
    "role_cannot_takedown": N_("Your role does not work on takedowns."),
    "several_hosts": N_("One notice goes to one host: choose takedowns of one host."),
    "unknown_step": N_("This host's escalation ladder has no such step."),
    "not_draft": N_("A first notice was sent already: take the next escalation step instead."),
    "wrong_step": N_("These takedowns are at another step of the escalation ladder; reload the page."),
    "contact_unverified": N_("The host's contact is not verified: the organisation checks it, "
                             "then marks the entry verified."),
    "no_email_contact": N_("This host takes notices through a web form: copy the text into its form, "
                           "or add an e-mail contact."),
    "unknown_notice": N_("There is no such notice of your cases."),
    "smtp_off": N_("Sending from mimamori is off here: download the .eml, or copy the text into the host's form."),
    # Per-case models (issue 20, services/case_models.py).
    "case_models_disabled": N_("Per-case models are turned off in this installation."),
}
# Names of the fields a refusal may list (``fields`` on the error: the form's own labels).
FIELD_LABELS = {
    "given_by": N_("Given by (the client, or their representative)"),
    "relationship_to_client": N_("Relationship to the client"),
    "given_at": N_("Given at (your local time)"),
    "expires_at": N_("Expires at (empty: no expiry)"),
    "scope": N_("Scope"),
    "document_sha256": N_("SHA-256 of the signed consent document (optional)"),
    # The host directory's form (host.html).
    "key": N_("Key (a short name: letters, digits, . _ -)"),
    "operator": N_("Operator"),
    "domains": N_("Domains (one a line; each covers its subdomains)"),
    "country": N_("Server country (two letters, ISO 3166)"),
    "channel": N_("Channel"),
    "abuse_email": N_("Abuse e-mail address"),
    "abuse_form_url": N_("Abuse web form (https)"),
    "language": N_("Language of its notices"),
    "legal_basis": N_("Legal basis to cite"),
    "expected_response_days": N_("Expected answer within (days)"),
    "recheck_hours": N_("Re-check every (hours; empty: the default)"),
    "escalation": N_("Escalation ladder (YAML: a list of steps)"),
    "removal_rules": N_("How its removed page looks (YAML: a list of rules with status, text, final_url_contains)"),
    "notes": N_("Notes"),
}


def when(value: dt.datetime | str | None) -> str:
    """A time as people read it, in UTC (the zone is said)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@cache
def environment(language: str) -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                      extensions=["jinja2.ext.i18n"], undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True)
    env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = when
    return env


def error_text(language: str, error: MimamoriError | str) -> str:
    """A refusal in the reader's language when it is a known one, else the service's sentence."""
    reason = error if isinstance(error, str) else error.reason
    if reason in REASONS:
        gettext = translations(language).gettext
        fields = [gettext(FIELD_LABELS[f]) if f in FIELD_LABELS else f for f in getattr(error, "fields", ())]
        return gettext(REASONS[reason]) + (" " + "; ".join(fields) if fields else "")
    return reason if isinstance(error, str) else str(error)


def said_on_page(error: MimamoriError) -> bool:
    """A refusal a form's own page says beside the form (bad input, a conflict); refused access and
    server-side failures go to the error page instead (audited there, the latter logged)."""
    return not isinstance(error, Unauthenticated | Forbidden | NotFound | Unavailable | Misconfigured)


def render(request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200,
           language: str | None = None) -> HTMLResponse:
    """A page in the language of the signed-in user (request.state.language), or ``language``."""
    language = language or getattr(request.state, "language", None) or "en"
    language = language if language in LANGUAGES else "en"
    staff = getattr(request.state, "staff", None)
    values = {"request": request, "staff": staff, "lang": language, "path": request.url.path,
              "csrf_token": staff.signed.csrf_token if staff is not None else "", "error": None, "notice": None}
    values.update(context or {})
    html = environment(language).get_template(template).render(values)
    return HTMLResponse(html, status_code=status, headers={"Content-Language": language})
