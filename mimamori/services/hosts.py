"""The host directory: who hosts a URL, whom to ask to remove it, how, and what to do next.

An entry maps domain patterns to an operator, the country of its servers, an abuse contact
(an e-mail address or a web form), the language and legal basis of its notices, how long it
usually takes to answer, how often to re-check its URLs, how its "content removed" page looks,
and its escalation ladder. Staff edit it in the workbench or as YAML (``import_hosts`` /
``export_hosts``). A pattern ``example.com`` covers example.com and every subdomain; the longest
matching pattern wins. A URL of no entry is grouped by its registrable domain (the public-suffix
list bundled with tldextract: nothing is fetched at run time) as ``unknown:<domain>``, shown as
"unknown host: add a contact". The server country of such a URL can come from a MaxMind GeoIP
file the organisation provides (``takedowns.geoip_database``).

Contacts must be verified by the organisation before mimamori sends anything to them
(``verified: true``); an entry imported unverified can be previewed and downloaded only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from mimamori.core.errors import Forbidden, InvalidInput, Misconfigured, NotFound
from mimamori.services.access import require_admin, visible_case_ids
from mimamori.services.audit import Actor, record, refusals_audited
from mimamori.services.workspace import Workspace
from mimamori.stores.takedowns import CHANNELS, Host, Takedown

UNKNOWN_PREFIX = "unknown:"
TAKEDOWN_ROLES = ("admin", "reviewer", "operator")
STEP_KINDS = ("resend", "upstream", "registrar", "search_delisting", "hotline", "regulator")
LANGUAGES = ("en", "ja")
DOMAIN = r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"


# One mailbox: no spaces, commas, angle brackets, quotes or semicolons, which would make a
# recipient list or a display name of it in a header (a notice must reach exactly that address).
EMAIL_PATTERN = r"^[^@\s,;<>\"()]+@[^@\s,;<>\"()]+$"

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EscalationStep(Strict):
    """One rung of a host's ladder: taken when the previous one had no removal for ``after_days``."""

    kind: Literal[STEP_KINDS]  # type: ignore[valid-type]
    # Days to wait after this step before the next one is due; None: the host's expected response.
    after_days: int | None = Field(default=None, ge=1, le=365)
    name: str | None = Field(default=None, max_length=200)  # e.g. the upstream provider, the hotline
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_PATTERN)
    form_url: str | None = Field(default=None, max_length=2000, pattern=r"^https://")
    language: Literal[LANGUAGES] | None = None  # type: ignore[valid-type]


class RemovalRule(Strict):
    """How this host says "removed": any of the fields that is given must hold (all of them)."""

    status: list[int] = Field(default_factory=list)  # e.g. [200] for a "removed" page served as 200
    text: str | None = Field(default=None, min_length=3, max_length=500)  # in the page
    final_url_contains: str | None = Field(default=None, min_length=1, max_length=500)  # after redirects


class HostEntry(Strict):
    key: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    operator: str = Field(min_length=1, max_length=200)
    domains: list[str] = Field(min_length=1)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    abuse_email: str | None = Field(default=None, max_length=320, pattern=EMAIL_PATTERN)
    abuse_form_url: str | None = Field(default=None, max_length=2000, pattern=r"^https://")
    channel: Literal[CHANNELS] = "email"  # type: ignore[valid-type]
    language: Literal[LANGUAGES] = "en"  # type: ignore[valid-type]
    legal_basis: str | None = Field(default=None, max_length=2000)
    expected_response_days: int = Field(default=7, ge=1, le=365)
    recheck_hours: int | None = Field(default=None, ge=1, le=24 * 90)
    removal_rules: list[RemovalRule] = Field(default_factory=list)
    escalation: list[EscalationStep] = Field(default_factory=list)
    verified: bool = False
    notes: str | None = Field(default=None, max_length=4000)

    @field_validator("domains")
    @classmethod
    def _domains(cls, domains: list[str]) -> list[str]:
        import re

        cleaned = []
        for domain in domains:
            value = domain.strip().lower().rstrip(".")
            if not re.match(DOMAIN, value) or len(value) > 253:
                raise ValueError(f"{domain!r} is not a domain name (e.g. example.com)")
            cleaned.append(value.removeprefix("*."))
        return sorted(set(cleaned))

    def contact(self) -> str | None:
        """Where its notices go: the address for e-mail, the form for a web form."""
        return self.abuse_email if self.channel == "email" else self.abuse_form_url

    @classmethod
    def of(cls, host: Host) -> HostEntry:
        """The entry of a directory row: its columns of the entry's fields (``_store`` writes them the same way)."""
        return cls.model_validate(host, from_attributes=True)


