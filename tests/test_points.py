"""The metric schema (points.py) and its line protocol (store/influx.py)."""

from __future__ import annotations

import math

import pytest

from netcheck.model import Cue, Level, Recommendation, Status
from netcheck.store.points import (
    ASSESSMENT_MEASUREMENT, Origin, Point, assessment_point, flatten_result, report_points, result_point,
)
from netcheck.probes.av import AvDirection, AvResult, result_from_fields
from netcheck.probes.udp import UdpResult, failed_result
from netcheck.model import Measurement, result_fields
from netcheck.quality import assess
from netcheck.store.influx import to_line

ORIGIN = Origin(agent="a1b2c3", kind="session", role="client", site="north", server="clinic:8470",
                session_id="sess 42")


def udp_result(rtt_ms: float = 20.0, loss_pct: float = 0.0) -> UdpResult:
    return UdpResult(status=Status.OK, packets_sent=40, packets_received=40, rtt_min_ms=rtt_ms,
                     rtt_mean_ms=rtt_ms, rtt_p50_ms=rtt_ms, rtt_p95_ms=rtt_ms, rtt_max_ms=rtt_ms, jitter_ms=1,
                     jitter_rfc3550_ms=1.0, jitter_up_ms=0.5, jitter_down_ms=0.5, loss_pct=loss_pct, loss_up_pct=0.0, loss_down_pct=0.0,
                     loss_burst_max=0, duplicates=0, reordered=0)


def test_fields_take_their_type_from_the_annotation_not_the_value() -> None:
    fields = flatten_result(udp_result())
    assert fields["jitter_ms"] == 1.0 and isinstance(fields["jitter_ms"], float)  # given as int 1
    assert isinstance(fields["packets_sent"], int)
    assert fields["status"] == "ok"


def test_missing_values_are_left_out_never_zero() -> None:
    fields = flatten_result(failed_result(Status.TIMEOUT, packets_sent=40))
    assert "rtt_p95_ms" not in fields and "loss_up_pct" not in fields
    assert fields["loss_pct"] == 100.0


def test_status_is_a_tag_and_ids_are_fields() -> None:
    point = result_point("udp", udp_result(), ORIGIN, 1_700_000_000_000)
    assert point.measurement == "netcheck_udp"
    assert point.tags == {"agent": "a1b2c3", "kind": "session", "role": "client", "site": "north",
                          "server": "clinic:8470", "status": "ok"}
    assert point.fields["session_id"] == "sess 42"
    assert "session_id" not in point.tags


def test_av_directions_are_flattened_with_short_prefixes() -> None:
    direction = AvDirection(video_fps=30, video_width=320, video_height=240, video_freezes=0, video_frozen_ms=0.0,
                            video_loss_pct=0.0, video_bitrate_kbps=300.0, audio_loss_pct=0.0, audio_jitter_ms=2.0,
                            audio_bitrate_kbps=30.0, rtt_ms=1.0, av_skew_ms=5.0)
    result = AvResult(Status.OK, 120.0, 5.0, direction, direction, "host", False, 2.0, None)
    fields = flatten_result(result)
    assert fields["up_video_fps"] == 30.0 and isinstance(fields["up_video_fps"], float)
    assert fields["down_video_height"] == 240 and isinstance(fields["down_video_height"], int)
    assert fields["udp_blocked"] is False
    assert result_from_fields(result_fields(result)) == result


def test_assessment_point_has_levels_as_text_and_codes() -> None:
    assessment = assess({"udp": udp_result(rtt_ms=400.0)})
    point = assessment_point(assessment, ORIGIN, 1)
    assert point.measurement == ASSESSMENT_MEASUREMENT
    assert assessment.recommendation == Recommendation.PHONE
    assert point.fields["recommendation"] == "phone" and point.fields["recommendation_code"] == 2
    assert point.fields["conversational_timing_level"] == "poor"
    assert point.fields["conversational_timing_level_code"] == 2
    assert point.fields["conversational_timing_poor"] == 1
    assert point.fields["vocal_tone_poor"] == 0
    assert assessment.cues[Cue.FACIAL_EXPRESSION].level == Level.UNKNOWN
    assert point.fields["facial_expression_level"] == "unknown"
    assert "facial_expression_level_code" not in point.fields  # unknown has no code


def test_report_points_share_one_timestamp() -> None:
    measurements = {"udp": Measurement("udp", "2026-01-01T00:00:00+00:00", 4.0, udp_result())}
    points = report_points(measurements, assess({"udp": udp_result()}), ORIGIN, 1234)
    assert [p.measurement for p in points] == ["netcheck_udp", "netcheck_assessment"]
    assert {p.time_ms for p in points} == {1234}


def test_line_protocol_escapes_and_types() -> None:
    point = Point("netcheck_udp", {"site": "north, east=1", "role": "client"},
                  {"rtt_ms": 12.5, "sent": 40, "ok": True, "note": 'say "hi"\\ there\nnow', "bad": math.nan},
                  1_700_000_000_123)
    line = to_line(point)
    assert line == ('netcheck_udp,role=client,site=north\\,\\ east\\=1 '
                    'note="say \\"hi\\"\\\\ there now",ok=true,rtt_ms=12.5,sent=40i 1700000000123')


def test_a_point_without_writable_fields_has_no_line() -> None:
    assert to_line(Point("m", {}, {"x": math.inf}, 1)) is None


@pytest.mark.parametrize("value, encoded", [(0.0, "0.0"), (1e-7, "1e-07"), (30.0, "30.0"), (-5, "-5i")])
def test_numbers_keep_their_type_in_line_protocol(value: float, encoded: str) -> None:
    assert to_line(Point("m", {}, {"x": value}, 1)) == f"m x={encoded} 1"
