"""Notices: the removal request to one host for some of its URLs, from a template, stored as sent.

A notice lists URLs and their evidence (when and where the content was found, its hashes,
that the person did not consent, the organisation's authority to act for them) and never the
image itself, nor a client's name or case id: one notice may cover several cases, and the host
learns nothing that tells the clients apart. Templates are Jinja2 text files in English and
Japanese (``notice_templates/<language>.txt.j2``; the first line is the subject).

Staff preview a notice (nothing stored), then either download it as an ``.eml`` for their mail
program, copy its text into the host's web form and record that, or have mimamori send it over
SMTP (STARTTLS or implicit TLS, credentials from a file; plain SMTP only to a loopback relay
when configured). Each of the three stores the notice as it went out and moves its takedowns on
(draft or reappeared → sent; an escalation step → escalated), with the audit row, in one
transaction: a send that fails stores nothing.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import hashlib
import ipaddress
import smtplib
import ssl
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from mimamori.core.config import SmtpConfig
from mimamori.core.errors import Conflict, InvalidInput, Misconfigured, NotFound, Unavailable
from mimamori.services.access import visible_case_ids
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.consent import active_consent, require_consent
from mimamori.services.hosts import (
    LANGUAGES,
    UNKNOWN_PREFIX,
    EscalationStep,
    HostDirectory,
    HostEntry,
    of_visible_cases,
    require_takedown_role,
)
from mimamori.services.takedowns import (
    NoticeView,
    apply_transition,
    aware_time,
    load_takedowns,
    next_step,
    notice_view,
    take_step,
)
from mimamori.services.workspace import Workspace
from mimamori.stores.takedowns import Notice, NoticeItem, Takedown

TEMPLATES = Path(__file__).parent / "notice_templates"
FIRST_NOTICE_STATES = ("draft", "reappeared")  # a notice without a step is sent for these


@dataclass(frozen=True)
class NoticeDraft:
    host_key: str
    operator: str
    recipient: str | None  # an e-mail address or a web form's URL; None: the host has no contact yet
    channel: str  # email, web_form, or none (an unknown host, a step without a contact)
    language: str
    subject: str
    body: str
    takedown_ids: list[int]
    case_ids: list[str]  # for staff; never in the text
    step: int | None
    step_kind: str | None
    verified: bool  # the organisation verified the contact (needed to send)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NoticeBatch:
    """Takedowns of one host waiting for a first notice (drafts, reappeared URLs)."""

    host_key: str
    host_known: bool
    takedown_ids: list[int]
    case_count: int


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=False,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def reference_of(host_key: str, takedown_ids: list[int], step: int | None, day: dt.date) -> str:
    """A reference the host can quote: the same for the same request on one day, telling nothing."""
    digest = hashlib.sha256(f"{host_key}|{sorted(takedown_ids)}|{step}|{day.isoformat()}".encode()).hexdigest()
    return f"MMR-{day:%Y%m%d}-{digest[:8].upper()}"


def render(language: str, context: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) of the language's template."""
    import jinja2

    try:
        text = _environment().get_template(f"{language}.txt.j2").render(**context)
    except jinja2.TemplateNotFound:
        raise InvalidInput("unknown_language", f"notices are written in {', '.join(LANGUAGES)}, not {language!r}") \
            from None
    first, _, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise Misconfigured("bad_template", f"the {language} notice template does not start with 'Subject: '")
    lines = [line.rstrip() for line in body.strip("\n").splitlines()]
    collapsed: list[str] = []
    for line in lines:  # at most one blank line in a row, whatever the template's conditionals left
        if line or (collapsed and collapsed[-1]):
            collapsed.append(line)
    return first.removeprefix("Subject: ").strip(), "\n".join(collapsed).strip() + "\n"


def _recipient(entry: HostEntry | None, step: EscalationStep | None) -> tuple[str | None, str, str | None]:
    """(recipient, channel, the step's language) of the host or of one of its ladder's steps."""
    if entry is None:
        return None, "none", None
    if step is None or step.kind == "resend":
        return entry.contact(), entry.channel if entry.contact() else "none", step.language if step else None
    if step.email:
        return step.email, "email", step.language
    if step.form_url:
        return step.form_url, "web_form", step.language
    return None, "none", step.language


