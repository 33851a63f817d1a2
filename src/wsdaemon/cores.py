"""
How many cores this process may really use: what C{workers = auto} means.

Not C{os.cpu_count()}: a service is often given less than the machine. Its
CPU affinity (systemd's C{CPUAffinity=}, C{taskset}) limits which cores it
runs on, and a cgroup CPU quota (systemd's C{CPUQuota=150%}, a container's
C{--cpus=1.5}) limits how much of them it gets. The quota is read from the
cgroup of this process and every cgroup above it (the tightest one counts),
on cgroup v2 (C{cpu.max}) and v1 (C{cpu.cfs_quota_us} / C{cpu.cfs_period_us}),
found through C{/proc/self/mountinfo}; a fraction rounds up (1.5 CPUs: 2
workers). Anything unreadable counts as no quota.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["Cores", "usable_cores"]


@dataclass(frozen=True)
class Cores:
    """
    @ivar affinity: cores the process may run on.
    @ivar quota: CPUs' worth of time its cgroups allow (None: no quota).
    """

    affinity: int
    quota: float | None

    @property
    def usable(self) -> int:
        if self.quota is None:
            return self.affinity
        return max(1, min(self.affinity, math.ceil(self.quota)))

    def __str__(self) -> str:
        if self.quota is None:
            return f"{self.affinity} core(s)"
        return f"{self.affinity} core(s), cgroup quota {self.quota:g} CPU(s)"


def usable_cores(proc: Path = Path("/proc/self")) -> Cores:
    """
    @param proc: where this process's C{cgroup} and C{mountinfo} are.
    """
    if hasattr(os, "sched_getaffinity"):
        affinity = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - not Linux
        affinity = os.cpu_count() or 1
    try:
        quota = _quota(proc)
    except (OSError, ValueError):
        quota = None
    return Cores(max(1, affinity), quota)


def _quota(proc: Path) -> float | None:
    mounts = list(_cgroup_mounts((proc / "mountinfo").read_text()))
    limits: list[float] = []
    for line in (proc / "cgroup").read_text().splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not number:
            continue
        v2 = number == "0" and controllers == ""
        if not v2 and "cpu" not in controllers.split(","):
            continue
        for version, root, mountpoint in mounts:
            if version == (2 if v2 else 1):
                limit = _tightest(version, _inside(mountpoint, root, path))
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def _cgroup_mounts(mountinfo: str) -> Iterator[tuple[int, str, Path]]:
    """
    (cgroup version, cgroup root of the mount, mount point) of every cgroup2
    mount and every v1 mount carrying the C{cpu} controller.
    """
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        separator = fields.index("-")  # then: type, source, super options
        if separator < 5 or len(fields) < separator + 4:
            continue
        root, mountpoint = fields[3], fields[4]
        fstype, options = fields[separator + 1], fields[separator + 3].split(",")
        if fstype == "cgroup2":
            yield 2, root, Path(mountpoint)
        elif fstype == "cgroup" and "cpu" in options:
            yield 1, root, Path(mountpoint)


def _inside(mountpoint: Path, root: str, path: str) -> list[Path]:
    """
    The directories of cgroup C{path} and its ancestors under a mount whose
    own root is C{root}, the innermost first.
    """
    relative = PurePosixPath(path)
    mount_root = PurePosixPath(root)
    if relative.is_relative_to(mount_root):
        relative = relative.relative_to(mount_root)
    else:  # another namespace's view: only the mount's own root is ours
        relative = PurePosixPath(".")
    parts = [part for part in relative.parts if part not in ("/", ".")]
    return [mountpoint.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _tightest(version: int, directories: list[Path]) -> float | None:
    limits = [limit for limit in (_limit(version, d) for d in directories) if limit is not None]
    return min(limits) if limits else None


def _limit(version: int, directory: Path) -> float | None:
    try:
        if version == 2:
            quota, _, period = (directory / "cpu.max").read_text().strip().partition(" ")
            if quota == "max" or int(quota) <= 0:
                return None
            return int(quota) / int(period or "100000")
        quota_us = int((directory / "cpu.cfs_quota_us").read_text())
        if quota_us <= 0:
            return None
        return quota_us / int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, ZeroDivisionError):
        return None
