"""The node's own CPU headroom (server/headroom.py): pure figures from FAKE readings and a patched
clock, the cgroup and schedstat readers on FAKE /proc files, and the real reader on this machine."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from netcheck.server.headroom import (
    CpuCgroup,
    CpuCounters,
    CpuHeadroom,
    ShortOfCpu,
    cgroup_quota_cores,
    cgroup_throttled_s,
    cpu_cgroup,
    node_load,
    read_counters,
    thread_waits,
)


def counters(at_s: float, loop_s: float = 0.0, process_s: float = 0.0,
             waits: dict[int, tuple[float, int]] | None = None, throttled_s: float | None = None,
             cores: float = 2.0) -> CpuCounters:
    return CpuCounters(at_s, loop_s, process_s, waits or {}, throttled_s, cores)


# --- node_load: pure ---------------------------------------------------------------------------------------

def test_a_node_beside_busy_processes_that_still_gets_the_cpu_it_needs_is_not_short() -> None:
    """As measured beside two burners: its loop at 25 % of a core, its threads waiting 3 % (nice 19) or
    even 40 % (nice 0) of the time, but each time for a slice at most — about a millisecond — and the
    loop a few ms late. The machine is full; the node is not short."""
    for waited_s in (0.03, 0.40):
        load = node_load(counters(10.0, 1.0, 1.5, {1: (0.5, 1000), 2: (0.1, 50)}),
                         counters(11.0, 1.25, 1.9, {1: (0.5 + waited_s, 1300), 2: (0.1, 60)}), loop_lag_ms=3.0)
        assert (load.loop_cpu_pct, load.process_cpu_pct) == (25.0, 20.0) and load.wait_per_run_ms < 1.5
        assert not load.short_of_cpu and load.reason() == "not short of CPU"


def test_a_node_held_to_a_quota_it_exhausts_is_short_of_cpu() -> None:
    """As measured with a cgroup quota of 5 % of a core and a need of 25 %: it used all of its quota,
    the quota held it back 80 % of the time, each run waited ≈ 14 ms and the loop ran 50 ms late."""
    load = node_load(counters(0.0, 0.0, 0.0, {7: (1.0, 100)}, throttled_s=3.0, cores=0.05),
                     counters(1.0, 0.05, 0.05, {7: (1.8, 157)}, throttled_s=3.8, cores=0.05), loop_lag_ms=50.0)
    assert load.short_of_cpu and load.process_cpu_pct == 100.0 and load.throttled_pct == 80.0
    assert load.wait_per_run_ms == 14.04
    assert load.reason() == ("short of CPU: it uses 100 % of the CPU it may use, it waited 14 ms for a CPU each "
                             "time it could run, its CPU quota held it back 80 % of the time, its event loop "
                             "runs 50 ms late")


def test_each_figure_alone_makes_the_node_short() -> None:
    limits = ShortOfCpu()
    saturated_loop = node_load(counters(0.0), counters(1.0, loop_s=0.9, process_s=0.9), 0.0, limits)
    assert saturated_loop.short_of_cpu and "event loop uses 90 % of a core" in saturated_loop.reason()
    late_loop = node_load(counters(0.0), counters(1.0), loop_lag_ms=25.0, limits=limits)
    assert late_loop.short_of_cpu and "runs 25 ms late" in late_loop.reason()
    all_cores = node_load(counters(0.0, cores=2.0), counters(1.0, 0.5, 1.8, cores=2.0), 0.0, limits)
    assert all_cores.short_of_cpu and all_cores.process_cpu_pct == 90.0
    slow_runs = node_load(counters(0.0, waits={1: (0.0, 0)}), counters(1.0, waits={1: (0.3, 25)}), 0.0, limits)
    assert slow_runs.short_of_cpu and slow_runs.wait_per_run_ms == 12.0
    throttled = node_load(counters(0.0, throttled_s=0.0), counters(1.0, throttled_s=0.15), 0.0, limits)
    assert throttled.short_of_cpu and "held it back 15 %" in throttled.reason()
    just_under = node_load(counters(0.0, waits={1: (0.0, 0)}, throttled_s=0.0, cores=2.0),
                           counters(1.0, 0.84, 1.68, {1: (0.099, 10)}, throttled_s=0.09, cores=2.0), 19.9, limits)
    assert not just_under.short_of_cpu, just_under


def test_waiting_is_per_run_over_all_threads_not_a_sum_of_their_waits() -> None:
    """Ten encoder threads each waiting 50 ms over 50 runs wait 1 ms a run, not half a second; a thread
    born since the last reading counts from its start; one gone since is not counted."""
    before = counters(0.0, waits={tid: (1.0, 100) for tid in range(10)} | {99: (5.0, 10)})
    after = counters(1.0, waits={tid: (1.05, 150) for tid in range(10)} | {42: (0.0, 0)})
    assert node_load(before, after, 0.0).wait_per_run_ms == 1.0


# --- CpuHeadroom: a FAKE reader and a patched clock ----------------------------------------------------------

class FakeNode:
    """FAKE readings: a node whose thread runs 100 times a second and waits `wait_ms` each time."""

    def __init__(self) -> None:
        self.now_s = 100.0
        self.waited_s = 0.0
        self.runs = 0
        self.wait_ms = 0.5

    def read(self) -> CpuCounters:
        return counters(self.now_s, waits={1: (self.waited_s, self.runs)})

    def advance(self, seconds: float) -> None:
        self.now_s += seconds
        self.runs += int(100 * seconds)
        self.waited_s += 100 * seconds * self.wait_ms / 1000.0


def test_the_headroom_remembers_when_the_node_was_short_and_marks_what_ran_meanwhile() -> None:
    node = FakeNode()
    headroom = CpuHeadroom(node.read, clock=lambda: node.now_s)
    for _ in range(3):
        node.advance(1.0)
        headroom.sample()
    assert not headroom.busy and headroom.short_ago_s() is None and headroom.short_s_total == 0.0
    call_started_s = node.now_s
    node.wait_ms = 30.0
    node.advance(1.0)
    headroom.sample()
    assert headroom.busy and "waited 30 ms" in headroom.load.reason(headroom.limits)
    node.wait_ms = 0.5
    for _ in range(5):
        node.advance(1.0)
        headroom.sample()
    assert not headroom.busy  # admits again once a second passes with room
    assert headroom.during(call_started_s).short_of_cpu  # ... but the call that ran through it is marked
    assert not headroom.during(node.now_s - 4.5).short_of_cpu  # a later one is not
    assert headroom.short_ago_s() == 5.0 and headroom.short_s_total == 1.0


def test_the_loops_lag_is_its_typical_lateness_over_a_sample() -> None:
    """One stall (an import, a garbage collection) is not a node short of CPU; a loop late all the time is."""
    node = FakeNode()
    headroom = CpuHeadroom(node.read, clock=lambda: node.now_s)
    for late_ms in [500.0] + [1.0] * 10:
        headroom.note_lag(late_ms)
    node.advance(1.0)
    assert headroom.sample().loop_lag_ms == 1.0 and not headroom.busy
    for _ in range(20):
        headroom.note_lag(45.0)
    node.advance(1.0)
    assert headroom.sample().loop_lag_ms == 45.0 and headroom.busy


def test_the_headrooms_memory_is_bounded() -> None:
    node = FakeNode()
    headroom = CpuHeadroom(node.read, clock=lambda: node.now_s)
    for _ in range(1000):
        node.advance(1.0)
        headroom.sample()
    assert len(headroom.history) == 120


# --- the readers: FAKE /proc and cgroup files -----------------------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_hybrid_machine_finds_the_v1_cpu_controller_and_its_quota(tmp_path: Path) -> None:
    """As this machine: v1 controllers, among them `cpu`, and a v2 `unified` hierarchy without it."""
    group = tmp_path / "sys/fs/cgroup/cpu/netcheck-node"
    write(group / "cpu.cfs_quota_us", "20000\n")
    write(group / "cpu.cfs_period_us", "100000\n")
    write(group / "cpu.stat", "nr_periods 10\nnr_throttled 4\nthrottled_time 350000000\n")
    proc_cgroup = write(tmp_path / "cgroup", "4:memory:/x\n2:cpuacct:/\n1:cpu:/netcheck-node\n0::/\n")
    mountinfo = write(tmp_path / "mountinfo", "\n".join([
        f"30 25 0:26 / {tmp_path}/sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw",
        f"31 25 0:27 / {tmp_path}/sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct",
        f"32 25 0:28 / {tmp_path}/sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu",
    ]) + "\n")
    found = cpu_cgroup(proc_cgroup, mountinfo)
    assert found == CpuCgroup(group, 1)
    assert cgroup_quota_cores(found) == 0.2 and cgroup_throttled_s(found) == 0.35


def test_a_v2_group_with_cpu_max(tmp_path: Path) -> None:
    group = tmp_path / "cg/system.slice/node.service"
    write(group / "cpu.max", "50000 100000\n")
    write(group / "cpu.stat", "usage_usec 10\nthrottled_usec 1500000\n")
    proc_cgroup = write(tmp_path / "cgroup", "0::/system.slice/node.service\n")
    mountinfo = write(tmp_path / "mountinfo", f"30 25 0:26 / {tmp_path}/cg rw - cgroup2 cgroup2 rw\n")
    found = cpu_cgroup(proc_cgroup, mountinfo)
    assert found == CpuCgroup(group, 2) and cgroup_quota_cores(found) == 0.5 and cgroup_throttled_s(found) == 1.5
    write(group / "cpu.max", "max 100000\n")
    assert cgroup_quota_cores(found) is None
    assert cpu_cgroup(tmp_path / "missing", mountinfo) is None


def test_thread_waits_come_from_each_threads_schedstat(tmp_path: Path) -> None:
    write(tmp_path / "101/schedstat", "5000000 250000000 12\n")
    write(tmp_path / "102/schedstat", "1 2000000000 3\n")
    write(tmp_path / "103/schedstat", "garbage\n")
    assert thread_waits(tmp_path) == {101: (0.25, 12), 102: (2.0, 3)}
    assert thread_waits(tmp_path / "absent") == {}


def test_the_real_reader_sees_this_process_and_its_threads() -> None:
    """Not a fake: /proc on this machine. A thread that spins shows in the process's CPU, not the loop's.
    The thread spins until it has had 0.15 s of CPU (a busy machine gives it its share later, not less)."""
    def spin(cpu_s: float = 0.15, deadline_s: float = 10.0) -> None:
        started_cpu_s, started_s = time.thread_time(), time.monotonic()
        while time.thread_time() - started_cpu_s < cpu_s and time.monotonic() - started_s < deadline_s:
            pass

    spinner = threading.Thread(target=spin, daemon=True)
    before = read_counters()
    spinner.start()
    spinner.join()
    after = read_counters()
    assert after.cores >= 1.0 and threading.get_native_id() in after.thread_waits
    assert after.process_cpu_s - before.process_cpu_s >= 0.1
    assert after.loop_cpu_s - before.loop_cpu_s < 0.1  # this thread slept
