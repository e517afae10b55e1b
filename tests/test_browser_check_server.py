"""The server side of the browser check (issue 13, docs/browser-check.md): the page's static files, and
`POST /v1/checks` / `GET /v1/checks/{id}` on a real server on loopback, with a real aiortc peer doing
what the page does (tests/harness/aiortc_page.py), real stores, real InfluxDB and VictoriaMetrics."""

from __future__ import annotations

import asyncio
import json
import math
import re
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netcheck.browser.check_body import BODY, BodyError, Number, Obj, parse_body
from netcheck.browser.check_report import CODE_ALPHABET, DEVICE_ADVICE
from netcheck.model import CheckReport, report_to_dict
from netcheck.config import InfluxSettings
from netcheck.server.app import RunningServer, start_server
from netcheck.server.checks import CHECK_EVERY_S, CHECKS_BURST, CheckSettings
from netcheck.server.rate import TokenBuckets, retry_after_s
from netcheck.server.web import CONTENT_SECURITY_POLICY, StaticPages
from netcheck.tokens import create_token
from tests.harness.delivered import assert_influx_has_exactly, assert_victoria_has_exactly, stored_points
from tests.harness.servers import REPO, subprocess_env
from tests.harness.tsdb import InfluxDB1, VictoriaMetrics

SECRET = b"s" * 32
CHECK_CODE = re.compile(f"^[{CODE_ALPHABET}]{{6}}$")
VALID_BODY: dict[str, Any] = {
    "av_session_id": None,
    "audio_offset_ms": 0,
    "devices": {"secure_context": True, "camera": "denied", "camera_width": None, "camera_height": None,
                "microphone": "ok", "microphone_level_db": -23.5, "speakers": "heard", "output_device_choice": True},
    "downstream": {"duration_s": 4.0, "video_fps": 29.8, "video_width": 1280, "video_height": 720,
                   "video_freezes": 0, "video_frozen_ms": 0.0, "video_loss_pct": 0.0, "audio_loss_pct": 0.0,
                   "audio_jitter_ms": 2.1, "jitter_buffer_ms": 45.0, "concealed_pct": 0.3,
                   "video_bitrate_kbps": 1500.0, "audio_bitrate_kbps": 32.0, "rtt_ms": 2.0, "av_skew_ms": -62.0},
    "voice": {"interval_ms": 20, "sent_ms": [0.0, 20.1, 40.0], "replies": [[0, 1.3, 5021.2, 5021.3]],
              "server_rx_count": 3},
    "throughput": {"download_test_id": "ab" * 16, "upload_test_id": "cd" * 16, "download_mbps": 45.2,
                   "upload_mbps": 20.1, "idle_rtt_ms": 1.0, "loaded_rtt_down_ms": 3.1, "loaded_rtt_up_ms": 2.7},
    "path": {"candidate_type": "host", "protocol": "udp", "relay_protocol": None},
}
"""The contract's example body, with no call named: valid, and stored when posted."""


# --- static files ------------------------------------------------------------------------------------


