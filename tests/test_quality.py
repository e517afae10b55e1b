"""The quality model: levels, recommendation, advice, unknown cues, per-clinic overrides."""

from __future__ import annotations

import dataclasses

import pytest

from netcheck.errors import ConfigError
from netcheck.model import Cue, Level, Recommendation, Status
from netcheck.probes.system import SystemResult
from netcheck.probes.udp import UdpResult, failed_result
from netcheck.quality import METRICS, apply_overrides, assess
from netcheck.quality.assess import RESOLUTION_SETTLED_S, SEVERITY

CLEAN_UDP = UdpResult(
    status=Status.OK, packets_sent=150, packets_received=150, rtt_min_ms=0.2, rtt_mean_ms=0.3, rtt_p50_ms=0.3,
    rtt_p95_ms=0.4, rtt_max_ms=0.5, jitter_ms=0.05, jitter_rfc3550_ms=0.04, jitter_up_ms=0.03, jitter_down_ms=0.03, loss_pct=0.0, loss_up_pct=0.0,
    loss_down_pct=0.0, loss_burst_max=0, duplicates=0, reordered=0,
)
QUIET_SYSTEM = SystemResult(
    status=Status.OK, cpu_pct=10.0, memory_pct=40.0, battery_pct=None, battery_plugged=None, interface="eth0",
    interface_kind="ethernet", nic_errors=0, nic_drops=0, rx_mbps=0.1, tx_mbps=0.1, window_s=3.0,
)


def udp(**changes: float) -> UdpResult:
    return dataclasses.replace(CLEAN_UDP, **changes)


def test_clean_path_recommends_video_and_leaves_unmeasured_cues_unknown() -> None:
    result = assess({"udp": CLEAN_UDP, "system": QUIET_SYSTEM})
    assert result.recommendation == Recommendation.VIDEO
    assert result.level == Level.GOOD
    assert result.cues[Cue.VOCAL_TONE].level == Level.GOOD
    assert result.cues[Cue.CONVERSATIONAL_TIMING].level == Level.GOOD
    for cue in (Cue.FACIAL_EXPRESSION, Cue.LIP_SYNC):
        assert result.cues[cue].level == Level.UNKNOWN
        assert "not measured" in result.cues[cue].note
    assert "not measured" in result.summary.lower() or "not part of this verdict" in result.summary
    assert result.advice == ()


def test_long_delay_makes_timing_poor_and_recommends_the_phone() -> None:
    result = assess({"udp": udp(rtt_mean_ms=300.0, rtt_p50_ms=300.0, rtt_p95_ms=305.0)})
    assert result.cues[Cue.CONVERSATIONAL_TIMING].level == Level.POOR
    assert result.cues[Cue.VOCAL_TONE].level == Level.GOOD  # MOS still ≥ 4: the voice is fine, the timing is not
    assert result.recommendation == Recommendation.PHONE
    assert any(line.startswith("Delay 305 ms") for line in result.advice)


def test_six_percent_loss_makes_vocal_tone_poor() -> None:
    result = assess({"udp": udp(loss_pct=6.0, loss_up_pct=3.0, loss_down_pct=3.1)})
    assert result.cues[Cue.VOCAL_TONE].level == Level.POOR
    assert result.cues[Cue.VOCAL_TONE].deciding.metric == "loss_one_way_pct"
    assert result.cues[Cue.VOCAL_TONE].deciding.value == 3.1  # one way, the worse direction
    assert result.recommendation == Recommendation.PHONE
    assert any(line.startswith("The clinic's voice to you loses 3.1 %") for line in result.advice)


@pytest.mark.parametrize(
    ("changes", "level"),
    [({"jitter_up_ms": 20.0}, Level.GOOD), ({"jitter_down_ms": 20.1}, Level.FAIR),
     ({"jitter_up_ms": 40.1}, Level.POOR), ({"loss_up_pct": 0.99}, Level.GOOD), ({"loss_down_pct": 1.0}, Level.FAIR),
     ({"loss_up_pct": 3.0}, Level.FAIR), ({"loss_down_pct": 3.01}, Level.POOR)],
)
def test_threshold_edges_of_vocal_tone(changes: dict, level: Level) -> None:
    assert assess({"udp": udp(**changes)}).cues[Cue.VOCAL_TONE].level == level