@dataclass(frozen=True)
class HostMatch:
    key: str  # the entry's key, or unknown:<registrable domain>
    known: bool
    hostname: str
    registrable_domain: str
    entry: HostEntry | None


@dataclass(frozen=True)
class UnknownHost:
    registrable_domain: str
    key: str
    takedowns: int  # open or removed takedowns of the actor's cases on it


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    rehomed_takedowns: int  # takedowns of unknown hosts that an entry now covers


@lru_cache(maxsize=1)
def _extractor():
    import tldextract

    # The bundled snapshot only: no suffix-list download, no cache written.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def hostname_of(url: str) -> str:
    """The URL's host name, lower case, without port or trailing dot; InvalidInput for a non-web URL."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise InvalidInput("bad_url", f"{url[:200]!r} is not an http(s) URL with a host")
    return host.rstrip(".").lower()


def registrable_domain(url_or_host: str) -> str:
    """example.co.uk for https://a.b.example.co.uk/x (an IP address, or a name of no known suffix, as it is)."""
    host = hostname_of(url_or_host) if "://" in url_or_host else url_or_host.strip().rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    parts = _extractor()(host)
    if parts.domain and parts.suffix:
        return f"{parts.domain}.{parts.suffix}"
    return host


class HostDirectory:
    """The entries of the directory, loaded once for many URLs (a request, a batch of re-checks)."""

    def __init__(self, hosts: list[Host]):
        self.entries = {h.key: HostEntry.of(h) for h in hosts}
        self._patterns = sorted(((d, h.key) for h in hosts for d in h.domains), key=lambda p: -len(p[0]))

    @classmethod
    def load(cls, session: Session) -> HostDirectory:
        return cls(list(session.scalars(select(Host))))

    def entry_for_host(self, hostname: str) -> HostEntry | None:
        for pattern, key in self._patterns:
            if hostname == pattern or hostname.endswith("." + pattern):
                return self.entries[key]
        return None

    def resolve(self, url: str) -> HostMatch:
        hostname = hostname_of(url)
        domain = registrable_domain(hostname)
        entry = self.entry_for_host(hostname)
        if entry is not None:
            return HostMatch(entry.key, True, hostname, domain, entry)
        return HostMatch(UNKNOWN_PREFIX + domain, False, hostname, domain, None)

    def entry(self, key: str) -> HostEntry | None:
        return self.entries.get(key)


def resolve_host(session: Session, url: str) -> HostMatch:
    return HostDirectory.load(session).resolve(url)


def server_country(geoip_database: Path | None, hostname: str) -> str | None:
    """The ISO country of the host's first address by the organisation's GeoIP file, if one is configured.

    Only for hosts outside the directory (an entry says its country). A name that does not
    resolve, or an address the file does not know, has no country.
    """
    if geoip_database is None:
        return None
    try:
        address = str(ipaddress.ip_address(hostname))
    except ValueError:
        try:
            address = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)[0][4][0]
        except (OSError, UnicodeError):
            return None
    import maxminddb

    reader = _geoip_reader(str(geoip_database))
    try:
        found = reader.get(address)
    except maxminddb.InvalidDatabaseError as error:
        raise Misconfigured("bad_geoip_database", f"takedowns.geoip_database {geoip_database}: {error}") from None
    if not isinstance(found, dict):
        return None
    country = (found.get("country") or found.get("registered_country") or {}).get("iso_code")
    return country if isinstance(country, str) and len(country) == 2 else None