def test_static_files_have_their_types_the_csp_and_no_traversal(tmp_path: Path) -> None:
    web_dir = tmp_path / "web"
    web_dir.mkdir()
    for name, text in {"check.html": "<!doctype html>", "main.js": "export {}", "check.css": "body{}",
                       "notes.txt": "x", ".hidden.js": "x"}.items():
        (web_dir / name).write_text(text)
    (tmp_path / "secret.js").write_text("outside")
    (web_dir / "link.js").symlink_to(tmp_path / "secret.js")

    async def scenario() -> dict[str, tuple[int, dict[str, str]]]:
        app = web.Application()
        StaticPages(web_dir).routes(app)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        answers = {}
        try:
            async with aiohttp.ClientSession() as http:
                for path in ("/check", "/web/main.js", "/web/check.css", "/web/check.html", "/web/notes.txt",
                             "/web/.hidden.js", "/web/link.js", "/web/..%2Fsecret.js", "/web/%2e%2e%2fsecret.js",
                             "/web/../secret.js", "/web/sub%2Fmain.js", "/web/missing.js"):
                    async with http.get(url + path) as response:
                        await response.read()
                        answers[path] = (response.status, dict(response.headers))
        finally:
            await runner.cleanup()
        return answers

    answers = asyncio.run(scenario())
    expected = {"/check": "text/html", "/web/check.html": "text/html", "/web/main.js": "text/javascript",
                "/web/check.css": "text/css"}
    for path, content_type in expected.items():
        status, headers = answers[path]
        assert status == 200 and headers["Content-Type"].startswith(content_type), path
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY and headers["Cache-Control"] == "no-cache"
        assert headers["X-Content-Type-Options"] == "nosniff"
    for path in set(answers) - set(expected):
        assert answers[path][0] == 404, path


def test_serve_serves_the_packaged_page() -> None:
    async def scenario() -> tuple[int, str]:
        server = await start_server("127.0.0.1", 0, 0)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(server.url + "/check?audio_offset_ms=40") as response:
                    return response.status, response.headers["Content-Type"]
        finally:
            await server.close()

    assert asyncio.run(scenario()) == (200, "text/html; charset=utf-8")
    assert "web/*" in (REPO / "pyproject.toml").read_text()


# --- the page's plan: how long its steps last ([serve] page_*, handed out in /v1/info) ---------------

PAGE_PLAN_DEFAULT = {"call_watch_s": 7.0, "voice_s": 3.2, "speed_phase_s": 2.0}
"""The page's step lengths before they were a setting (main.js CALL_WATCH_MS, VOICE_MS; speed.js PHASE_MS)."""


def info_of_serve(home: Path, config: str) -> dict[str, Any]:
    """`netcheck serve` with `config` as its config.toml; its /v1/info."""
    from tests.harness.servers import start_serve, stop

    (home / "config.toml").write_text(config)
    running = start_serve(env=subprocess_env(NETCHECK_HOME=str(home)))
    try:
        with urllib.request.urlopen(f"{running.http_url}/v1/info", timeout=10) as response:
            return json.loads(response.read())
    finally:
        stop(running.process)


def test_info_hands_the_page_its_plan_todays_lengths_by_default_else_the_configs(tmp_path: Path) -> None:
    assert info_of_serve(tmp_path, "")["browser_check"] == PAGE_PLAN_DEFAULT
    configured = "[serve]\npage_call_watch_s = 2\npage_voice_s = 1.5\npage_speed_phase_s = 1.5\n"
    assert info_of_serve(tmp_path, configured)["browser_check"] == \
        {"call_watch_s": 2.0, "voice_s": 1.5, "speed_phase_s": 1.5}


@pytest.mark.parametrize(("line", "named"), [
    ("page_speed_phase_s = 1.0", "serve.page_speed_phase_s: must be a number in 1.5..30 s, got 1.0"),  # ≤ the ramp
    ("page_voice_s = 0.2", "serve.page_voice_s: must be a number in 1..15 s, got 0.2"),
    ("page_voice_s = 60", "serve.page_voice_s: must be a number in 1..15 s, got 60"),  # > the body's 1,000 packets
    ("page_call_watch_s = 0", "serve.page_call_watch_s: must be a number in 1..60 s, got 0"),
    ('page_call_watch_s = "6"', "serve.page_call_watch_s: must be a number in 1..60 s, got '6'"),
])
def test_a_plan_out_of_its_bounds_is_one_line_naming_the_key_exit_2(tmp_path: Path, line: str, named: str) -> None:
    (tmp_path / "config.toml").write_text(f"[serve]\n{line}\n")
    answer = subprocess.run([sys.executable, str(REPO / "cli.py"), "serve", "--http-port", "0", "--udp-port", "0"],
                            capture_output=True, text=True, timeout=60, env=subprocess_env(NETCHECK_HOME=str(tmp_path)))
    assert answer.returncode == 2 and answer.stdout == "", answer
    assert answer.stderr.strip().splitlines() == [f"netcheck: {named}"], answer.stderr