def _prepare(session: Session, work: Workspace, actor: Actor, takedown_ids: list[int], language: str | None,
             step: int | None, now: dt.datetime, *, lock: bool = False) -> tuple[NoticeDraft, list[Takedown],
                                                                                HostDirectory]:
    """The notice for these takedowns; ``lock`` (every path that stores or sends one): the rows are
    locked first, so a double click or a retry waits and then finds them sent, never sends twice."""
    rows = load_takedowns(session, actor, takedown_ids, lock=lock)
    hosts = sorted({t.host_key for t in rows})
    if len(hosts) > 1:
        raise InvalidInput("several_hosts", f"one notice goes to one host; these takedowns are on {', '.join(hosts)}")
    withdrawn = [t.id for t in rows if t.page_url is None]
    if withdrawn:
        raise Conflict("withdrawn", f"takedown {withdrawn[0]} is of a withdrawn case")
    directory = HostDirectory.load(session)
    entry = directory.entry(hosts[0])
    ladder_step = None
    if step is not None:
        if entry is None:
            raise Conflict("unknown_host", f"{hosts[0]} is not in the directory: it has no escalation ladder")
        ladder_step = next_step(entry, step)
        if ladder_step is None:
            raise InvalidInput("unknown_step", f"{entry.key}'s ladder has {len(entry.escalation)} step(s); "
                                               f"there is no step {step}")
    recipient, channel, step_language = _recipient(entry, ladder_step)
    language = language or step_language or (entry.language if entry else work.settings.takedowns.default_language)
    operator = entry.operator if entry else hosts[0].removeprefix(UNKNOWN_PREFIX)
    items = [{"page_url": t.page_url, "media_url": t.media_url, "platform": t.platform, "found_at": _when(t.found_at),
              "sha256": t.media_sha256 or None, "phash": t.media_phash, "pdq": t.media_pdq}
             for t in sorted(rows, key=lambda t: t.id)]
    sent = [t.first_sent_at for t in rows if t.first_sent_at is not None]
    organisation = work.settings.takedowns.organisation
    context = {
        "reference": reference_of(hosts[0], [t.id for t in rows], step, now.date()),
        "organisation": organisation.model_dump(), "operator": operator,
        "recipient_name": (ladder_step.name if ladder_step is not None and ladder_step.kind != "resend"
                           and ladder_step.name else operator),
        "legal_basis": entry.legal_basis if entry else None,
        "step": ladder_step.model_dump() if ladder_step is not None else None,
        "first_requested": _when(min(sent)) if sent else "-", "items": items, "count": len(items),
        "any_hash": any(i["sha256"] or i["phash"] or i["pdq"] for i in items),
    }
    subject, body = render(language, context)
    case_ids = sorted({t.case_id for t in rows if t.case_id})
    warnings = []
    if entry is None:
        warnings.append("unknown_host")  # "unknown host: add a contact"
    elif not entry.verified:
        warnings.append("contact_unverified")
    if recipient is None:
        warnings.append("no_contact")
    warnings += [f"no_takedown_consent:{c}" for c in case_ids if active_consent(session, c, "takedown") is None]
    draft = NoticeDraft(hosts[0], operator, recipient, channel, language, subject, body, [t.id for t in rows],
                        case_ids, step, ladder_step.kind if ladder_step else None,
                        bool(entry and entry.verified), warnings)
    return draft, rows, directory


def _check_language(language: str | None) -> None:
    if language is not None and language not in LANGUAGES:
        raise InvalidInput("unknown_language", f"notices are written in {', '.join(LANGUAGES)}, not {language!r}")


def preview_notice(work: Workspace, actor: Actor, takedown_ids: list[int], *, language: str | None = None,
                   step: int | None = None, now: dt.datetime | None = None) -> NoticeDraft:
    """The notice as it would go out now; nothing is stored or moved (the preview is audited)."""
    now = aware_time(now)
    target = f"takedowns:{len(takedown_ids)}"
    with refusals_audited(work.sessions, actor, "notice_preview", target=target), work.sessions() as session:
        _check_language(language)
        draft, _, _ = _prepare(session, work, actor, takedown_ids, language, step, now)
    record(work.sessions, actor, "notice_preview", target=f"host:{draft.host_key}",
           result_count=len(draft.takedown_ids), step=step, language=draft.language)
    return draft


