"""Whether the node itself gets the CPU it needs: its own figures, never the machine's.

A node that is short of CPU measures itself: replies leave late, frames are encoded late, and the
client's figures carry the node's delay. So the node admits CPU-heavy work (A/V calls, session
tabs) and marks what it measured by its *own* state, read once a second:

- the event loop thread's CPU, as a share of one core: the loop is one thread, and from 85 % on
  every new call waits behind the others;
- the process's CPU, as a share of the CPU it may use (its cores, or its cgroup quota when smaller):
  the loop and the encoder threads together against what the node has;
- how late the node's threads got a CPU each time they could run (Linux: run delay per run, from
  each thread's `/proc/self/task/*/schedstat`): every reply, frame and timer waits that long;
- the share of the time its cgroup was throttled, when a quota limits the node;
- the event loop's lag (how late a 50 ms timer typically fires): the loop did not get to run.

Other processes' load does not enter, at any priority: a `nice 19` backup takes only the CPU the
node leaves, and even processes of the node's own priority hold each of its wake-ups back by about
a scheduler slice, not by the tens of milliseconds that would spoil a figure. A node held to a
quota it exhausts uses all of it and is throttled. docs/design-notes.md has the measurements.
The figures are pure functions of two readings (`node_load`), tested with fake readings; the
readers of `/proc` and the cgroup files are small and best effort (absent on other platforms).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CPU_SAMPLE_S = 1.0
LOOP_TICK_S = 0.05
"""The lag timer's period: 20 wake-ups a second cost nothing and catch a stall of a frame's length."""
HISTORY_S = 120.0
"""How long the node remembers its samples: a call lasts at most 60 s (media.MAX_SESSION_S)."""


@dataclass(frozen=True)
class ShortOfCpu:
    """From which figure on the node is short of CPU (docs/design-notes.md says why each)."""

    loop_cpu_pct: float = 85.0
    """The event loop thread's CPU, % of one core."""
    process_cpu_pct: float = 85.0
    """The process's CPU, % of the CPU it may use."""
    wait_per_run_ms: float = 10.0
    """How long its threads waited for a CPU each time they could run, on average."""
    throttled_pct: float = 10.0
    """The share of the time its cgroup was throttled (it had used its quota)."""
    loop_lag_ms: float = 20.0
    """The loop's typical (median) lateness over a sample: every reply and frame is held back that long.
    The median, not the mean: one stall (an import, a garbage collection) is not a node short of CPU."""


@dataclass(frozen=True)
class CpuCounters:
    """Cumulative readings at one instant; two of them make a NodeLoad."""

    at_s: float
    """time.monotonic() when read."""
    loop_cpu_s: float
    """CPU time of the thread that reads them (the event loop's)."""
    process_cpu_s: float
    thread_waits: Mapping[int, tuple[float, int]] = field(default_factory=dict)
    """Thread id → (its run delay so far in s: time runnable but not running, how often it ran);
    empty where unknown."""
    throttled_s: float | None = None
    """The node's cgroup's throttled time so far; None without a cgroup CPU controller."""
    cores: float = 1.0
    """The CPU the node may use: its CPU affinity, or its cgroup quota when smaller."""


@dataclass(frozen=True)
class NodeLoad:
    """The node over one sample (about a second)."""

    at_s: float
    loop_cpu_pct: float
    process_cpu_pct: float
    wait_per_run_ms: float
    throttled_pct: float
    loop_lag_ms: float
    short_of_cpu: bool

    def reason(self, limits: ShortOfCpu = ShortOfCpu()) -> str:
        """The figures past their limit, for a 429's sentence (e.g. "it waited 35 % of the time for a CPU")."""
        parts = []
        if self.loop_cpu_pct >= limits.loop_cpu_pct:
            parts.append(f"its event loop uses {self.loop_cpu_pct:.0f} % of a core")
        if self.process_cpu_pct >= limits.process_cpu_pct:
            parts.append(f"it uses {self.process_cpu_pct:.0f} % of the CPU it may use")
        if self.wait_per_run_ms >= limits.wait_per_run_ms:
            parts.append(f"it waited {self.wait_per_run_ms:.0f} ms for a CPU each time it could run")
        if self.throttled_pct >= limits.throttled_pct:
            parts.append(f"its CPU quota held it back {self.throttled_pct:.0f} % of the time")
        if self.loop_lag_ms >= limits.loop_lag_ms:
            parts.append(f"its event loop runs {self.loop_lag_ms:.0f} ms late")
        return "short of CPU: " + ", ".join(parts) if parts else "not short of CPU"