def test_fair_cue_keeps_video_but_says_so() -> None:
    result = assess({"udp": udp(rtt_p95_ms=180.0)})
    assert result.recommendation == Recommendation.VIDEO
    assert result.level == Level.FAIR
    assert "fair" in result.summary


def test_nothing_measured_gives_unknown_not_good() -> None:
    result = assess({"udp": failed_result(Status.TIMEOUT, packets_sent=150)})
    assert result.recommendation == Recommendation.UNKNOWN
    assert result.level == Level.UNKNOWN
    assert all(verdict.level == Level.UNKNOWN for verdict in result.cues.values())
    assert "udp timeout" in result.summary
    assert any("firewall may block UDP" in line for line in result.advice)


def test_system_problems_become_advice() -> None:
    busy = dataclasses.replace(QUIET_SYSTEM, cpu_pct=97.0, battery_pct=8.0, battery_plugged=False, tx_mbps=12.0,
                               interface_kind="wifi")
    advice = assess({"udp": udp(jitter_up_ms=30.0), "system": busy}).advice
    assert any("CPU 97 %" in line for line in advice)
    assert any("Battery at 8 %" in line for line in advice)
    assert any("12.0 Mbps up" in line for line in advice)
    assert any("Wi-Fi" in line for line in advice)


def test_clinic_overrides_change_the_verdict() -> None:
    strict = apply_overrides(METRICS, {"rtt_p95_ms": {"good": 50, "fair": 80}})
    assert assess({"udp": udp(rtt_p95_ms=90.0)}, strict).cues[Cue.CONVERSATIONAL_TIMING].level == Level.POOR
    assert assess({"udp": udp(rtt_p95_ms=90.0)}).cues[Cue.CONVERSATIONAL_TIMING].level == Level.GOOD


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"rtt_p95": {"good": 1}}, "thresholds.rtt_p95: unknown metric"),
     ({"rtt_p95_ms": {"god": 1}}, "thresholds.rtt_p95_ms.god: unknown key"),
     ({"rtt_p95_ms": {"good": "fast"}}, "thresholds.rtt_p95_ms.good: must be a number"),
     ({"rtt_p95_ms": {"good": 300}}, "thresholds.rtt_p95_ms: good (300) must be ≤ fair (240)"),
     ({"av_skew_ms": {"good": [50, -50]}}, "thresholds.av_skew_ms.good: must be [low, high]")],
)
def test_bad_overrides_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        apply_overrides(METRICS, overrides)


from netcheck.probes.av import AvDirection, AvResult  # noqa: E402
from netcheck.probes.av import failed_result as av_failed_result  # noqa: E402

CLEAN_DIRECTION = AvDirection(
    video_fps=30.0, video_width=1280, video_height=720, video_freezes=0, video_frozen_ms=0.0, video_loss_pct=0.0,
    video_bitrate_kbps=900.0, audio_loss_pct=0.0, audio_jitter_ms=1.0, audio_bitrate_kbps=30.0, rtt_ms=2.0,
    av_skew_ms=5.0,
)
CLEAN_AV = AvResult(status=Status.OK, time_to_first_frame_ms=300.0, av_skew_ms=5.0, upstream=CLEAN_DIRECTION,
                    downstream=CLEAN_DIRECTION, ice_path="host", udp_blocked=False, duration_s=4.0, error=None)


def av(**direction_changes) -> AvResult:
    downstream = dataclasses.replace(CLEAN_DIRECTION, **direction_changes)
    return dataclasses.replace(CLEAN_AV, downstream=downstream)


def test_clean_call_measures_all_four_cues() -> None:
    result = assess({"udp": CLEAN_UDP, "av": CLEAN_AV, "system": QUIET_SYSTEM})
    assert result.recommendation == Recommendation.VIDEO
    assert all(verdict.level == Level.GOOD for verdict in result.cues.values()
               if verdict.cue != Cue.FACIAL_EXPRESSION)
    assert result.cues[Cue.FACIAL_EXPRESSION].level == Level.GOOD  # bandwidth unmeasured, the rest good
    assert "bandwidth_mbps" in result.cues[Cue.FACIAL_EXPRESSION].note


def test_low_fps_from_loss_recommends_audio_only_and_names_the_cause() -> None:
    result = assess({"udp": CLEAN_UDP, "av": av(video_fps=9.0, video_loss_pct=8.0), "system": QUIET_SYSTEM})
    assert result.cues[Cue.FACIAL_EXPRESSION].level == Level.POOR
    assert result.recommendation == Recommendation.AUDIO_ONLY
    assert any(line.startswith("Video from the clinic to you runs at 9 fps because 8.0 % of the video packets")
               for line in result.advice), result.advice