# --- the body: strict validation ---------------------------------------------------------------------


def test_the_contracts_example_body_is_valid_and_every_field_comes_back() -> None:
    body = parse_body(json.dumps(VALID_BODY).encode())
    assert body["downstream"]["video_height"] == 720 and body["voice"]["replies"] == [(0, 1.3, 5021.2, 5021.3)]
    minimal = parse_body(json.dumps({"devices": VALID_BODY["devices"]}).encode())
    assert minimal["voice"] is None and minimal["av_session_id"] is None


@pytest.mark.parametrize(("change", "field"), [
    ({"extra": 1}, "extra"),
    ({"devices": {**VALID_BODY["devices"], "name": "Jo"}}, "devices.name"),
    ({"downstream": {**VALID_BODY["downstream"], "video_fps": "30"}}, "downstream.video_fps"),
    ({"downstream": {**VALID_BODY["downstream"], "video_fps": True}}, "downstream.video_fps"),
    ({"downstream": {**VALID_BODY["downstream"], "video_height": 720.5}}, "downstream.video_height"),
    ({"downstream": {**VALID_BODY["downstream"], "video_loss_pct": 101}}, "downstream.video_loss_pct"),
    ({"voice": {**VALID_BODY["voice"], "sent_ms": [0.0] * 1001}}, "voice.sent_ms"),
    ({"voice": {**VALID_BODY["voice"], "replies": [[0, 1.0, 2.0]]}}, "voice.replies[0]"),
    ({"av_session_id": "../etc"}, "av_session_id"),
    ({"path": {"candidate_type": "tunnel", "protocol": "udp", "relay_protocol": None}}, "path.candidate_type"),
    ({"devices": None}, "devices"),
])
def test_a_bad_field_is_named(change: dict[str, Any], field: str) -> None:
    with pytest.raises(BodyError) as refused:
        parse_body(json.dumps({**VALID_BODY, **change}).encode())
    assert refused.value.field == field


@pytest.mark.parametrize("raw", [b'{"audio_offset_ms": NaN}', b'{"audio_offset_ms": 1e999}',
                                 b'{"audio_offset_ms": -Infinity}', b"[" * 100_000, b"\xff\xfe", b"", b"[]"])
def test_nan_infinity_deep_nesting_and_non_objects_are_refused(raw: bytes) -> None:
    with pytest.raises(BodyError):
        parse_body(raw)


def test_the_report_has_check_json_shape() -> None:
    """One serializer for both checks (model.report_to_dict): the browser's report is the CLI's `--json`
    of the same measurements and assessment, plus its own keys, none of them overriding the CLI's."""
    from netcheck.browser.check_report import build_check, ServerView

    body = parse_body(json.dumps(VALID_BODY).encode())
    check = build_check(body, ServerView(None, None), "c" * 32, "2026-01-01T00:00:00.000+00:00", 1.0,
                        "http://127.0.0.1:1", None)
    cli = report_to_dict(CheckReport("c" * 32, "2026-01-01T00:00:00.000+00:00", 1.0, "http://127.0.0.1:1",
                                     check.measurements, check.assessment))
    assert {key: check.report[key] for key in cli} == cli
    assert set(check.report) - set(cli) == {"client", "devices", "code", "session_id", "audio_offset_ms", "held_back_by"}
    assert CHECK_CODE.match(check.report["code"])
    camera = next(f for f in check.report["devices"] if f["device"] == "camera")
    assert camera["key"] == "camera.denied" and camera["advice"] == DEVICE_ADVICE[("camera", "denied")]
    assert DEVICE_ADVICE[("camera", "denied")] in check.report["advice"]
    assert check.report["measurements"]["av"]["status"] == "error"  # no call named: the server saw none
    assert check.report["measurements"]["udp"]["status"] == "timeout"  # nor any voice stream


