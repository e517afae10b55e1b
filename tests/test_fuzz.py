"""Hostile input (issue 8): the hub's event parser, the SSE reader, the config loader, and every HTTP
body the server accepts (SDP offers, A/V reports, events, uploads) — bounded, and never a crash.

The wire parser and tokens are fuzzed in test_wire_and_reflector.py and test_tokens.py."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netcheck.errors import ConfigError, UsageError
from netcheck.server.hub.events import EventError, parse_events
from netcheck.session.watch import LineSplitter, SseParser, StreamBroken
from tests.harness.servers import ServerProcess

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
                    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children,
                                                                                         max_size=6), max_leaves=30)
EVENT_KEYS = st.sampled_from(["type", "at", "cue", "level", "metric", "value", "message", "advice", "window",
                              "leg", "id", "session_id", "extra"])
EVENTISH = st.dictionaries(EVENT_KEYS, JSON | st.sampled_from(["summary", "warning_raised", "warning_cleared",
                                                               "vocal_tone", "poor", "2026-11-27T20:00:00+00:00"]),
                           max_size=10)


@given(st.binary(max_size=2000) | st.builds(lambda events: json.dumps({"events": events}).encode(),
                                             st.lists(EVENTISH, max_size=25)))
@settings(max_examples=400, deadline=None)
def test_event_parser_raises_only_event_error_and_keeps_only_contract_keys(body: bytes) -> None:
    try:
        events = parse_events(body)
    except EventError:
        return
    assert 1 <= len(events) <= 20
    for event in events:
        assert event["type"] in ("summary", "warning_raised", "warning_cleared")
        assert not {"id", "leg", "session_id", "extra"} & set(event)
        assert all(len(value) <= 500 for value in event.values() if isinstance(value, str))


@given(st.lists(st.binary(max_size=300), max_size=20))
@settings(max_examples=300, deadline=None)
def test_sse_reader_survives_any_byte_stream(chunks: list[bytes]) -> None:
    splitter, parser = LineSplitter(), SseParser()
    try:
        for chunk in chunks:
            for line in splitter.feed(chunk):
                parser.feed_line(line)
    except StreamBroken:
        pass  # a protocol error: the watcher reconnects


TOML_VALUE = (st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False, width=32)
              | st.booleans() | st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20))
TOML_KEYS = st.sampled_from(["server", "site", "hmac_key_file", "secret_file", "window_s", "udp_rate_pps", "url",
                             "api", "bucket", "max_points", "good", "fair", "av_video", "colour", "batch_size"])
TABLES = st.sampled_from(["", "check", "agent", "store", "influx", "thresholds.rtt_p95_ms", "thresholds.nope", "x"])


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


@given(st.dictionaries(TABLES, st.dictionaries(TOML_KEYS, TOML_VALUE, max_size=5), max_size=5))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_config_loader_raises_only_config_errors(tmp_path: Path, tables: dict[str, dict[str, object]]) -> None:
    lines = [f"{key} = {_toml(value)}" for key, value in tables.pop("", {}).items()]
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    (tmp_path / "config.toml").write_text("\n".join(lines) + "\n")
    from netcheck.config import load_config

    try:
        load_config({"NETCHECK_HOME": str(tmp_path)})
    except (ConfigError, UsageError) as error:
        assert "\n" not in str(error)


BODIES = st.binary(max_size=3000) | JSON.map(lambda value: json.dumps(value).encode()) | st.builds(
    lambda sdp, extra: json.dumps({"type": "offer", "sdp": sdp, **extra}).encode(),
    st.text(max_size=500) | st.just("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"),
    st.dictionaries(st.sampled_from(["video", "audio_offset_ms", "x"]), JSON, max_size=3))
PATHS = ["/v1/av/offer", "/v1/av/sessions/abc/report", "/v1/av/sessions/../../etc/report",
         "/v1/sessions/s1/events", "/v1/throughput/upload/t1"]


@pytest.mark.slow
@given(st.sampled_from(PATHS), BODIES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_server_answers_any_body_with_4xx_and_stays_up(server: ServerProcess, path: str, body: bytes) -> None:
    request = urllib.request.Request(f"{server.http_url}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": "Bearer x"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    assert status < 500 or status == 503, (path, status)  # 503: "busy" (media sessions full), never a crash
    with urllib.request.urlopen(f"{server.http_url}/v1/info", timeout=5) as info:
        assert info.status == 200