@pytest.mark.parametrize("video_loss_pct, level", [(0.5, Level.GOOD), (1.0, Level.FAIR), (5.0, Level.FAIR),
                                                   (7.5, Level.POOR)])
def test_video_loss_judges_the_face_even_before_the_picture_freezes(video_loss_pct: float, level: Level) -> None:
    """A few seconds of probe may show no freeze yet at 7.5 % loss (seen through TURN in CI); the loss is measured."""
    result = assess({"udp": CLEAN_UDP, "av": av(video_loss_pct=video_loss_pct), "system": QUIET_SYSTEM})
    face = result.cues[Cue.FACIAL_EXPRESSION]
    assert face.level == level
    if level == Level.POOR:
        assert face.deciding.metric == "video_loss_pct" and face.deciding.source == "av.downstream.video_loss_pct"
        assert result.recommendation == Recommendation.AUDIO_ONLY
        assert any(line.startswith("Video from the clinic to you loses 7.5 % of its packets") for line in result.advice)


def test_low_fps_from_a_busy_computer_or_short_bandwidth() -> None:
    busy = dataclasses.replace(QUIET_SYSTEM, cpu_pct=95.0)
    slow_up = dataclasses.replace(CLEAN_AV, upstream=dataclasses.replace(CLEAN_DIRECTION, video_fps=12.0))
    advice = assess({"udp": CLEAN_UDP, "av": slow_up, "system": busy}).advice
    assert any("from you to the clinic runs at 12 fps because your computer is busy (CPU 95 %)" in line
               for line in advice), advice
    starved = av(video_fps=12.0, video_bitrate_kbps=150.0)
    advice = assess({"udp": CLEAN_UDP, "av": starved}).advice
    assert any("because the bandwidth is short (video got 150 kbps)" in line for line in advice), advice


def test_lip_sync_and_freezes() -> None:
    result = assess({"udp": CLEAN_UDP, "av": dataclasses.replace(CLEAN_AV, av_skew_ms=-200.0)})
    assert result.cues[Cue.LIP_SYNC].level == Level.POOR
    assert result.recommendation == Recommendation.AUDIO_ONLY
    frozen = assess({"udp": CLEAN_UDP, "av": av(video_freezes=2, video_frozen_ms=2500.0)})
    assert frozen.cues[Cue.FACIAL_EXPRESSION].deciding.metric == "frozen_pct"  # 2.5 s of the probe's 4 s
    assert frozen.cues[Cue.FACIAL_EXPRESSION].level == Level.POOR


def test_a_video_call_that_cannot_be_set_up_means_audio_only() -> None:
    result = assess({"udp": CLEAN_UDP, "av": av_failed_result(Status.BLOCKED, "ICE failed")})
    assert result.recommendation == Recommendation.AUDIO_ONLY
    assert "could not be set up (blocked)" in result.summary
    assert any("firewall may block video calls" in line for line in result.advice)


def test_udp_blocked_but_turn_over_tcp_works_is_said() -> None:
    over_tcp = dataclasses.replace(CLEAN_AV, ice_path="relay-tcp", udp_blocked=True)
    assert any("blocks UDP" in line for line in assess({"udp": CLEAN_UDP, "av": over_tcp}).advice)


def test_voice_and_timing_come_from_the_call_when_udp_gets_nothing_through() -> None:
    over_tcp = dataclasses.replace(CLEAN_AV, ice_path="relay-tcp", udp_blocked=True,
                                   upstream=dataclasses.replace(CLEAN_DIRECTION, audio_loss_pct=4.0, rtt_ms=80.0))
    result = assess({"udp": failed_result(Status.TIMEOUT, packets_sent=150), "av": over_tcp})
    vocal = result.cues[Cue.VOCAL_TONE]
    assert vocal.level == Level.POOR and vocal.deciding.metric == "loss_one_way_pct"
    assert "av.upstream.audio_loss_pct" in vocal.deciding.source
    assert result.cues[Cue.CONVERSATIONAL_TIMING].level == Level.GOOD
    assert result.recommendation == Recommendation.PHONE
    assert any("blocks UDP" in line for line in result.advice)