@dataclass(frozen=True)
class Spell:
    """The node over a measurement's time: what marks the measurement."""

    short_of_cpu: bool
    cpu_max_pct: float
    """The process's CPU at its busiest, % of the CPU it may use."""


IDLE = NodeLoad(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, False)


def node_load(before: CpuCounters, after: CpuCounters, loop_lag_ms: float,
              limits: ShortOfCpu = ShortOfCpu()) -> NodeLoad:
    """The node's load between two readings. Waiting is per run, over all its threads: threads wait
    side by side, so a sum of their waits would grow with their number, not with the shortage. A
    thread born between the readings counts from its start; one gone since is not counted."""
    elapsed_s = max(after.at_s - before.at_s, 1e-3)
    waited_s, runs = 0.0, 0
    for tid, (delay_s, count) in after.thread_waits.items():
        delay_before_s, count_before = before.thread_waits.get(tid, (0.0, 0))
        waited_s += max(0.0, delay_s - delay_before_s)
        runs += max(0, count - count_before)
    throttled_s = (after.throttled_s - before.throttled_s
                   if after.throttled_s is not None and before.throttled_s is not None else 0.0)
    loop_cpu_pct = 100.0 * (after.loop_cpu_s - before.loop_cpu_s) / elapsed_s
    process_cpu_pct = 100.0 * (after.process_cpu_s - before.process_cpu_s) / elapsed_s / max(after.cores, 0.01)
    wait_per_run_ms = 1000.0 * waited_s / runs if runs else 0.0
    throttled_pct = min(100.0, 100.0 * max(throttled_s, 0.0) / elapsed_s)
    short = (loop_cpu_pct >= limits.loop_cpu_pct or process_cpu_pct >= limits.process_cpu_pct
             or wait_per_run_ms >= limits.wait_per_run_ms or throttled_pct >= limits.throttled_pct
             or loop_lag_ms >= limits.loop_lag_ms)
    return NodeLoad(after.at_s, round(loop_cpu_pct, 1), round(process_cpu_pct, 1), round(wait_per_run_ms, 2),
                    round(throttled_pct, 1), round(loop_lag_ms, 1), short)


