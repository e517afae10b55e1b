"""The client's CPU figure: work that competes with a call, not work that yields to it."""

from __future__ import annotations

from collections import namedtuple

import pytest

from netcheck.probes.system import competing_cpu_pct

LinuxTimes = namedtuple("LinuxTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
WindowsTimes = namedtuple("WindowsTimes", "user system idle interrupt dpc")


def test_low_priority_work_is_left_out_and_normal_work_counts() -> None:
    before = LinuxTimes(100, 50, 20, 800, 5, 1, 1, 0, 0, 0)
    niced = before._replace(nice=before.nice + 180, system=before.system + 10, idle=before.idle + 10)
    assert competing_cpu_pct(before, niced) == 5.0  # 180 s of nice 19 work: the call would still get the CPU
    normal = before._replace(user=before.user + 180, system=before.system + 10, idle=before.idle + 10)
    assert competing_cpu_pct(before, normal) == 95.0
    assert competing_cpu_pct(before, before) is None


def test_without_nice_time_every_busy_tick_counts() -> None:
    before = WindowsTimes(10, 5, 100, 0, 0)
    after = WindowsTimes(60, 15, 140, 0, 0)
    assert competing_cpu_pct(before, after) == 60.0


def test_netchecks_own_cpu_is_not_other_work() -> None:
    """Was: a `--local` check's own test call (≈ 40 % of 2 cores) read as a busy computer; under
    nice-19 burners it crossed 50 % and the check's CI test failed."""
    before = LinuxTimes(100, 50, 20, 800, 5, 1, 1, 0, 0, 0)
    after = before._replace(user=before.user + 80, idle=before.idle + 120)
    assert competing_cpu_pct(before, after) == 40.0
    assert competing_cpu_pct(before, after, own_cpu_s=60.0) == 10.0
    assert competing_cpu_pct(before, after, own_cpu_s=95.0) == 0.0  # clocks read a tick apart never go negative


@pytest.mark.measures  # the kernel's accounting at the process's priority: in a niced run the
# "normal" child is niced too (seen when the suite ran its non-measuring tests at nice 19, stop 33)
def test_netchecks_own_time_is_left_out_only_where_the_kernel_counts_it_as_competing() -> None:
    """At low priority netcheck's own time is `nice` time, already left out: subtracting it again would
    hide that much of other programs' load."""
    import subprocess
    import sys

    code = "from netcheck.probes.system import own_cpu_s; sum(range(3_000_000)); print(own_cpu_s())"
    normal = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    niced = float(subprocess.run(["nice", "-n", "5", sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout)
    assert normal > 0.0 and niced == 0.0