from netcheck.probes.throughput import ThroughputResult  # noqa: E402
from netcheck.quality.thresholds import video_setting_for  # noqa: E402


def throughput(**changes) -> ThroughputResult:
    base = ThroughputResult(status=Status.OK, download_mbps=50.0, upload_mbps=10.0, idle_rtt_ms=20.0,
                            loaded_rtt_down_ms=30.0, loaded_rtt_up_ms=35.0, bufferbloat_ms=15.0, bytes_down=10**7,
                            bytes_up=10**6, backend="netcheck", error=None)
    return dataclasses.replace(base, **changes)


def test_bufferbloat_makes_timing_poor_and_names_the_upload() -> None:
    bloated = throughput(loaded_rtt_up_ms=420.0, bufferbloat_ms=400.0)
    result = assess({"udp": CLEAN_UDP, "av": CLEAN_AV, "throughput": bloated})
    timing = result.cues[Cue.CONVERSATIONAL_TIMING]
    assert timing.level == Level.POOR and "under load" in timing.deciding.source
    assert result.recommendation == Recommendation.PHONE
    assert any(line.startswith("Delay rises from 20 to 420 ms when uploading: pause cloud backups")
               for line in result.advice), result.advice


def test_bandwidth_decides_the_video_setting() -> None:
    assert [video_setting_for(mbps) for mbps in (10.0, 1.5, 1.49, 1.0, 0.99, 0.625, 0.6)] == [
        "720p", "720p", "540p", "540p", "360p", "360p", "audio only"]
    result = assess({"udp": CLEAN_UDP, "av": CLEAN_AV, "throughput": throughput(upload_mbps=0.7)})
    assert result.video_setting == "360p"
    assert result.cues[Cue.FACIAL_EXPRESSION].level == Level.FAIR  # 0.7 Mbps: ≥ 0.5, < 1.5
    assert any("set the video to 360p" in line for line in result.advice)
    starved = assess({"udp": CLEAN_UDP, "av": CLEAN_AV, "throughput": throughput(upload_mbps=0.3)})
    assert starved.recommendation == Recommendation.AUDIO_ONLY and starved.video_setting == "audio only"


from netcheck.probes.reach import ReachResult  # noqa: E402


def reach(**changes) -> ReachResult:
    fields = {name: None for name in ReachResult.__dataclass_fields__}
    fields.update(status=Status.OK, dns_status="ok", tcp_status="ok", tls_status="skipped", udp_status="ok",
                  stun_status="skipped", turn_udp_status="skipped", turn_tcp_status="skipped",
                  udp_packets_sent=5, udp_packets_received=5)
    fields.update(changes)
    return ReachResult(**fields)


def test_udp_blocked_without_any_call_recommends_the_phone() -> None:
    blocked = reach(udp_status="blocked", udp_packets_received=0)
    result = assess({"udp": failed_result(Status.TIMEOUT, 150), "av": av_failed_result(Status.BLOCKED, "ICE failed"),
                     "reach": blocked})
    assert result.recommendation == Recommendation.PHONE
    assert "blocks UDP" in result.summary
    assert any(line.startswith("Your network blocks UDP: video calls need UDP or a TURN relay") for line in result.advice)
    assert not any(line.startswith("No answer on the server's UDP port") for line in result.advice)


def test_udp_blocked_with_a_relay_that_works_is_judged_on_the_call() -> None:
    over_tcp = dataclasses.replace(CLEAN_AV, ice_path="relay-tcp", udp_blocked=True)
    result = assess({"udp": failed_result(Status.TIMEOUT, 150), "av": over_tcp,
                     "reach": reach(udp_status="blocked", turn_tcp_status="ok", turn_udp_status="timeout")})
    assert result.recommendation == Recommendation.VIDEO
    assert any("calls will relay over TCP through the clinic's TURN server" in line for line in result.advice)


def test_turn_credentials_refused_are_said() -> None:
    advice = assess({"udp": CLEAN_UDP, "reach": reach(turn_udp_status="auth_failed", turn_tcp_status="auth_failed")}).advice
    assert sum("refused the credentials" in line for line in advice) == 1


# --- issue 12: frozen share, adapting senders, and unknown stays unknown -------------------------

