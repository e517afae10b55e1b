"""A CPU quota for one process, with a cgroup: a node genuinely short of CPU, not a fake one.

    with CpuQuota(cores=0.05) as quota:
        quota.add(process.pid)      # the process and all its threads, from now on

Where the CPU controller is depends on the machine: cgroup v1's `cpu` hierarchy (`cpu.cfs_quota_us`,
this machine: v1 controllers at /sys/fs/cgroup/cpu and a v2 `unified` hierarchy without the cpu
controller), else cgroup v2's `cpu.max` at /sys/fs/cgroup when its root delegates `cpu`. The group's
name carries the pid and a random tag; it is removed on exit (its processes moved back to the root
group first). Root is required: a clear RuntimeError otherwise, never a skip.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from types import TracebackType

V1_CPU = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


class CpuQuota:
    def __init__(self, cores: float) -> None:
        self.cores = cores
        self.root, self.version = _cpu_hierarchy()
        self.path = self.root / f"netcheck-test-{os.getpid()}-{secrets.token_hex(3)}"

    def __enter__(self) -> CpuQuota:
        quota_us = max(1000, int(self.cores * PERIOD_US))
        self.path.mkdir()
        if self.version == 1:
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota_us))
        else:
            (self.path / "cpu.max").write_text(f"{quota_us} {PERIOD_US}")
        return self

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def throttled_s(self) -> float:
        """The group's throttled time so far: the proof that the quota bit."""
        key, per_s = ("throttled_time", 1e9) if self.version == 1 else ("throttled_usec", 1e6)
        for line in (self.path / "cpu.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value) / per_s
        return 0.0

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for pid in (self.path / "cgroup.procs").read_text().split():
            try:
                (self.root / "cgroup.procs").write_text(pid)
            except OSError:
                pass  # it exited meanwhile
        for _ in range(50):  # the kernel frees the group a moment after its last process left
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        self.path.rmdir()


def _cpu_hierarchy() -> tuple[Path, int]:
    if os.geteuid() != 0:
        raise RuntimeError("a CPU quota needs root (cgroups)")
    if (V1_CPU / "cpu.cfs_quota_us").exists():
        return V1_CPU, 1
    controllers = V2_ROOT / "cgroup.subtree_control"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return V2_ROOT, 2
    raise RuntimeError("no cgroup CPU controller to limit a process with (v1 cpu, or v2 cpu.max)")