def _store(session: Session, work: Workspace, actor: Actor, draft: NoticeDraft, rows: list[Takedown],
           directory: HostDirectory, method: str, message_id: str | None, now: dt.datetime) -> Notice:
    """The notice row, its items, the takedowns' transitions and the audit row (the caller's transaction)."""
    for case_id in draft.case_ids:
        require_consent(session, case_id, ("takedown",), "sending a takedown notice")
    if draft.step is None:
        stale = [t for t in rows if t.state not in FIRST_NOTICE_STATES]
        if stale:
            raise Conflict("not_draft", f"takedown {stale[0].id} is {stale[0].state}: a first notice goes for drafts "
                                        "and reappeared URLs; take the next escalation step instead (step=N)")
    else:
        wrong = [t for t in rows if t.escalation_step != draft.step]
        if wrong:
            raise Conflict("wrong_step", f"takedown {wrong[0].id} is at step {wrong[0].escalation_step} of its "
                                         f"ladder, not {draft.step}")
    notice = Notice(host_key=draft.host_key, step=draft.step, recipient=draft.recipient, channel=draft.channel,
                    method=method, language=draft.language, subject=draft.subject, body=draft.body,
                    body_sha256=hashlib.sha256(draft.body.encode()).hexdigest(), message_id=message_id, sent_at=now,
                    sent_by=actor.name)
    session.add(notice)
    session.flush()
    session.add_all(NoticeItem(notice_id=notice.id, takedown_id=t.id) for t in rows)
    session.flush()
    for takedown in rows:
        if draft.step is None:
            apply_transition(session, work, actor, takedown, "sent", now, notice_id=notice.id, directory=directory,
                             evidence={"method": method}, action="notice_" + method)
        else:
            take_step(session, work, actor, takedown, now, directory, notice_id=notice.id)
    record(work.sessions, actor, "notice_" + method, target=f"notice:{notice.id}", result_count=len(rows),
           host=draft.host_key, step=draft.step, language=draft.language, session=session)
    return notice


def _message(work: Workspace, draft: NoticeDraft, now: dt.datetime) -> EmailMessage:
    organisation = work.settings.takedowns.organisation
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = Address(display_name=organisation.name, addr_spec=organisation.email)  # a comma stays in the name
    if draft.channel == "email" and draft.recipient:
        message["To"] = draft.recipient
    message["Reply-To"] = organisation.email
    message["Subject"] = draft.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=organisation.email.rpartition("@")[2] or None)
    message.set_content(draft.body, charset="utf-8")
    return message


def _view(session: Session, actor: Actor, notice: Notice) -> NoticeView:
    return notice_view(session, notice, visible_case_ids(session, actor))


def download_eml(work: Workspace, actor: Actor, takedown_ids: list[int], *, language: str | None = None,
                 step: int | None = None, now: dt.datetime | None = None) -> tuple[NoticeView, bytes]:
    """The notice as an .eml for the organisation's mail program, stored as sent (staff send it)."""
    now = aware_time(now)
    with refusals_audited(work.sessions, actor, "notice_eml", target=f"takedowns:{len(takedown_ids)}"):
        _check_language(language)
        with work.sessions.begin() as session:
            draft, rows, directory = _prepare(session, work, actor, takedown_ids, language, step, now, lock=True)
            message = _message(work, draft, now)
            notice = _store(session, work, actor, draft, rows, directory, "eml", message["Message-ID"], now)
            return _view(session, actor, notice), message.as_bytes()


def record_web_form(work: Workspace, actor: Actor, takedown_ids: list[int], *, language: str | None = None,
                    step: int | None = None, now: dt.datetime | None = None) -> NoticeView:
    """Staff copied the notice's text into the host's web form: store it as sent."""
    now = aware_time(now)
    with refusals_audited(work.sessions, actor, "notice_web_form", target=f"takedowns:{len(takedown_ids)}"):
        _check_language(language)
        with work.sessions.begin() as session:
            draft, rows, directory = _prepare(session, work, actor, takedown_ids, language, step, now, lock=True)
            notice = _store(session, work, actor, draft, rows, directory, "web_form", None, now)
            return _view(session, actor, notice)


def send_notice(work: Workspace, actor: Actor, takedown_ids: list[int], *, language: str | None = None,
                step: int | None = None, now: dt.datetime | None = None) -> NoticeView:
    """Send the notice over SMTP to a verified e-mail contact; stored only if the server accepted it."""
    now = aware_time(now)
    with refusals_audited(work.sessions, actor, "notice_smtp", target=f"takedowns:{len(takedown_ids)}"):
        _check_language(language)
        config = work.settings.takedowns.smtp
        if config.host is None:  # a choice of the installation, not a fault: the other ways stay open
            raise Conflict("smtp_off", "sending is off here (takedowns.smtp.host is not set): download the .eml "
                                       "or copy the text into the host's form")
        with work.sessions.begin() as session:
            draft, rows, directory = _prepare(session, work, actor, takedown_ids, language, step, now, lock=True)
            if draft.channel != "email" or not draft.recipient:
                raise Conflict("no_email_contact", f"{draft.host_key} takes notices by {draft.channel}: "
                                                   "copy the text into its form, or add an e-mail contact")
            if not draft.verified:
                raise Conflict("contact_unverified", f"the contact of {draft.host_key} is not verified: the "
                                                     "organisation checks it, then marks the host verified")
            message = _message(work, draft, now)
            notice = _store(session, work, actor, draft, rows, directory, "smtp", message["Message-ID"], now)
            view = _view(session, actor, notice)
            deliver(config, message)  # last: a refusal rolls the notice and its transitions back
    return view