@lru_cache(maxsize=4)
def _geoip_reader(path: str):
    import maxminddb

    try:
        return maxminddb.open_database(path)
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
        raise Misconfigured("bad_geoip_database", f"takedowns.geoip_database {path}: {error}") from None


def list_hosts(work: Workspace, actor: Actor) -> list[HostEntry]:
    """The directory, for anyone who works on takedowns (admins edit it)."""
    with refusals_audited(work.sessions, actor, "view_hosts"), work.sessions() as session:
        require_takedown_role(actor)
        entries = [HostEntry.of(h) for h in session.scalars(select(Host).order_by(Host.key))]
    record(work.sessions, actor, "view_hosts", result_count=len(entries))
    return entries


def get_host(work: Workspace, actor: Actor, key: str) -> HostEntry:
    with refusals_audited(work.sessions, actor, "view_hosts", target=f"host:{key}"), work.sessions() as session:
        require_takedown_role(actor)
        return HostEntry.of(_host(session, key))


def require_takedown_role(actor: Actor) -> None:
    """Takedowns are case work: admins, reviewers and the local operator; auditors read the audit log."""
    if actor.role not in TAKEDOWN_ROLES:
        raise Forbidden("role_cannot_takedown", f"a {actor.role} does not work on takedowns")


def of_visible_cases(session: Session, actor: Actor, query: Select) -> Select:
    """``query`` of takedowns narrowed to the cases ``actor`` may see (admins: every case)."""
    visible = visible_case_ids(session, actor)
    return query if visible is None else query.where(Takedown.case_id.in_(sorted(visible)))


def _host(session: Session, key: str) -> Host:
    host = session.scalars(select(Host).where(Host.key == key)).first()
    if host is None:
        raise NotFound("unknown_host", f"no host {key} in the directory")
    return host


def _store(session: Session, actor: Actor, entry: HostEntry, now: dt.datetime) -> bool:
    """Insert or replace one entry; True when it is new."""
    host = session.scalars(select(Host).where(Host.key == entry.key)).first()
    values = entry.model_dump(mode="json")
    if host is None:
        session.add(Host(**values, updated_by=actor.name, updated_at=now))
        return True
    for name, value in values.items():
        setattr(host, name, value)
    host.updated_by, host.updated_at = actor.name, now
    return False


def _rehome(session: Session) -> int:
    """Takedowns filed under an unknown host (or an entry since removed) that an entry now covers get its key.

    Only a takedown's host and country change: its notices stay as they were sent.
    """
    directory = HostDirectory.load(session)
    moved = 0
    rows = session.execute(select(Takedown.id, Takedown.host_key, Takedown.page_url).where(
        Takedown.page_url.is_not(None)))
    for takedown_id, key, page_url in rows.all():
        try:
            found = directory.resolve(page_url)
        except InvalidInput:
            continue
        if found.key != key:
            values = {"host_key": found.key}
            if found.known and found.entry is not None and found.entry.country:
                values["country"] = found.entry.country
            session.execute(update(Takedown).where(Takedown.id == takedown_id).values(**values)
                            .execution_options(synchronize_session=False))
            moved += 1
    return moved


def save_host(work: Workspace, actor: Actor, entry: HostEntry, now: dt.datetime | None = None) -> HostEntry:
    """Create or replace one entry (admin); takedowns its domains now cover move to it."""
    from mimamori.stores.cases import utcnow

    now = now or utcnow()
    with refusals_audited(work.sessions, actor, "save_host", target=f"host:{entry.key}"), \
            work.sessions.begin() as session:
        require_admin(actor)
        created = _store(session, actor, entry, now)
        session.flush()
        moved = _rehome(session)
        record(work.sessions, actor, "save_host", target=f"host:{entry.key}", created=created, rehomed=moved,
               verified=entry.verified, session=session)
    return entry


