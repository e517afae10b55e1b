"""System probe: the computer's side of a bad call (busy CPU, low battery, Wi-Fi, someone uploading).

It samples psutil at the start and at the end of a window that runs alongside the network
probes, so the traffic it reports is what crossed the interface *during* the check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import sys

from netcheck.model import Status
from netcheck.results import SystemResult

LOOPBACK_PREFIXES = ("lo",)
WIFI_PREFIXES = ("wl", "wlan", "wi-fi", "wifi", "airport", "wireless")
CELLULAR_PREFIXES = ("wwan", "rmnet", "ppp", "cellular", "pdp_ip")


def interface_kind(name: str) -> str:
    """Guess the link type from the interface name; Linux tells Wi-Fi for sure via sysfs."""
    lowered = name.lower()
    if lowered.startswith(LOOPBACK_PREFIXES) or lowered.startswith("loopback"):
        return "loopback"
    if sys.platform.startswith("linux") and os.path.isdir(f"/sys/class/net/{name}/wireless"):
        return "wifi"
    if lowered.startswith(WIFI_PREFIXES):
        return "wifi"
    if lowered.startswith(CELLULAR_PREFIXES):
        return "cellular"
    if lowered.startswith(("eth", "en", "ethernet", "em", "eno", "enp")):
        return "ethernet"
    return "unknown"


def local_address_towards(host: str) -> str | None:
    """The local IP the OS would use to reach `host` (a UDP connect sends nothing)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe_socket:
            probe_socket.connect((host, 9))
            return probe_socket.getsockname()[0]
    except OSError:
        return None


def interface_for_address(address: str) -> str | None:
    import psutil

    try:
        wanted = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return None
    for name, addresses in psutil.net_if_addrs().items():
        for entry in addresses:
            try:
                if ipaddress.ip_address(entry.address.split("%")[0]) == wanted:
                    return name
            except ValueError:
                continue
    return None


IDLE_FIELDS = ("idle", "iowait")
LOW_PRIORITY_FIELDS = ("nice", "guest_nice")
GUEST_FIELDS = ("guest", "guest_nice")  # Linux already counts guest time inside user and nice


def competing_cpu_pct(before: object, after: object, own_cpu_s: float = 0.0) -> float | None:
    """Share of all cores busy with work that competes with a call, from two `psutil.cpu_times()`.

    Work at low priority (`nice` > 0: a backup, a build) yields the CPU to the call the moment the
    call needs it, so it is left out; psutil's `cpu_percent` counts it as busy. So is `own_cpu_s`,
    netcheck's own CPU time over the same window: the check's test call is the measurement, not
    other work on the computer (with `--local` it encodes both ends: ≈ 40 % of 2 cores here).
    """
    fields = [name for name in getattr(after, "_fields", ()) if name not in GUEST_FIELDS]
    spent_s = {name: getattr(after, name) - getattr(before, name) for name in fields}
    total_s = sum(spent_s.values())
    if total_s <= 0:
        return None
    competing_s = sum(value for name, value in spent_s.items() if name not in IDLE_FIELDS + LOW_PRIORITY_FIELDS)
    return round(100.0 * max(competing_s - own_cpu_s, 0.0) / total_s, 1)


def own_cpu_s() -> float:
    """CPU time this process and its waited-for children have used, in seconds over all cores; 0 when it
    runs at low priority, where the kernel counts it as `nice` time, which competing_cpu_pct leaves out."""
    import psutil

    if os.nice(0) > 0:
        return 0.0
    times = psutil.Process().cpu_times()
    return times.user + times.system + times.children_user + times.children_system


class SystemProbe:
    """Sample the computer over `window_s` seconds, for the interface that reaches `target_host`.

    `ends`: set when what the window should cover has ended (the check's first phase), so the window
    is the phase's own span and the check does not wait out a guess of it; `window_s` bounds it.
    """

    name = "system"

    def __init__(self, target_host: str, window_s: float, ends: asyncio.Event | None = None) -> None:
        self.target_host = target_host
        self.window_s = window_s
        self.ends = ends

    async def run(self) -> SystemResult:
        import psutil

        local_address = await asyncio.to_thread(local_address_towards, self.target_host)
        nic = interface_for_address(local_address) if local_address else None
        cpu_before, own_before_s = psutil.cpu_times(), own_cpu_s()
        before = psutil.net_io_counters(pernic=True).get(nic) if nic else None
        loop = asyncio.get_running_loop()
        start_s = loop.time()
        if self.ends is None:
            await asyncio.sleep(self.window_s)
        else:
            try:
                await asyncio.wait_for(self.ends.wait(), self.window_s)
            except asyncio.TimeoutError:
                pass
        window_s = loop.time() - start_s
        cpu_pct = competing_cpu_pct(cpu_before, psutil.cpu_times(), own_cpu_s() - own_before_s)
        after = psutil.net_io_counters(pernic=True).get(nic) if nic else None
        battery = psutil.sensors_battery() if hasattr(psutil, "sensors_battery") else None
        have_counters = before is not None and after is not None and window_s > 0
        return SystemResult(
            status=Status.OK,
            cpu_pct=cpu_pct,
            memory_pct=psutil.virtual_memory().percent,
            battery_pct=round(battery.percent, 1) if battery else None,
            battery_plugged=bool(battery.power_plugged) if battery and battery.power_plugged is not None else None,
            interface=nic,
            interface_kind=interface_kind(nic) if nic else "unknown",
            nic_errors=(after.errin + after.errout - before.errin - before.errout) if have_counters else None,
            nic_drops=(after.dropin + after.dropout - before.dropin - before.dropout) if have_counters else None,
            rx_mbps=(after.bytes_recv - before.bytes_recv) * 8 / window_s / 1e6 if have_counters else None,
            tx_mbps=(after.bytes_sent - before.bytes_sent) * 8 / window_s / 1e6 if have_counters else None,
            window_s=round(window_s, 3),
        )
