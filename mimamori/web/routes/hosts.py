"""The host directory: the entries (whom to ask, how, what next), the hosts of takedowns no entry
covers ("unknown host: add a contact"), an entry's form (admins edit, others read), and the
directory as YAML (export for everyone who works on takedowns, import for admins).

The escalation ladder and the removal-page rules are lists of small records; the form takes
them as YAML, the same words as the directory file, so one way of writing them is learnt once.
"""

from __future__ import annotations

import re
from typing import Annotated

import yaml
from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from mimamori.api.errors import http_status
from mimamori.core.errors import InvalidInput, MimamoriError
from mimamori.services import hosts
from mimamori.services.audit import refusals_audited
from mimamori.web.render import error_text, render, said_on_page
from mimamori.web.routing import PageRoute
from mimamori.web.security import Staff, page, workspace

# Browsers' pages only (mimamori/web/routing.py): the API's JSON routes of takedowns may share these paths.
shared = APIRouter(route_class=PageRoute)
Working = Annotated[Staff, Depends(page("admin", "reviewer"))]
Admin = Annotated[Staff, Depends(page("admin"))]
HostKey = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
Short = Annotated[str, Form(max_length=320)]
Long = Annotated[str, Form(max_length=20_000)]
MAX_IMPORT_BYTES = 2 * 1024 * 1024
DONE = {"saved", "deleted", "imported"}


def _yaml(entry: hosts.HostEntry | None, field: str) -> str:
    """A list field of the entry as YAML for its textarea (empty for none)."""
    values = getattr(entry, field) if entry is not None else []
    if not values:
        return ""
    return yaml.safe_dump([v.model_dump(mode="json", exclude_none=True) for v in values], allow_unicode=True,
                          sort_keys=False)


@shared.get("/hosts")
def host_list(request: Request, staff: Working, done: str | None = None, created: int = 0, updated: int = 0,
              rehomed: int = 0) -> Response:
    return _list_page(request, staff, notice=done if done in DONE else None,
                      counts={"created": created, "updated": updated, "rehomed": rehomed})


def _list_page(request: Request, staff: Staff, status: int = 200, **context) -> Response:
    work = workspace(request)
    return render(request, "hosts.html", {"hosts": hosts.list_hosts(work, staff.actor),
                                          "unknown": hosts.unknown_hosts(work, staff.actor), **context},
                  status=status)


def _slug(domain: str) -> str:
    return re.sub(r"[^a-z0-9._-]", "-", domain.lower()).strip("-._")[:100] or "host"


def _form(request: Request, staff: Staff, entry: hosts.HostEntry | None, values: dict | None = None,
          status: int = 200, **context) -> Response:
    """The entry's form: its values (or what was typed, after a refusal)."""
    if values is None:
        values = entry.model_dump(mode="json") if entry is not None else {}
        values["domains"] = "\n".join(values.get("domains", []))
        values["escalation"], values["removal_rules"] = _yaml(entry, "escalation"), _yaml(entry, "removal_rules")
    values = {**dict.fromkeys(hosts.HostEntry.model_fields, ""), **values}
    return render(request, "host.html", {"entry": entry, "v": values, "channels": ("email", "web_form"),
                                         "languages": hosts.LANGUAGES, "step_kinds": hosts.STEP_KINDS, **context},
                  status=status)


@shared.get("/hosts/new")
def new_host(request: Request, staff: Admin, domain: Annotated[str, Query(max_length=253)] = "") -> Response:
    """An empty entry, or one for an unknown host's domain ("add a contact")."""
    domain = domain.strip().lower()
    values = {"key": _slug(domain) if domain else "", "domains": domain, "channel": "email", "language": "en",
              "expected_response_days": 7, "escalation": "", "removal_rules": ""}
    return _form(request, staff, None, values)


@shared.get("/hosts/{key}")
def host_page(request: Request, staff: Working, key: HostKey) -> Response:
    return _form(request, staff, hosts.get_host(workspace(request), staff.actor, key))


def _list_of(text: str, field: str) -> list:
    if not text.strip():
        return []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, list):
        error = InvalidInput("invalid_host", f"{field}: a YAML list of records")
        error.fields = [field]
        raise error
    return data