def delete_host(work: Workspace, actor: Actor, key: str) -> int:
    """Remove an entry (admin); its takedowns go back to "unknown host". Returns how many moved."""
    with refusals_audited(work.sessions, actor, "delete_host", target=f"host:{key}"), \
            work.sessions.begin() as session:
        require_admin(actor)
        session.delete(_host(session, key))
        session.flush()
        moved = _rehome(session)
        record(work.sessions, actor, "delete_host", target=f"host:{key}", rehomed=moved, session=session)
    return moved


def parse_hosts(text: str) -> list[HostEntry]:
    """The entries of a YAML directory file (a list, or a mapping with ``hosts:``); every error at once."""
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as error:  # a bad date or a deep nest is bad YAML too
        raise InvalidInput("invalid_hosts", f"the host directory is not YAML: {error}") from None
    if isinstance(data, dict):
        data = data.get("hosts")
    if not isinstance(data, list):
        raise InvalidInput("invalid_hosts", "a host directory is a list of hosts (or a mapping with hosts:)")
    entries, problems = [], []
    for number, item in enumerate(data, start=1):
        try:
            entries.append(HostEntry.model_validate(item))
        except ValidationError as error:
            where = item.get("key", f"#{number}") if isinstance(item, dict) else f"#{number}"
            problems += [f"{where}: {'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}"
                         for e in error.errors()]
    keys = [e.key for e in entries]
    problems += [f"{key}: listed twice" for key in sorted({k for k in keys if keys.count(k) > 1})]
    if problems:
        raise InvalidInput("invalid_hosts", "the host directory is not valid: " + "; ".join(problems[:20]))
    return entries


def import_hosts(work: Workspace, actor: Actor, text: str, now: dt.datetime | None = None) -> ImportResult:
    """Add or replace the entries of a YAML file (admin), all or none; entries not in the file stay."""
    from mimamori.stores.cases import utcnow

    now = now or utcnow()
    with refusals_audited(work.sessions, actor, "import_hosts"), work.sessions.begin() as session:
        require_admin(actor)
        entries = parse_hosts(text)
        created = sum(_store(session, actor, entry, now) for entry in entries)
        session.flush()
        result = ImportResult(created, len(entries) - created, _rehome(session))
        record(work.sessions, actor, "import_hosts", result_count=len(entries), created=result.created,
               updated=result.updated, rehomed=result.rehomed_takedowns, session=session)
    return result


EXPORT_HEADER = ("# mimamori host directory (mimamori takedowns hosts import FILE).\n"
                 "# Contacts must be verified by the organisation before notices are sent to them.\n")


def export_hosts(work: Workspace, actor: Actor) -> str:
    entries = list_hosts(work, actor)
    body = yaml.safe_dump({"hosts": [e.model_dump(mode="json", exclude_none=True) for e in entries]},
                          allow_unicode=True, sort_keys=False)
    return EXPORT_HEADER + body


def unknown_hosts(work: Workspace, actor: Actor) -> list[UnknownHost]:
    """Registrable domains with takedowns but no directory entry: "unknown host: add a contact"."""
    from sqlalchemy import func

    from mimamori.stores.takedowns import RECHECKED_STATES

    with refusals_audited(work.sessions, actor, "view_hosts", target="unknown"), work.sessions() as session:
        require_takedown_role(actor)
        query = (select(Takedown.host_key, func.count()).where(Takedown.host_key.startswith(UNKNOWN_PREFIX),
                                                               Takedown.state.in_(RECHECKED_STATES))
                 .group_by(Takedown.host_key).order_by(func.count().desc(), Takedown.host_key))
        query = of_visible_cases(session, actor, query)
        rows = [UnknownHost(key.removeprefix(UNKNOWN_PREFIX), key, count) for key, count in session.execute(query)]
    return rows