CLEAN_CALL = {
    "received": {"video_fps": 29.9, "video_width": 640, "video_height": 360, "video_freezes": 0, "video_frozen_ms": 0.0,
                 "video_loss_pct": 0.0, "audio_loss_pct": 0.0, "audio_jitter_ms": 0.6, "av_skew_ms": 4.0},
    "sent": {"video_bitrate_kbps": 900.0, "audio_bitrate_kbps": 32.0, "rtt_ms": 1.0},
    "server_cpu_max_pct": 20.0,
}
"""The media peer's view of a clean call (server/media.py's shape)."""


def clean_check(camera: str, microphone: str = "ok") -> dict[str, Any]:
    """A clean loopback check with these device findings: every figure would carry video."""
    from netcheck.browser.check_report import build_check, ServerView

    sent_ms = [20.0 * seq for seq in range(150)]
    body = parse_body(json.dumps({
        **VALID_BODY,
        "devices": {**VALID_BODY["devices"], "camera": camera, "microphone": microphone},
        "voice": {"interval_ms": 20, "sent_ms": sent_ms, "server_rx_count": 150,
                  "replies": [[seq, at + 1.0, 5000.0 + at, 5000.0 + at] for seq, at in enumerate(sent_ms)]},
    }).encode())
    view = ServerView(CLEAN_CALL, {seq: (at + 0.5, at + 0.5) for seq, at in enumerate(sent_ms)})
    return build_check(body, view, "c" * 32, "2026-01-01T00:00:00.000+00:00", 16.0, "http://127.0.0.1:1", None).report


@pytest.mark.parametrize("camera", ["denied", "busy", "missing", "black", "frozen", "error", "not_asked"])
def test_without_a_picture_from_the_camera_a_clean_connection_says_audio_only(camera: str) -> None:
    """The therapist would not see the face: the page must not say "will see your face clearly"."""
    assert clean_check("ok")["recommendation"] == "video"  # the same figures with a working camera
    report = clean_check(camera)
    assert (report["recommendation"], report["held_back_by"]) == ("audio_only", "camera"), report["summary"]
    assert "camera" in report["summary"] and "connection itself would carry video" in report["summary"]
    assert any(finding["device"] == "camera" for finding in report["devices"])


@pytest.mark.parametrize("microphone", ["denied", "busy", "missing", "silent", "error", "not_asked"])
def test_without_sound_from_the_microphone_a_clean_connection_says_phone(microphone: str) -> None:
    """The therapist would not hear the client: "hear you well" would be false; a phone has a microphone."""
    for camera in ("ok", "missing"):
        report = clean_check(camera, microphone)
        assert (report["recommendation"], report["held_back_by"]) == ("phone", "microphone"), report["summary"]
        assert "microphone" in report["summary"]
    clipping = clean_check("ok", "clipping")  # heard, distorted: advice, not a lower recommendation
    assert (clipping["recommendation"], clipping["held_back_by"]) == ("video", None)


def test_the_check_rate_lets_a_person_rerun_but_not_a_script() -> None:
    rate = TokenBuckets(1.0 / CHECK_EVERY_S, CHECKS_BURST)  # as the checks endpoint holds it
    assert [rate.take("a", 0.0) for _ in range(5)] == [0] * 5
    assert rate.take("a", 0.0) > 0 and rate.take("b", 0.0) == 0
    assert retry_after_s(rate.take("a", 10.0)) == 11  # half a token back: 10 s to go, said as 11
    assert rate.take("a", 20.0) == 0


# --- hostile bodies against a real server: 4xx, nothing stored ---------------------------------------


