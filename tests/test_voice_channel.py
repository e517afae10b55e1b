"""The voice-path data channel (docs/browser-check.md): the 48-byte echo protocol, answered only when
well formed and within the rate, and through a real aiortc data channel to a real server."""

from __future__ import annotations

import asyncio
import struct
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from netcheck.server.voice_channel import (
    KIND_ECHO_REPLY, KIND_ECHO_REQUEST, KIND_STATS_REPLY, KIND_STATS_REQUEST, LABEL, MAX_SEQ, MESSAGE_BYTES,
    VoiceChannelLog, VoiceMessage, decode, encode,
)


def request(seq: int, client_send_ms: float = 1.5, kind: int = KIND_ECHO_REQUEST) -> bytes:
    return encode(VoiceMessage(kind, seq, 0, client_send_ms))


def test_the_layout_is_the_contracts_byte_for_byte() -> None:
    data = encode(VoiceMessage(KIND_ECHO_REPLY, 7, 3, 12.5, 1000.25, 1000.5))
    assert len(data) == MESSAGE_BYTES
    assert data[:4] == b"NV\x01\x02"
    assert struct.unpack(">I", data[4:8])[0] == 7 and struct.unpack(">I", data[8:12])[0] == 3
    assert data[12:16] == b"\0" * 4 and data[40:48] == b"\0" * 8
    assert struct.unpack(">ddd", data[16:40]) == (12.5, 1000.25, 1000.5)
    assert decode(data) == VoiceMessage(KIND_ECHO_REPLY, 7, 3, 12.5, 1000.25, 1000.5)


def test_an_echo_is_answered_with_the_servers_times_and_the_distinct_count() -> None:
    log = VoiceChannelLog()
    first = decode(log.answer(request(0, 5.0), 100.0, 100.2) or b"")
    assert first == VoiceMessage(KIND_ECHO_REPLY, 0, 1, 5.0, 100.0, 100.2)
    log.answer(request(1), 120.0)
    again = decode(log.answer(request(1), 121.0) or b"")  # a duplicate is answered, not counted twice
    assert again is not None and again.server_rx_count == 2
    stats = decode(log.answer(request(0, kind=KIND_STATS_REQUEST), 200.0) or b"")
    assert stats is not None and stats.kind == KIND_STATS_REPLY and stats.server_rx_count == 2
    assert [(a.seq, a.server_recv_ms) for a in log.arrivals] == [(0, 100.0), (1, 120.0)]


def test_malformed_messages_get_no_answer() -> None:
    log = VoiceChannelLog()
    good = request(3)
    bad = [
        good[:-1], good + b"\0", b"XV" + good[2:], good[:2] + b"\x02" + good[3:],
        good[:3] + b"\x05" + good[4:], good[:3] + b"\x00" + good[4:],
        request(MAX_SEQ), request(3, float("nan")), request(3, float("inf")),
        encode(VoiceMessage(KIND_ECHO_REPLY, 3, 0, 1.0)), encode(VoiceMessage(KIND_STATS_REPLY, 0, 0, 1.0)), b"",
    ]
    for index, data in enumerate(bad):
        assert log.answer(data, 1000.0 * index) is None, index
    assert log.rx_count == 0 and log.ignored == len(bad)


def test_more_than_100_messages_a_second_are_ignored() -> None:
    log = VoiceChannelLog()
    answered = sum(log.answer(request(seq % MAX_SEQ), 1000.0 + seq * 2.0) is not None for seq in range(1000))
    # 500 a second for 2 s: the 100-message bucket, then 100 a second
    assert 290 <= answered <= 310
    steady = VoiceChannelLog()
    assert all(steady.answer(request(seq), seq * 20.0) is not None for seq in range(500))  # the page's 50/s


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=96))
def test_random_bytes_are_never_answered_with_more_than_they_sent(data: bytes) -> None:
    log = VoiceChannelLog()
    reply = log.answer(data, 0.0)
    assert reply is None or (len(reply) == len(data) == MESSAGE_BYTES and decode(data) is not None)


def test_through_a_real_aiortc_data_channel_to_a_real_server() -> None:
    """A real aiortc peer (as the page would be) opens the voice channel beside its call: 150 echoes
    at 50/s come back with the server's times, and the stats reply counts what the server received."""
    from tests.harness.aiortc_page import open_call

    async def scenario() -> tuple[list[VoiceMessage], VoiceMessage | None, int]:
        from netcheck.server.app import start_server

        server = await start_server("127.0.0.1", 0, 0)
        try:
            call = await open_call(server.url)
            try:
                replies: list[VoiceMessage] = []
                stats: list[VoiceMessage] = []

                def on_message(data: object) -> None:
                    message = decode(data) if isinstance(data, bytes) else None
                    if message is not None:
                        (stats if message.kind == KIND_STATS_REPLY else replies).append(message)

                call.channel.on("message", on_message)
                start_s = time.monotonic()
                for seq in range(150):
                    await asyncio.sleep(max(0.0, start_s + seq * 0.02 - time.monotonic()))
                    call.channel.send(request(seq, time.monotonic() * 1000.0))
                await asyncio.sleep(0.3)
                call.channel.send(request(0, kind=KIND_STATS_REQUEST))
                await asyncio.sleep(0.3)
                session = server.media.sessions[call.session_id]
                own = session.voice.rx_count if session.voice else -1
                return replies, stats[0] if stats else None, own
            finally:
                await call.close()
        finally:
            await server.close()

    replies, stats, own_count = asyncio.run(scenario())
    assert len({reply.seq for reply in replies}) == 150
    assert all(reply.server_send_ms >= reply.server_recv_ms > 0 for reply in replies)
    assert stats is not None and stats.server_rx_count == 150 == own_count
    assert LABEL == "netcheck-voice"