def frozen_direction(gaps_s: list[tuple[float, float]], window_s: float = 5.0) -> AvDirection:
    """A 30 fps direction over `window_s` with nothing arriving in each (start, length) gap, summarised
    by the probe's own freeze counter (WebRTC's definition)."""
    from netcheck.av.analysis import summarise_video

    arrivals = [i / 30 for i in range(int(window_s * 30))
                if not any(start <= i / 30 < start + length for start, length in gaps_s)]
    summary = summarise_video(arrivals, window_s)
    return dataclasses.replace(CLEAN_DIRECTION, video_fps=round(summary.fps, 2), video_freezes=summary.freezes,
                               video_frozen_ms=summary.frozen_ms)


@pytest.mark.parametrize(("gaps_s", "worst_allowed", "expected"), [
    ([], Level.GOOD, Level.GOOD),                       # a clean loopback call
    ([(2.0, 0.2)], Level.FAIR, Level.FAIR),             # one 200 ms stall: 4 % of 5 s, at most fair
    ([(2.0, 1.5)], Level.POOR, Level.POOR),             # a 1.5 s blackout: 30 % of 5 s
])
def test_frozen_share_of_a_5_s_probe(gaps_s: list, worst_allowed: Level, expected: Level) -> None:
    probe = dataclasses.replace(CLEAN_AV, duration_s=5.0, downstream=frozen_direction(gaps_s))
    face = assess({"udp": CLEAN_UDP, "av": probe}).cues[Cue.FACIAL_EXPRESSION]
    frozen = next(metric for metric in face.metrics if metric.metric == "frozen_pct")
    assert frozen.level == expected, frozen
    assert SEVERITY[face.level] <= SEVERITY[worst_allowed]
    if expected == Level.POOR:
        assert face.deciding is not None and face.deciding.metric == "frozen_pct"


def test_video_height_is_judged_only_for_a_sender_that_adapts_it() -> None:
    small = dataclasses.replace(CLEAN_DIRECTION, video_width=640, video_height=360)
    fixed = dataclasses.replace(CLEAN_AV, upstream=small, downstream=small)  # aiortc: no direction adapts
    height = next(m for m in assess({"av": fixed}).cues[Cue.FACIAL_EXPRESSION].metrics if m.metric == "video_height")
    assert height.level == Level.UNKNOWN and height.value is None
    adapting = dataclasses.replace(fixed, upstream=dataclasses.replace(small, resolution_adapts=True),
                                   duration_s=RESOLUTION_SETTLED_S)  # a browser, in a call long enough to settle
    # camera lowered its resolution to 360p; the server's fixed-size downstream is still not judged
    face = assess({"av": adapting}).cues[Cue.FACIAL_EXPRESSION]
    height = next(m for m in face.metrics if m.metric == "video_height")
    assert (height.level, height.value, height.direction) == (Level.FAIR, 360.0, "upstream")
    assert face.level == Level.FAIR


def test_a_browsers_height_in_a_call_shorter_than_its_ramp_is_not_judged() -> None:
    """A browser check's 6 s call sees Chromium's start-up 360p on a clean path: not the path's fault."""
    small = dataclasses.replace(CLEAN_DIRECTION, video_width=640, video_height=360, resolution_adapts=True)
    short = dataclasses.replace(CLEAN_AV, upstream=small, duration_s=RESOLUTION_SETTLED_S - 14)
    face = assess({"av": short}).cues[Cue.FACIAL_EXPRESSION]
    height = next(m for m in face.metrics if m.metric == "video_height")
    assert height.level == Level.UNKNOWN and height.value is None
    assert face.level == Level.GOOD and not assess({"av": short}).advice


FULL = {"udp": CLEAN_UDP, "av": dataclasses.replace(CLEAN_AV, duration_s=RESOLUTION_SETTLED_S,
                                                    upstream=dataclasses.replace(CLEAN_DIRECTION, resolution_adapts=True)),
        "throughput": ThroughputResult(status=Status.OK, download_mbps=20.0, upload_mbps=10.0, idle_rtt_ms=1.0,
                                       loaded_rtt_down_ms=None, loaded_rtt_up_ms=None, bufferbloat_ms=None,
                                       bytes_down=1, bytes_up=1, backend="netcheck", error=None)}
