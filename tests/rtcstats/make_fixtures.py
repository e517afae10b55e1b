"""Regenerate tests/rtcstats/jitsi_call.jsonl: the messages the real @jitsi/rtcstats client sends for a
scripted 1:1 call (replay.mjs runs the npm module's own trace-ws.js and rtcstats.js under Node).

    python -m tests.harness.rtcstats_client install      # into .npm/, ignored, never committed (scripts/test does it)
    python tests/rtcstats/make_fixtures.py .npm/node_modules

The scenario is Chromium's getStats of a 1:1 call, 5 s apart (analytics.rtcstatsPollInterval: 5000): two
good windows, then 20 of 250 audio packets lost in each window (8 %), as tests/test_call_leg.py's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
T0_MS = 1_765_120_000_000.0
ROOM = "therapy-room-42"


def reports(n: int) -> list[dict[str, Any]]:
    """Snapshot n (5 s apart) of a Chromium 1:1 call, with the types and fields the door must skip."""
    t = T0_MS + 5000.0 * n
    s = 60 + 5 * n
    lost = 20 * max(0, n - 2)
    return [
        {"id": "P", "type": "peer-connection", "timestamp": t, "dataChannelsOpened": 0},
        {"id": "T01", "type": "transport", "timestamp": t, "selectedCandidatePairId": "CPa_b",
         "dtlsState": "connected", "bytesSent": 200000 * s},
        {"id": "CPa_b", "type": "candidate-pair", "timestamp": t, "nominated": True, "state": "succeeded",
         "currentRoundTripTime": 0.041, "availableOutgoingBitrate": 2500000, "bytesSent": 190000 * s},
        {"id": "CPc_d", "type": "candidate-pair", "timestamp": t, "nominated": False, "state": "waiting",
         "currentRoundTripTime": 0.9},
        {"id": "COT01_111", "type": "codec", "timestamp": t, "mimeType": "audio/opus", "payloadType": 111},
        {"id": "IT01V1843211231", "type": "inbound-rtp", "timestamp": t, "kind": "video", "ssrc": 1843211231,
         "mid": "1", "codecId": "COT01_96", "packetsReceived": 95 * s, "packetsLost": 0, "jitter": 0.004,
         "framesDecoded": 30 * s, "frameHeight": 720, "frameWidth": 1280, "freezeCount": 0,
         "totalFreezesDuration": 0, "bytesReceived": 150000 * s},
        {"id": "IT01A2471109532", "type": "inbound-rtp", "timestamp": t, "kind": "audio", "ssrc": 2471109532,
         "mid": "0", "packetsReceived": 50 * s - lost, "packetsLost": lost, "jitter": 0.002,
         "totalSamplesReceived": 48000 * s, "concealedSamples": lost * 960, "silentConcealedSamples": 0,
         "audioLevel": 0.02},
        {"id": "OT01V2284839104", "type": "outbound-rtp", "timestamp": t, "kind": "video", "ssrc": 2284839104,
         "packetsSent": 160 * s, "framesSent": 30 * s, "frameHeight": 720, "qualityLimitationReason": "none",
         "qualityLimitationDurations": {"none": float(s), "cpu": 0.0, "bandwidth": 0.0, "other": 0.0},
         "mediaSourceId": "SV2"},
        {"id": "RI01V2284839104", "type": "remote-inbound-rtp", "timestamp": t - 900, "kind": "video",
         "localId": "OT01V2284839104", "fractionLost": 0, "roundTripTime": 0.041,
         "totalRoundTripTime": 0.041 * s, "roundTripTimeMeasurements": s},
        {"id": "SV2", "type": "media-source", "timestamp": t, "kind": "video", "frames": 30 * s},
    ]


def main(modules: str) -> int:
    scenario = {"endpoint": "wss://node.example-clinic.org/v1/rtcstats", "room": ROOM, "displayName": "Client",
                "config": {"hosts": {"domain": "meet.example-clinic.org"},
                           "analytics": {"rtcstatsEnabled": True, "rtcstatsPollInterval": 5000}},
                "snapshots": [reports(n) for n in range(7)]}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(scenario, file)
        file.flush()
        lines = subprocess.run(["node", "--import", "./register.mjs", "replay.mjs", modules, file.name], cwd=HERE,
                               check=True, capture_output=True, text=True, timeout=60).stdout
    (HERE / "jitsi_call.jsonl").write_text(lines)
    print(f"{len(lines.splitlines())} messages → {HERE / 'jitsi_call.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