class ServerThread:
    """A real server in its own thread and event loop, so that Hypothesis can drive it synchronously."""

    def __init__(self, store_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.store_path = store_path
        self.server: RunningServer | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            start_server("127.0.0.1", 0, 0, checks=CheckSettings(store_path)), self.loop).result(30)

    def post(self, data: bytes) -> int:
        assert self.server is not None
        request = urllib.request.Request(self.server.url + "/v1/checks", data=data,
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            error.read()
            return error.code
        except (ConnectionError, urllib.error.URLError):
            return 413  # the server stopped reading a body far over the limit and closed the connection

    def close(self) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def hostile_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    running = ServerThread(tmp_path_factory.mktemp("hostile") / "store.sqlite3")
    yield running
    running.close()


def leaf_paths(spec: Obj, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    paths = []
    for name, field in spec.fields.items():
        if isinstance(field, Obj):
            paths += leaf_paths(field, prefix + (name,))
        else:
            paths.append((prefix + (name,), field))
    return paths


LEAVES = leaf_paths(BODY)
OBJECTS = [(), ("devices",), ("downstream",), ("voice",), ("throughput",), ("path",)]
KNOWN_NAMES = {name for path, _ in LEAVES for name in path}


def replaced(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    target = copy
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    return copy


def hostile_value(field: Any) -> st.SearchStrategy[Any]:
    """Values that no field of this kind takes: objects, snowman strings, NaN/inf, out of range, wrong types."""
    always = st.one_of(st.dictionaries(st.text(max_size=3), st.integers(), min_size=0, max_size=2),
                       st.text(max_size=20).map(lambda text: text + "\u2603"),
                       st.sampled_from([math.nan, math.inf, -math.inf]))
    if isinstance(field, Number):
        return st.one_of(always, st.just(True), st.floats(min_value=field.high * 2 + 1, allow_infinity=False),
                         st.floats(max_value=-abs(field.low) * 2 - 1, allow_infinity=False))
    return st.one_of(always, st.just(1) if type(field).__name__ == "Flag" else st.just(True))


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["leaf", "unknown", "huge_array", "not_object", "garbage"]))
    if kind == "leaf":
        path, field = draw(st.sampled_from(LEAVES))
        body = replaced(VALID_BODY, path, draw(hostile_value(field)))
    elif kind == "unknown":
        where = draw(st.sampled_from(OBJECTS))
        name = draw(st.text(min_size=1, max_size=12).filter(lambda text: text not in KNOWN_NAMES))
        body = replaced(VALID_BODY, where + (name,), draw(st.integers())) if where else {**VALID_BODY, name: 1}
    elif kind == "huge_array":
        size = draw(st.integers(min_value=1001, max_value=20_000))
        array = draw(st.sampled_from(["sent_ms", "replies"]))
        item: Any = 1.0 if array == "sent_ms" else [0, 1.0, 2.0, 3.0]
        body = replaced(VALID_BODY, ("voice", array), [item] * (size if array == "sent_ms" else size + 3000))
    elif kind == "not_object":
        return json.dumps(draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text()))).encode()
    else:
        return draw(st.binary(max_size=200).filter(lambda data: not data.strip().startswith(b"{")))
    return json.dumps(body, allow_nan=True).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=hostile_bodies())
def test_hostile_bodies_get_4xx_and_nothing_is_stored(hostile_target: ServerThread, data: bytes) -> None:
    status = hostile_target.post(data)
    assert 400 <= status < 500, (status, data[:200])
    assert stored_count(hostile_target.store_path) == (0, 0)


def test_ten_megabytes_get_413_and_nothing_is_stored(hostile_target: ServerThread) -> None:
    body = json.dumps({**VALID_BODY, "voice": {**VALID_BODY["voice"], "sent_ms": [1.0] * 2_000_000}}).encode()
    assert len(body) > 10_000_000
    assert hostile_target.post(body) == 413
    assert stored_count(hostile_target.store_path) == (0, 0)