REMOVE: dict[str, dict[str, dict[str, None]]] = {
    "video_fps": {"av.both": {"video_fps": None}},
    "video_height": {"av.both": {"video_height": None}},
    "frozen_pct": {"av.both": {"video_frozen_ms": None}},
    "video_loss_pct": {"av.both": {"video_loss_pct": None}},
    "bandwidth_mbps": {"throughput": {"download_mbps": None, "upload_mbps": None}},
    "loss_one_way_pct": {"udp": {"loss_up_pct": None, "loss_down_pct": None, "loss_pct": None}},
    "jitter_one_way_ms": {"udp": {"jitter_up_ms": None, "jitter_down_ms": None, "jitter_ms": None}},
    "rtt_p95_ms": {"udp": {"rtt_p95_ms": None}},
    "av_skew_ms": {"av": {"av_skew_ms": None}},
}
"""For each measured metric, the probe fields that carry it (mos is derived: it goes with jitter or loss)."""


def without(metric: str) -> dict:
    results = dict(FULL)
    for where, changes in REMOVE[metric].items():
        if where == "av.both":
            av_result = results["av"]
            results["av"] = dataclasses.replace(av_result, upstream=dataclasses.replace(av_result.upstream, **changes),
                                                downstream=dataclasses.replace(av_result.downstream, **changes))
        else:
            results[where] = dataclasses.replace(results[where], **changes)
    return results


@pytest.mark.parametrize("metric", [metric.name for metric in METRICS if metric.name != "mos"])
def test_a_metric_that_was_not_measured_is_unknown_never_good(metric: str) -> None:
    """Without this metric the cue is decided by the metrics that remain, or unknown when none does:
    the missing value never enters the cue (or the MOS) as a 0 that would look good."""
    assert set(REMOVE) == {m.name for m in METRICS} - {"mos"}, "every metric of the registry is covered"
    row = next(m for m in METRICS if m.name == metric)
    full = assess(FULL).cues[row.cue]
    assert next(v for v in full.metrics if v.metric == metric).level != Level.UNKNOWN, "measured in FULL"
    cue = assess(without(metric)).cues[row.cue]
    removed = next(v for v in cue.metrics if v.metric == metric)
    assert removed.level == Level.UNKNOWN and removed.value is None
    remaining = [v.level for v in cue.metrics if v.level != Level.UNKNOWN]
    assert cue.level == (max(remaining, key=SEVERITY.__getitem__) if remaining else Level.UNKNOWN), cue
    if metric in ("loss_one_way_pct", "jitter_one_way_ms"):  # the MOS needs both: never computed from a 0
        assert next(v for v in cue.metrics if v.metric == "mos").level == Level.UNKNOWN


def test_a_missing_value_taken_for_zero_would_be_caught() -> None:
    """The check above can fail: a path whose jitter is poor is not made good by losing its loss figure."""
    rough = dataclasses.replace(CLEAN_UDP, jitter_up_ms=60.0)
    cue = assess({"udp": dataclasses.replace(rough, loss_up_pct=None, loss_down_pct=None, loss_pct=None)}).cues[
        Cue.VOCAL_TONE]
    assert cue.level == Level.POOR and cue.deciding is not None and cue.deciding.metric == "jitter_one_way_ms"


NETWORK_WORDS = ("firewall", "router", "cable", "Wi-Fi", "uploads", "your connection carries", "the connection stalls")
"""Words of advice that blame the client's network: never said of a figure the busy server spoiled."""


def test_a_call_measured_while_the_server_was_busy_is_not_blamed_on_the_clients_network() -> None:
    """The mark is the node's word that it was short of CPU, whatever its measure; its CPU figure alone
    (here 97 %, of the CPU it may use) is not the mark."""
    choppy = dataclasses.replace(CLEAN_AV, server_cpu_pct=97.0, server_busy=True,
                                 downstream=dataclasses.replace(CLEAN_DIRECTION, video_fps=12.0))
    result = assess({"udp": udp(jitter_up_ms=45.0), "av": choppy})
    assert any("test server was busy" in line and "run the check again" in line for line in result.advice), result.advice
    assert not any(word in line for line in result.advice for word in NETWORK_WORDS), result.advice
    face, voice = result.cues[Cue.FACIAL_EXPRESSION], result.cues[Cue.VOCAL_TONE]
    assert face.level == voice.level == Level.UNKNOWN and "short of CPU" in face.note  # not judged ...
    fps = next(m for m in face.metrics if m.metric == "video_fps")
    assert fps.value == 12.0 and "not judged" in fps.source  # ... but reported
    assert result.recommendation == Recommendation.UNKNOWN and "test server was busy" in result.summary
    calm = dataclasses.replace(choppy, server_busy=False)
    calm_result = assess({"udp": CLEAN_UDP, "av": calm})
    assert not any("test server was busy" in line for line in calm_result.advice)
    assert calm_result.recommendation == Recommendation.AUDIO_ONLY and any("12 fps" in a for a in calm_result.advice)


