"""`session report`: the warning timeline and minutes per cue level, from session events."""

from __future__ import annotations

from netcheck.session.report import build_report, report_to_dict


def summary(leg: str, at: str, vocal: str, timing: str = "good") -> dict:
    return {"type": "summary", "session_id": "s", "leg": leg, "at": at,
            "window": {"window_s": 30.0, "cues": {"vocal_tone": {"level": vocal},
                                                  "conversational_timing": {"level": timing}}}}


def warning(kind: str, leg: str, at: str, cue: str = "vocal_tone") -> dict:
    return {"type": kind, "session_id": "s", "leg": leg, "at": at, "cue": cue, "level": "poor",
            "message": f"{leg} {cue} {kind}", "advice": "check in verbally"}


def test_timeline_pairs_raises_with_clears_and_keeps_open_ones() -> None:
    events = [
        summary("client", "2026-11-27T14:00:00+00:00", "good"),
        summary("client", "2026-11-27T14:00:30+00:00", "poor"),
        warning("warning_raised", "client", "2026-11-27T14:01:00+00:00"),
        summary("therapist", "2026-11-27T14:01:00+00:00", "good", timing="poor"),
        warning("warning_raised", "therapist", "2026-11-27T14:01:30+00:00", "conversational_timing"),
        summary("client", "2026-11-27T14:01:00+00:00", "fair"),
        warning("warning_cleared", "client", "2026-11-27T14:02:30+00:00"),
    ]
    report = build_report("s", reversed(events))  # order of arrival does not matter
    assert [(w.leg, w.cue, w.duration_s, w.cleared_at) for w in report.warnings] == [
        ("client", "vocal_tone", 90.0, "2026-11-27T14:02:30+00:00"),
        ("therapist", "conversational_timing", None, None),
    ]
    assert report.windows == {"client": 3, "therapist": 1}
    assert report.minutes_by_level["client"]["vocal_tone"] == {"good": 0.5, "fair": 0.5, "poor": 0.5, "unknown": 0.0}
    assert report.minutes_by_level["therapist"]["conversational_timing"]["poor"] == 0.5
    assert report_to_dict(report)["first_at"] == "2026-11-27T14:00:00+00:00"


def test_an_empty_session_has_an_empty_report() -> None:
    report = build_report("none", [])
    assert report.warnings == [] and report.windows == {} and report.first_at is None


def browser_check(check_id: str, started_at: str, session_id: str, camera: str = "ok") -> dict:
    """A stored browser check report (browser_report.build_check's shape), only the fields the report reads."""
    devices = [] if camera == "ok" else [{"device": "camera", "finding": camera, "key": f"camera.{camera}"}]
    return {"check_id": check_id, "started_at": started_at, "client": "browser", "session_id": session_id,
            "recommendation": "video" if camera == "ok" else "audio_only", "summary": f"summary of {check_id}",
            "code": "ACD234", "devices": devices}


def test_the_sessions_checks_come_first_oldest_first_and_others_are_left_out() -> None:
    checks = [browser_check("b", "2026-11-27T13:55:00+00:00", "s"),
              browser_check("a", "2026-11-27T13:50:00+00:00", "s", camera="denied"),
              browser_check("x", "2026-11-27T13:52:00+00:00", "another session")]
    report = build_report("s", [summary("client", "2026-11-27T14:00:00+00:00", "good")], checks)
    assert [(c.check_id, c.recommendation, c.device_findings) for c in report.checks] == [
        ("a", "audio_only", ("camera.denied",)), ("b", "video", ())]
    assert report_to_dict(report)["checks"][0]["code"] == "ACD234"


def test_the_calls_windows_and_warnings_are_counted_apart_from_the_probes() -> None:
    """Issue 25: per leg, the minutes measured on the call; a call window and a probe window of the same
    minute are not added (both run at once), and a call's warning is a span of its own."""
    on_call = [{**event, "source": "call"} for event in (
        summary("client", "2026-11-27T14:00:00+00:00", "poor"),
        summary("client", "2026-11-27T14:00:30+00:00", "poor"),
        warning("warning_raised", "client", "2026-11-27T14:00:30+00:00"),
        warning("warning_cleared", "client", "2026-11-27T14:02:00+00:00"))]
    probe = [summary("client", "2026-11-27T14:00:00+00:00", "good"),
             warning("warning_raised", "client", "2026-11-27T14:01:00+00:00")]
    report = build_report("s", on_call + probe)
    assert report.minutes_on_call == {"client": 1.0}
    assert report.minutes_by_level["client"]["vocal_tone"] == {"good": 0.5, "fair": 0.0, "poor": 0.0, "unknown": 0.0}
    assert report.minutes_by_level_on_call["client"]["vocal_tone"]["poor"] == 1.0
    assert [(w.source, w.duration_s) for w in report.warnings] == [("call", 90.0), ("probe", None)]
    assert report_to_dict(report)["minutes_on_call"] == {"client": 1.0}
