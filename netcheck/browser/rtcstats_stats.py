"""@jitsi/rtcstats' `getstats` entries as the call window's snapshots (issue 25's rtcstats door). Pure.

The client (rtcstats.js `deltaCompression`) sends each peer connection's getStats as a delta of the
previous one: a report's fields equal to last time are left out, its `id` always; the report with the
newest `timestamp` has it set to 0 and that stamp goes to the top level `timestamp`; a report left out
is gone. `undo_delta` rebuilds the reports — keeping only the types and fields web/callstats.js posts
(call_window.ENTRY_SCHEMAS) and the two that pick the selected ICE pair — and `window_peers` turns the
rebuilt connections into the `peers` list of a posted window, so `call_window.parse_peers` checks it
and the same `window_deltas` / `call_result` judge it: no second model. A delta that cannot be undone
is dropped with a counted reason (`EntryDropped`). Contract: docs/design-notes.md, "The rtcstats door".
"""

from __future__ import annotations

import math
import re
from typing import Any

from netcheck.browser.call_window import ENTRY_SCHEMAS, MAX_ENTRIES, MAX_STREAMS_PER_KIND

MAX_REPORTS_PER_PC = 400
"""Reports in one connection's getStats: a 1:1 call has ≈ 30, an SFU call of 20 people a few hundred."""
MAX_FIELDS_PER_REPORT = 160
"""Chromium's inbound-rtp has ≈ 80 fields."""
REPORT_ID = re.compile(r"^[\x21-\x7e]{1,256}$")
"""Any report's id: Chromium names a certificate by its fingerprint ("CF" + 95 characters for SHA-256, 193
for SHA-512), longer than a stream's id (call_window.STREAM_ID, 64); a report never posted keeps only its
type, so a long id costs its length once per report (MAX_REPORTS_PER_PC)."""
SELECTION_FIELDS = {"transport": ("selectedCandidatePairId",), "candidate-pair": ("nominated", "state")}
"""Kept beside the window's fields only to find the selected pair; never posted."""
KEPT_FIELDS = {kind: tuple(name for name in schema.fields if name not in ("type", "id", "timestamp"))
               for kind, schema in ENTRY_SCHEMAS.items()}
ENTRY_DROP_REASONS = ("malformed_delta", "unknown_report", "too_many_reports")
"""Why a getstats entry was dropped before it reached a window (the door counts each)."""
PACKETS = {"inbound-rtp": "packetsReceived", "outbound-rtp": "packetsSent"}

Reports = dict[str, dict[str, Any]]
"""One peer connection's reports by id: the kept fields, `type`, `id` and the `timestamp` undone."""


class EntryDropped(Exception):
    """A getstats entry not undone: `reason` is one of ENTRY_DROP_REASONS; the connection's state is unchanged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def undo_delta(previous: Reports, compressed: Any) -> tuple[Reports, float]:
    """(the connection's reports, the entry's newest stamp in ms) after one delta-compressed getstats entry.
    A report id never seen must bring its `type` (the client sends every field the first time)."""
    if not isinstance(compressed, dict):
        raise EntryDropped("malformed_delta")
    top_ms = compressed.get("timestamp")
    if not _finite(top_ms) or not 0 < top_ms < 1e13:
        raise EntryDropped("malformed_delta")
    if len(compressed) - 1 > MAX_REPORTS_PER_PC:
        raise EntryDropped("too_many_reports")
    reports: Reports = {}
    for report_id, delta in compressed.items():
        if report_id == "timestamp":
            continue
        if not isinstance(delta, dict) or len(delta) > MAX_FIELDS_PER_REPORT or not REPORT_ID.fullmatch(report_id):
            raise EntryDropped("malformed_delta")
        before = previous.get(report_id)
        kind = delta.get("type", before["type"] if before else None)
        if not isinstance(kind, str):
            raise EntryDropped("unknown_report" if before is None else "malformed_delta")
        fields = (*KEPT_FIELDS.get(kind, ()), *SELECTION_FIELDS.get(kind, ()))
        report = dict(before) if before is not None and before["type"] == kind else {"type": kind[:32]}
        report["id"] = report_id
        report.update((name, delta[name]) for name in fields if name in delta)
        stamp = delta.get("timestamp", report.get("timestamp"))
        if stamp == 0:
            stamp = top_ms
        if not _finite(stamp):
            raise EntryDropped("malformed_delta")
        report["timestamp"] = stamp
        reports[report_id] = report
    return reports, float(top_ms)


def window_peers(connections: dict[str, Reports]) -> list[dict[str, Any]]:
    """What web/callstats.js would post for these connections: the four types, audio and video streams
    only, the selected ICE pair, the busiest streams first within the window's bounds."""
    peers = []
    room = MAX_ENTRIES
    for pc, reports in connections.items():
        pair = _selected_pair(reports)
        chosen: list[dict[str, Any]] = []
        per_kind: dict[tuple[str, Any], int] = {}
        ordered = sorted(reports.values(), key=lambda r: -_packets(r))
        for report in ordered:
            kind = report["type"]
            if kind not in ENTRY_SCHEMAS or (kind == "candidate-pair" and report["id"] != pair):
                continue
            if kind != "candidate-pair" and report.get("kind") not in ("audio", "video"):
                continue
            key = (kind, report.get("kind"))
            per_kind[key] = per_kind.get(key, 0) + 1
            if per_kind[key] <= MAX_STREAMS_PER_KIND and len(chosen) < room:
                chosen.append({name: value for name, value in report.items()
                               if name in ("type", "id", "timestamp") or name in KEPT_FIELDS[kind]})
        room -= len(chosen)
        if chosen:
            peers.append({"pc": pc, "stats": chosen})
    return peers


def _selected_pair(reports: Reports) -> str | None:
    """The transport's selected pair, else a nominated pair that succeeded (Firefox has no transport)."""
    for report in reports.values():
        if report["type"] == "transport" and isinstance(report.get("selectedCandidatePairId"), str):
            return str(report["selectedCandidatePairId"])
    for report in reports.values():
        if report["type"] == "candidate-pair" and report.get("nominated") is True and report.get("state") == "succeeded":
            return str(report["id"])
    return None


def _packets(report: dict[str, Any]) -> float:
    value = report.get(PACKETS.get(report["type"], ""))
    return float(value) if _finite(value) else 0.0


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