def test_good_figures_measured_while_the_server_was_busy_stand() -> None:
    """A node short of CPU only ever makes a figure worse: good ones are judged, and no advice is needed."""
    result = assess({"udp": CLEAN_UDP, "av": dataclasses.replace(CLEAN_AV, server_busy=True),
                     "throughput": throughput(server_busy=True)})
    assert result.recommendation == Recommendation.VIDEO and result.advice == ()
    assert all(cue.level == Level.GOOD for cue in result.cues.values())


def test_a_call_the_busy_server_refused_is_not_a_firewall() -> None:
    """429 until the probe gave up (or a call that timed out while the node was short of CPU): the
    server's doing. No firewall sentence, no audio-only verdict for the client's path."""
    refused = dataclasses.replace(av_failed_result(Status.TIMEOUT, "the clinic's test server stayed busy for 60 s"),
                                  server_busy=True)
    result = assess({"udp": CLEAN_UDP, "av": refused})
    assert result.recommendation == Recommendation.VIDEO, result.summary
    assert not any("firewall" in line for line in result.advice), result.advice
    assert any(line.startswith("The clinic's test server was busy, so the video test call could not be made")
               for line in result.advice), result.advice
    blocked = assess({"udp": CLEAN_UDP, "av": dataclasses.replace(refused, server_busy=None)})
    assert blocked.recommendation == Recommendation.AUDIO_ONLY
    assert any("a firewall may block video calls" in line for line in blocked.advice)  # the old sentence, unmarked


def test_a_speed_test_the_busy_server_held_back_is_not_judged() -> None:
    slow = throughput(download_mbps=0.4, loaded_rtt_up_ms=420.0, bufferbloat_ms=400.0, server_busy=True)
    result = assess({"udp": CLEAN_UDP, "av": CLEAN_AV, "throughput": slow})
    assert result.video_setting is None and result.recommendation == Recommendation.UNKNOWN
    assert result.cues[Cue.CONVERSATIONAL_TIMING].level == Level.UNKNOWN
    assert not any(word in line for line in result.advice for word in (*NETWORK_WORDS, "Delay rises")), result.advice
    assert any("test server was busy" in line for line in result.advice)


def test_a_direction_with_no_video_sent_is_not_measured_but_one_that_received_nothing_is_poor() -> None:
    no_camera = dataclasses.replace(CLEAN_DIRECTION, video_fps=None, video_width=None, video_height=None,
                                    video_freezes=None, video_frozen_ms=None)
    face = assess({"av": dataclasses.replace(CLEAN_AV, upstream=no_camera)}).cues[Cue.FACIAL_EXPRESSION]
    assert face.level == Level.GOOD, face  # judged on the downstream alone
    nothing_came = dataclasses.replace(no_camera, video_freezes=0, video_frozen_ms=0.0)
    face = assess({"av": dataclasses.replace(CLEAN_AV, upstream=nothing_came)}).cues[Cue.FACIAL_EXPRESSION]
    assert face.level == Level.POOR and face.deciding is not None and face.deciding.value in (0.0, 100.0)


def test_bandwidth_too_short_for_any_video_rung_never_recommends_video() -> None:
    slow = ThroughputResult(status=Status.OK, download_mbps=0.57, upload_mbps=0.9, idle_rtt_ms=1.0,
                            loaded_rtt_down_ms=None, loaded_rtt_up_ms=None, bufferbloat_ms=None, bytes_down=1,
                            bytes_up=1, backend="netcheck", error=None)
    result = assess({"udp": CLEAN_UDP, "av": CLEAN_AV, "throughput": slow})
    assert result.cues[Cue.FACIAL_EXPRESSION].level == Level.FAIR  # 0.57 Mbps: fair bandwidth ...
    assert result.video_setting == "audio only"  # ... but no rung fits with its margin
    assert result.recommendation == Recommendation.AUDIO_ONLY
    assert result.summary == "Use audio only: the connection carries too little for video in its slower direction."