def _entry(values: dict) -> hosts.HostEntry:
    """The form's values as an entry; a refusal names the form's fields at fault (their labels)."""
    body = {k: (v.strip() if isinstance(v, str) else v) or None for k, v in values.items()
            if k not in ("domains", "escalation", "removal_rules", "verified")}
    body["domains"] = [d for d in re.split(r"[\s,]+", values["domains"]) if d]
    body["escalation"] = _list_of(values["escalation"], "escalation")
    body["removal_rules"] = _list_of(values["removal_rules"], "removal_rules")
    body["verified"] = values["verified"] == "on"
    body["expected_response_days"] = body["expected_response_days"] or 7
    try:
        return hosts.HostEntry.model_validate(body)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        refusal = InvalidInput("invalid_host", problems)  # the audit row keeps pydantic's words
        refusal.fields = list(dict.fromkeys(str(e["loc"][0]) for e in error.errors() if e["loc"]))
        raise refusal from None


@shared.post("/hosts")
async def save_host(request: Request, staff: Admin, key: Short, operator: Short,
                    domains: Annotated[str, Form(max_length=5000)], country: Annotated[str, Form(max_length=8)] = "",
                    channel: Annotated[str, Form(max_length=20)] = "email", abuse_email: Short = "",
                    abuse_form_url: Annotated[str, Form(max_length=2000)] = "",
                    language: Annotated[str, Form(max_length=8)] = "en", legal_basis: Long = "",
                    expected_response_days: Annotated[str, Form(max_length=8)] = "7",
                    recheck_hours: Annotated[str, Form(max_length=8)] = "", escalation: Long = "",
                    removal_rules: Long = "", verified: Annotated[str, Form(max_length=8)] = "off",
                    notes: Long = "") -> Response:
    work = workspace(request)
    values = {"key": key, "operator": operator, "domains": domains, "country": country.upper(), "channel": channel,
              "abuse_email": abuse_email, "abuse_form_url": abuse_form_url, "language": language,
              "legal_basis": legal_basis, "expected_response_days": expected_response_days,
              "recheck_hours": recheck_hours, "escalation": escalation, "removal_rules": removal_rules,
              "verified": verified, "notes": notes}
    try:
        with refusals_audited(work.sessions, staff.actor, "save_host", target=f"host:{key[:100]}"):
            entry = _entry(values)
        await run_in_threadpool(hosts.save_host, work, staff.actor, entry)
    except MimamoriError as error:
        if not said_on_page(error):
            raise
        return _form(request, staff, None, values, status=http_status(error),
                     host_error=error_text(staff.view.language, error))
    return RedirectResponse("/hosts?done=saved", status_code=303)


@shared.post("/hosts/{key}/delete")
async def delete_host(request: Request, staff: Admin, key: HostKey) -> Response:
    """The entry goes; its takedowns are "unknown host" again (their notices stay as sent)."""
    await run_in_threadpool(hosts.delete_host, workspace(request), staff.actor, key)
    return RedirectResponse("/hosts?done=deleted", status_code=303)


@shared.get("/hosts.yaml")
def export(request: Request, staff: Working) -> Response:
    text = hosts.export_hosts(workspace(request), staff.actor)
    return Response(text, media_type="application/yaml; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="hosts.yaml"'})


@shared.post("/hosts/import")
async def import_hosts(request: Request, staff: Admin, directory: Annotated[UploadFile, File()]) -> Response:
    """A YAML directory file: its entries added or replaced, all or none (the others stay)."""
    work = workspace(request)
    try:
        with refusals_audited(work.sessions, staff.actor, "import_hosts"):
            data = await directory.read(MAX_IMPORT_BYTES + 1)
            if len(data) > MAX_IMPORT_BYTES:
                raise InvalidInput("too_large", "the directory file is over 2 MiB")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput("invalid_hosts", "the directory file is not UTF-8 text") from None
        result = await run_in_threadpool(hosts.import_hosts, work, staff.actor, text)
    except MimamoriError as error:
        if not said_on_page(error):
            raise
        return _list_page(request, staff, http_status(error), notice=None, counts={},
                          import_error=error_text(staff.view.language, error))
    return RedirectResponse(f"/hosts?done=imported&created={result.created}&updated={result.updated}"
                            f"&rehomed={result.rehomed_takedowns}", status_code=303)