class CpuHeadroom:
    """The node's recent loads, sampled by `run()` (a task of the server) or by `sample()` in tests."""

    def __init__(self, read: Callable[[], CpuCounters] | None = None, limits: ShortOfCpu = ShortOfCpu(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read or read_counters
        self.limits = limits
        self.clock = clock
        self.load = IDLE
        """The latest sample."""
        self.history: deque[NodeLoad] = deque(maxlen=int(HISTORY_S / CPU_SAMPLE_S))
        self._last = self._read()
        self._lag_ms: list[float] = []
        self.short_s_total = 0.0
        """Seconds the node was short of CPU since it started (the node's metrics)."""

    @property
    def busy(self) -> bool:
        """Short of CPU in the latest sample: new CPU-heavy work waits (429)."""
        return self.load.short_of_cpu

    def note_lag(self, late_ms: float) -> None:
        self._lag_ms.append(max(0.0, late_ms))

    def sample(self) -> NodeLoad:
        counters = self._read()
        lag_ms = statistics.median(self._lag_ms) if self._lag_ms else 0.0
        self._lag_ms.clear()
        self.load = node_load(self._last, counters, lag_ms, self.limits)
        if self.load.short_of_cpu:
            self.short_s_total = round(self.short_s_total + counters.at_s - self._last.at_s, 3)
        self._last = counters
        self.history.append(self.load)
        return self.load

    def during(self, since_s: float) -> Spell:
        """The node since `since_s` (time.monotonic()): every sample that ended after it. A measurement
        over that time may carry the node's delay when it was short."""
        loads = [load for load in self.history if load.at_s >= since_s]
        return Spell(short_of_cpu=any(load.short_of_cpu for load in loads),
                     cpu_max_pct=max((load.process_cpu_pct for load in loads), default=self.load.process_cpu_pct))

    def short_ago_s(self) -> float | None:
        """Seconds since the node was last short of CPU; None when not within its memory (HISTORY_S)."""
        last = next((load.at_s for load in reversed(self.history) if load.short_of_cpu), None)
        return None if last is None else max(0.0, self.clock() - last)

    async def run(self, on_sample: Callable[[NodeLoad], None] = lambda load: None) -> None:
        """Tick every LOOP_TICK_S (its lateness is the loop's lag); sample every CPU_SAMPLE_S."""
        loop = asyncio.get_running_loop()
        next_sample_s = loop.time() + CPU_SAMPLE_S
        while True:
            due_s = loop.time() + LOOP_TICK_S
            await asyncio.sleep(LOOP_TICK_S)
            self.note_lag((loop.time() - due_s) * 1000.0)
            if loop.time() >= next_sample_s:
                next_sample_s = loop.time() + CPU_SAMPLE_S
                on_sample(self.sample())


def read_counters() -> CpuCounters:
    """This process's counters now (call it on the event loop's thread: its CPU time is the loop's)."""
    times = os.times()
    cgroup = cpu_cgroup()
    quota_cores = cgroup_quota_cores(cgroup) if cgroup is not None else None
    cores = float(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else float(os.cpu_count() or 1)
    return CpuCounters(at_s=time.monotonic(), loop_cpu_s=time.thread_time(), process_cpu_s=times.user + times.system,
                       thread_waits=thread_waits(), throttled_s=cgroup_throttled_s(cgroup) if cgroup else None,
                       cores=min(cores, quota_cores) if quota_cores else cores)


def thread_waits(task_dir: Path = Path("/proc/self/task")) -> dict[int, tuple[float, int]]:
    """Each thread's (run delay in s, runs): the second and third fields of its schedstat; {} where
    there is none (not Linux, or a kernel without schedstats)."""
    waits: dict[int, tuple[float, int]] = {}
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return waits
    for task in tasks:
        try:
            fields = (task / "schedstat").read_text().split()
            waits[int(task.name)] = (int(fields[1]) / 1e9, int(fields[2]))
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return waits


@dataclass(frozen=True)
class CpuCgroup:
    """The cgroup whose CPU controller holds this process: its directory and its version."""

    path: Path
    version: int


def cpu_cgroup(proc_cgroup: Path = Path("/proc/self/cgroup"),
               mountinfo: Path = Path("/proc/self/mountinfo")) -> CpuCgroup | None:
    """Where this process's CPU limits are: cgroup v1's `cpu` controller if it is mounted (a hybrid
    machine has v2 mounted too, without that controller), else the v2 group if it has `cpu.max`."""
    try:
        memberships = [line.split(":", 2) for line in proc_cgroup.read_text().splitlines()]
        mounts = [line.split(" - ", 1) for line in mountinfo.read_text().splitlines()]
    except OSError:
        return None
    for fields, after in (m for m in mounts if len(m) == 2):
        mount_fields, (fstype, _source, options, *_rest) = fields.split(), after.split()
        root, point = mount_fields[3], mount_fields[4]
        for hierarchy in memberships:
            if len(hierarchy) != 3:
                continue
            controllers = hierarchy[1].split(",")
            v1 = fstype == "cgroup" and "cpu" in controllers and "cpu" in options.split(",")
            v2 = fstype == "cgroup2" and hierarchy[0] == "0"
            if not (v1 or v2):
                continue
            relative = os.path.relpath(hierarchy[2], root) if hierarchy[2].startswith(root) else hierarchy[2]
            path = Path(point) / relative.lstrip("/") if relative != "." else Path(point)
            if v1 or (path / "cpu.max").exists():
                return CpuCgroup(path, 1 if v1 else 2)
    return None


def cgroup_quota_cores(cgroup: CpuCgroup) -> float | None:
    """The cgroup's CPU quota in cores (0.2: a fifth of one core); None without a quota."""
    try:
        if cgroup.version == 1:
            quota_us = int((cgroup.path / "cpu.cfs_quota_us").read_text())
            period_us = int((cgroup.path / "cpu.cfs_period_us").read_text())
        else:
            quota, period = (cgroup.path / "cpu.max").read_text().split()
            if quota == "max":
                return None
            quota_us, period_us = int(quota), int(period)
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def cgroup_throttled_s(cgroup: CpuCgroup) -> float | None:
    """The cgroup's throttled time so far (v1 `throttled_time` ns, v2 `throttled_usec`)."""
    key, per_s = ("throttled_time", 1e9) if cgroup.version == 1 else ("throttled_usec", 1e6)
    try:
        for line in (cgroup.path / "cpu.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value) / per_s
    except (OSError, ValueError):
        return None
    return None
