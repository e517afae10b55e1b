"""Probes measure and return a result; they never judge, store or print.

The registry is explicit: a probe exists when it is listed here.
"""

from netcheck.probes.av import AvProbe
from netcheck.probes.system import SystemProbe
from netcheck.probes.udp import UdpProbe

PROBES = {
    UdpProbe.name: UdpProbe,
    AvProbe.name: AvProbe,
    SystemProbe.name: SystemProbe,
}