# -- SMTP ------------------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def smtp_credentials(path: Path | None) -> tuple[str, str] | None:
    """(username, password) from a YAML or JSON file, or None without a file."""
    if path is None:
        return None
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise Misconfigured("smtp_credentials", f"takedowns.smtp.credentials_file {path}: {error}") from None
    if not isinstance(data, dict) or not data.get("username") or not data.get("password"):
        raise Misconfigured("smtp_credentials", f"takedowns.smtp.credentials_file {path} needs username and password")
    return str(data["username"]), str(data["password"])


def deliver(config: SmtpConfig, message: EmailMessage) -> None:
    """Hand the message to the mail server: STARTTLS or implicit TLS (certificates checked), or plain
    to a loopback relay when ``allow_plain_loopback`` says so; Unavailable when it does not take it."""
    if config.host is None:
        raise Misconfigured("smtp_off", "takedowns.smtp.host is not set")
    if config.security == "none" and not (config.allow_plain_loopback and _is_loopback(config.host)):
        raise Misconfigured("smtp_plain", "plain SMTP is allowed only to a loopback address with "
                                          "takedowns.smtp.allow_plain_loopback; use starttls or tls")
    credentials = smtp_credentials(config.credentials_file)
    context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    try:
        if config.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout_s,
                                                    context=context)
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
        with client:
            client.ehlo()
            if config.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if credentials is not None:
                client.login(*credentials)
            refused = client.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        raise Unavailable("smtp_failed", f"the mail server {config.host}:{config.port} did not take the notice: "
                                         f"{error}") from None
    if refused:
        raise Unavailable("smtp_failed", f"the mail server refused {', '.join(refused)}")


# -- listing ---------------------------------------------------------------------------------------
def notice_batches(work: Workspace, actor: Actor) -> list[NoticeBatch]:
    """Per host, the actor's takedowns waiting for a first notice (drafts and reappeared URLs)."""
    with refusals_audited(work.sessions, actor, "view_takedowns"), work.sessions() as session:
        require_takedown_role(actor)
        query = select(Takedown.id, Takedown.host_key, Takedown.case_id).where(
            Takedown.state.in_(FIRST_NOTICE_STATES), Takedown.page_url.is_not(None)).order_by(Takedown.id)
        query = of_visible_cases(session, actor, query)
        groups: dict[str, list[tuple[int, str]]] = {}
        for takedown_id, host_key, case_id in session.execute(query):
            groups.setdefault(host_key, []).append((takedown_id, case_id))
    return [NoticeBatch(key, not key.startswith(UNKNOWN_PREFIX), [i for i, _ in items], len({c for _, c in items}))
            for key, items in sorted(groups.items())]


def list_notices(work: Workspace, actor: Actor, *, takedown_id: int | None = None, limit: int = 100,
                 offset: int = 0) -> list[NoticeView]:
    """Newest first: the notices with a URL of the actor's cases (a notice that also lists other cases'
    URLs shows only the actor's takedown ids, without its text)."""
    with refusals_audited(work.sessions, actor, "view_notices"), work.sessions() as session:
        require_takedown_role(actor)
        query = select(Notice).order_by(Notice.id.desc())
        if takedown_id is not None:
            load_takedowns(session, actor, [takedown_id])
            query = query.where(Notice.id.in_(select(NoticeItem.notice_id).where(
                NoticeItem.takedown_id == takedown_id)))
        visible = visible_case_ids(session, actor)
        if visible is not None:
            query = query.where(Notice.id.in_(select(NoticeItem.notice_id).join(
                Takedown, Takedown.id == NoticeItem.takedown_id).where(Takedown.case_id.in_(sorted(visible)))))
        views = [notice_view(session, n, visible) for n in session.scalars(query.limit(limit).offset(offset))]
    record(work.sessions, actor, "view_notices", result_count=len(views))
    return views


def get_notice(work: Workspace, actor: Actor, notice_id: int) -> NoticeView:
    with refusals_audited(work.sessions, actor, "view_notices", target=f"notice:{notice_id}"), \
            work.sessions() as session:
        require_takedown_role(actor)
        notice = session.get(Notice, notice_id)
        visible = visible_case_ids(session, actor)
        view = notice_view(session, notice, visible) if notice is not None else None
        if view is None or (visible is not None and not view.takedown_ids):
            raise NotFound("unknown_notice", f"no notice {notice_id} of your cases")
    record(work.sessions, actor, "view_notices", target=f"notice:{notice_id}")
    return view