def test_after_the_hostile_ones_a_valid_body_is_stored(hostile_target: ServerThread) -> None:
    assert hostile_target.post(json.dumps(VALID_BODY).encode()) == 201
    checks, points = stored_count(hostile_target.store_path)
    assert checks == 1 and points > 0


def stored_count(store_path: Path) -> tuple[int, int]:
    db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=10.0)
    try:
        return (db.execute("SELECT COUNT(*) FROM checks").fetchone()[0],
                db.execute("SELECT COUNT(*) FROM points").fetchone()[0])
    finally:
        db.close()


def test_without_a_store_the_server_says_so() -> None:
    async def scenario() -> tuple[int, int]:
        server = await start_server("127.0.0.1", 0, 0)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(server.url + "/v1/checks", json=VALID_BODY) as posted:
                    async with http.get(server.url + "/v1/checks/" + "a" * 32) as fetched:
                        return posted.status, fetched.status
        finally:
            await server.close()

    assert asyncio.run(scenario()) == (503, 503)


# --- a whole check, end to end -----------------------------------------------------------------------


async def post_check(url: str, body: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(url + "/v1/checks", json=body) as response:
            return response.status, await response.json()


async def browser_check(store_path: Path, influx: InfluxSettings | None = None,
                        wait_delivered_s: float = 0.0) -> dict[str, Any]:
    """A real server; the FAKE browser's whole check with a client token; the post, a refused post of
    another client, the GET, and (with InfluxDB) the time to deliver."""
    from tests.harness.aiortc_page import run_page_check

    server = await start_server("127.0.0.1", 0, 0, secret=SECRET,
                                checks=CheckSettings(store_path, site="north", influx=influx))
    client = create_token(SECRET, "sess-1", "client", 600)
    stranger = create_token(SECRET, "sess-2", "client", 600)
    try:
        started_s = time.monotonic()
        body = await run_page_check(server.url, client)
        page_s = time.monotonic() - started_s
        refused = await post_check(server.url, body, stranger)
        status, report = await post_check(server.url, body, client)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {client}"}) as http:
            async with http.get(f"{server.url}/v1/checks/{report.get('check_id')}") as response:
                again = (response.status, await response.json())
        deadline_s = time.monotonic() + wait_delivered_s
        while time.monotonic() < deadline_s and server.checks is not None and server.checks.store is not None \
                and server.checks.store.outbox_stats().outbox_pending:
            await asyncio.sleep(0.2)
        return {"body": body, "page_s": page_s, "refused": refused, "status": status, "report": report, "again": again}
    finally:
        await server.close()


@pytest.mark.slow
def test_a_browser_check_on_loopback_says_video_and_is_stored_like_a_cli_check(tmp_path: Path) -> None:
    store_path = tmp_path / "netcheck.sqlite3"  # the name under NETCHECK_HOME: `session report` reads it below
    run = asyncio.run(browser_check(store_path))
    assert run["refused"][0] == 400 and run["refused"][1]["field"] == "av_session_id"  # not their call
    assert run["status"] == 201, run["report"]
    report = run["report"]
    assert report["recommendation"] == "video", (report["summary"], report["advice"])
    assert report["client"] == "browser" and CHECK_CODE.match(report["code"]) and report["session_id"] == "sess-1"
    assert all(cue["level"] != "unknown" for cue in report["cues"].values())
    udp, av, throughput = (report["measurements"][name] for name in ("udp", "av", "throughput"))
    assert udp["status"] == "ok" and udp["packets_sent"] == 150 and udp["loss_up_pct"] == 0.0
    assert udp["packets_received"] >= 148 and udp["rtt_p95_ms"] < 20
    assert av["status"] == "ok" and av["upstream"]["resolution_adapts"] is True and av["ice_path"] == "host"
    assert av["upstream"]["video_fps"] > 20 and av["upstream"]["video_height"] == 360  # the server's own view
    assert throughput["status"] == "ok" and throughput["bytes_down"] and throughput["bytes_up"]
    assert run["again"] == (200, report)
    points = stored_points(store_path)
    assert {point.measurement for point in points} == {"netcheck_udp", "netcheck_av", "netcheck_throughput",
                                                       "netcheck_assessment"}
    assert all(point.tags["client"] == "browser" and point.tags["kind"] == "check" and point.tags["site"] == "north"
               and point.tags["role"] == "client" and point.fields["session_id"] == "sess-1" for point in points)
    # the check link carried sess-1's client token: the session's report lists the check, with its code
    session = subprocess.run([sys.executable, "-m", "netcheck", "session", "report", "sess-1", "--json"],
                             env=subprocess_env(NETCHECK_HOME=str(tmp_path)), capture_output=True, text=True, timeout=60)
    assert session.returncode == 0, session.stderr
    [listed] = json.loads(session.stdout)["checks"]
    assert (listed["check_id"], listed["client"], listed["code"], listed["recommendation"]) == (
        report["check_id"], "browser", report["code"], "video")
    print(f"\nbrowser check (FAKE aiortc page): {run['page_s']:.1f} s measuring; udp rtt p95 {udp['rtt_p95_ms']:.2f} ms, "
          f"upstream {av['upstream']['video_fps']} fps, download {throughput['download_mbps']} Mbit/s, "
          f"upload {throughput['upload_mbps']} Mbit/s, code {report['code']}")


def v1_settings(influx: InfluxDB1) -> InfluxSettings:
    return InfluxSettings(url=influx.url, api="v1", database=influx.database, username=influx.username,  # type: ignore[call-arg]
                          password=influx.password, timeout_s=5.0)


CHECKS_BOARD = REPO / "dashboards" / "checks.json"


def checks_table_query(client: str) -> str:
    """The Pre-session checks dashboard's table query, as Grafana expands it (all sites, roles, agents)."""
    board = json.loads(CHECKS_BOARD.read_text())
    query = next(panel for panel in board["panels"] if panel["type"] == "table")["targets"][0]["query"]
    values = {"timeFilter": "time > now() - 1d", "site": ".*", "role": ".*", "agent": ".*", "client": client}
    for name, value in values.items():
        query = query.replace(f"${name}", value)
    return query


@pytest.mark.slow
def test_a_browser_check_reaches_influxdb_and_the_checks_dashboard(tmp_path: Path, influx: InfluxDB1) -> None:
    store_path = tmp_path / "server.sqlite3"
    run = asyncio.run(browser_check(store_path, v1_settings(influx), wait_delivered_s=10.0))
    assert run["status"] == 201, run["report"]
    points = stored_points(store_path)
    assert_influx_has_exactly(influx, points)
    clients = influx.query('SHOW TAG VALUES FROM "netcheck_assessment" WITH KEY = "client"')
    assert [row[-1] for row in clients[0]["values"]] == ["browser"]
    rows = influx.query(checks_table_query("browser"))
    assert rows and rows[0]["tags"]["client"] == "browser"
    assert run["report"]["check_id"] in [dict(zip(rows[0]["columns"], values))["check_id"] for values in rows[0]["values"]]
    assert not influx.query(checks_table_query("cli"))


@pytest.mark.slow
def test_a_browser_check_reaches_victoria_metrics(tmp_path: Path, vm: VictoriaMetrics) -> None:
    store_path = tmp_path / "server.sqlite3"
    settings_v2 = InfluxSettings(url=vm.url, api="v2", org="clinic", bucket="netcheck", token="t0ken",  # type: ignore[call-arg]
                                 timeout_s=5.0)
    run = asyncio.run(browser_check(store_path, settings_v2, wait_delivered_s=10.0))
    assert run["status"] == 201, run["report"]
    assert_victoria_has_exactly(vm, stored_points(store_path))
    assert any(sample[1] and ("client", "browser") in sample[1] for sample in vm.samples())
