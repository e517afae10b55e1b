"""What the server shares out among the clients that measure: who may (access), the fair shares of
A/V calls and throughput streams (admission.py), and the node's own CPU headroom (headroom.py). `server/app.py` builds one;
the endpoints, the session tabs, the pages and the node's metrics read it."""

from __future__ import annotations

from dataclasses import dataclass

from netcheck.server.access import MeasuringAccess
from netcheck.server.admission import FairShare
from netcheck.server.headroom import CpuHeadroom


@dataclass
class Capacity:
    """The server's measuring capacity, shared out fairly (admission.py)."""

    access: MeasuringAccess
    av: FairShare
    throughput: FairShare
    cpu: CpuHeadroom
