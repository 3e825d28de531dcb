"""Hash lists in the formats ThreatExchange's tools and HMA read: hashes, never images.

Two formats, both text, one hash per line:

* ``te`` (default): the threatexchange library's local-file exchange (``LocalFileSignalExchangeAPI``,
  which HMA's exchanges and the ``threatexchange`` CLI read): ``<signal type> <signal value>``
  per line, here ``pdq <64 hex digits>``.
* ``csv``: the same with metadata a partner can filter on: a header
  ``signal_type,signal_value,quality,variant,frame_ms`` and one row per hash. No case id, label
  or client detail is written: a list leaves the organisation, the case does not.

Parsing takes either (a bare hex digest per line too, the file exchange's form with a fixed
signal type), skips blank lines and ``#`` comments, and refuses a line it cannot read with its
line number. Hashes of other signal types (``video_md5``...) are counted and skipped: mimamori
matches PDQ.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from mimamori.core.errors import InvalidInput
from mimamori.media.pdq import from_hex, to_hex

FORMATS = ("te", "csv")
CSV_HEADER = ("signal_type", "signal_value", "quality", "variant", "frame_ms")
PDQ = "pdq"
MAX_LINES = 1_000_000


@dataclass(frozen=True)
class ListedHash:
    bits: bytes
    quality: int | None = None  # unknown in the te format
    variant: str = "imported"
    frame_ms: int = 0


@dataclass(frozen=True)
class ParsedList:
    hashes: list[ListedHash]
    skipped: dict[str, int]  # other signal types -> how many lines


def format_hash_list(hashes: Iterable[ListedHash], fmt: str = "te") -> str:
    if fmt not in FORMATS:
        raise InvalidInput("unknown_format", f"hash lists are {' or '.join(FORMATS)}, not {fmt!r}")
    unique = list({h.bits: h for h in hashes}.values())
    if fmt == "te":
        return "".join(f"{PDQ} {to_hex(h.bits)}\n" for h in unique)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for h in unique:
        writer.writerow((PDQ, to_hex(h.bits), "" if h.quality is None else h.quality, h.variant, h.frame_ms))
    return out.getvalue()


def parse_hash_list(text: str) -> ParsedList:
    """The PDQ hashes of a list in either format; a line that is neither is refused with its number."""
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise InvalidInput("list_too_long", f"a hash list holds at most {MAX_LINES} lines, not {len(lines)}")
    first = next((line for line in lines if line.strip() and not line.lstrip().startswith("#")), "")
    if "signal_value" in first.replace(" ", "").lower().split(","):  # a CSV header
        return _parse_csv(text)
    hashes, skipped = [], {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kind, _, value = line.partition(" ")
        if not value:  # a bare digest: the file exchange with its signal type fixed to PDQ
            kind, value = PDQ, kind
        if kind.lower() != PDQ:
            skipped[kind] = skipped.get(kind, 0) + 1
            continue
        hashes.append(ListedHash(_hash(value.strip(), number)))
    return ParsedList(hashes, skipped)


def _parse_csv(text: str) -> ParsedList:
    hashes, skipped = [], {}
    reader = csv.DictReader(io.StringIO(text))
    missing = {"signal_type", "signal_value"} - set(reader.fieldnames or ())
    if missing:
        raise InvalidInput("bad_hash_list", f"the CSV header lacks {', '.join(sorted(missing))}")
    for row in reader:
        number = reader.line_num
        kind = (row.get("signal_type") or "").strip().lower()
        if kind != PDQ:
            skipped[kind or "(empty)"] = skipped.get(kind or "(empty)", 0) + 1
            continue
        quality = _int(row.get("quality"), number, "quality", 0, 100)
        frame_ms = _int(row.get("frame_ms"), number, "frame_ms", 0, 10**12) or 0
        hashes.append(ListedHash(_hash((row.get("signal_value") or "").strip(), number), quality,
                                 "imported", frame_ms))
    return ParsedList(hashes, skipped)


def _hash(value: str, number: int) -> bytes:
    try:
        return from_hex(value)
    except ValueError:
        raise InvalidInput("bad_hash_list", f"line {number}: not a PDQ hash (64 hex digits)") from None


def _int(value: str | None, number: int, name: str, low: int, high: int) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        parsed = int(value)
    except ValueError:
        raise InvalidInput("bad_hash_list", f"line {number}: {name} is not a whole number") from None
    if not low <= parsed <= high:
        raise InvalidInput("bad_hash_list", f"line {number}: {name} {parsed} is outside {low}..{high}")
    return parsed
