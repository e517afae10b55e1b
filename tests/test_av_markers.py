"""Sync markers and receiver analysis, with made-up frames and arrival times."""

from __future__ import annotations

from array import array

import pytest

from netcheck.av import markers
from netcheck.av.analysis import Recording, count_freezes, marker_skews_ms, summarise_video
from netcheck.av.figures import pipeline_offset_ms
from netcheck.av.markers import VideoFormat
from netcheck.av.session import parse_offer_request, parse_video_format
from netcheck.errors import UsageError


@pytest.mark.parametrize("width", [160, 640, 1280])
@pytest.mark.parametrize("index", [0, 1, 29, 12345, 65535])
def test_frame_code_round_trip(width: int, index: int) -> None:
    height = width * 9 // 16
    luma = bytearray(markers.background_luma(width, height)[:width * height])
    markers.paint_code(luma, width, width, index)
    assert markers.read_code(memoryview(luma), width, width) == index


def test_damaged_code_is_rejected() -> None:
    width, height = 640, 360
    luma = bytearray(markers.background_luma(width, height)[:width * height])
    markers.paint_code(luma, width, width, 4242)
    block = markers.block_size_px(width)
    y = block * 2 + block // 2
    x = block * (2 + 10) + block // 2  # one index bit
    luma[y * width + x] = 255 - luma[y * width + x]
    assert markers.read_code(memoryview(luma), width, width) is None
    assert markers.read_code(bytes(width * height), width, width) is None  # a black frame has no sync bits


def test_bursts_lead_the_video_marker_by_the_audio_offset() -> None:
    video = VideoFormat(640, 360, 30)
    # first marker frame 15 (0.5 s), then every 30 frames; +40 ms offset → 40 ms earlier = 1920 samples
    assert markers.burst_start_samples(video, 40.0, 2) == [24000 - 1920, 72000 - 1920]
    assert markers.burst_start_samples(video, -150.0, 1) == [24000 + 7200]


def test_audio_samples_and_onset() -> None:
    samples = markers.audio_samples(first_sample=1000, count=960, burst_starts=[1500])
    assert all(value == 0 for value in samples[:500])
    onset = markers.first_onset(samples, channels=1)
    assert onset is not None and 500 <= onset <= 505  # the sine needs a few samples to cross the threshold
    stereo = array("h", [value for value in samples for _ in range(2)])
    assert markers.first_onset(stereo, channels=2) == onset
    assert markers.first_onset(markers.audio_samples(0, 960, [5000]), channels=1) is None


def test_freezes_follow_the_webrtc_definition() -> None:
    steady = [i / 30 for i in range(60)]
    assert count_freezes(steady) == (0, 0.0)
    # a 200 ms gap at 30 fps: > max(3 × 33 ms, 33 + 150 ms) = 183 ms → one freeze
    with_gap = steady + [steady[-1] + 0.2 + i / 30 for i in range(30)]
    count, frozen_s = count_freezes(with_gap)
    assert count == 1 and frozen_s == pytest.approx(0.2)
    # a 150 ms gap is not a freeze at 30 fps
    assert count_freezes(steady + [steady[-1] + 0.15])[0] == 0


def test_summary_counts_a_stall_at_the_end_of_the_window() -> None:
    arrivals = [i / 30 for i in range(90)]  # 3 s of video, then nothing for 1.5 s
    summary = summarise_video(arrivals, window_end_s=arrivals[-1] + 1.5)
    assert summary.freezes == 1
    assert summary.frozen_ms == pytest.approx(1500)
    assert summary.fps == pytest.approx(89 / (89 / 30 + 1.5), rel=1e-3)  # from first frame to window end


def test_marker_skew_pairs_each_marker_frame_with_the_nearest_onset() -> None:
    video = VideoFormat(640, 360, 30)
    recording = Recording(
        video_arrivals_s=[10.0, 11.0, 12.0],
        video_indices=[15, 45, 46],  # two marker frames, one ordinary frame
        audio_onsets_s=[9.96, 11.05, 20.0],
    )
    assert marker_skews_ms(recording, video) == pytest.approx([40.0, -50.0])


def test_pipeline_offset_model() -> None:
    assert pipeline_offset_ms(VideoFormat(640, 360, 30)) == pytest.approx(1000 / 30 + 6.6 * 0.2304 - 84.4)
    assert pipeline_offset_ms(VideoFormat(320, 180, 15)) > pipeline_offset_ms(VideoFormat(640, 360, 30))


@pytest.mark.parametrize("text", ["640x360", "640x360@0", "99999x360@30", "641x360@30", "axb@c"])
def test_bad_video_formats(text: str) -> None:
    with pytest.raises(UsageError):
        parse_video_format(text)


@pytest.mark.parametrize(
    ("body", "message"),
    [([], "JSON object"), ({"type": "answer", "sdp": "v=0"}, "expected"),
     ({"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\n"}, "audio and a video"),
     ({"type": "offer", "sdp": "v=0 m=audio m=video", "audio_offset_ms": 5000}, "audio offset")],
)
def test_bad_offer_requests(body, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_offer_request(body)


def test_media_timeline_ignores_frames_held_back_by_a_jitter_buffer() -> None:
    from netcheck.av.analysis import MediaTimeline

    timeline = MediaTimeline()
    origin = (1 << 32) - 960  # the RTP clock wraps after the first frame
    # frames every 20 ms arrive 80 ms after their media time, then two are held back by 300 ms
    assert timeline.play_time_s(origin, 48000, 100.080) == pytest.approx(100.080)
    assert timeline.play_time_s(0, 48000, 100.100) == pytest.approx(100.100)
    assert timeline.play_time_s(960, 48000, 100.420) == pytest.approx(100.120)
    assert timeline.play_time_s(1920, 48000, 100.421) == pytest.approx(100.140)
    assert timeline.play_time_s(None, 48000, 5.0) == 5.0


def test_frames_arriving_in_a_burst_are_not_all_displayed() -> None:
    from netcheck.av.analysis import displayed_frames

    steady = [i / 30 for i in range(30)]
    assert displayed_frames(steady) == 30
    burst = steady + [1.5 + i * 0.002 for i in range(15)]  # 15 late frames within 30 ms
    assert displayed_frames(burst) == 30 + 2
