"""
workers = auto counts the cores this process may use: its CPU affinity,
capped by the tightest cgroup CPU quota above it (v2 and v1), found through
mountinfo as Linux shows it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wsdaemon.cores import Cores, usable_cores

AFFINITY = len(os.sched_getaffinity(0))

V2_MOUNTINFO = ("30 23 0:26 / {root}/cgroup rw,nosuid,nodev,noexec,relatime shared:4 "
                "- cgroup2 cgroup2 rw,nsdelegate\n")
V1_MOUNTINFO = ("31 23 0:28 / {root}/fs rw,relatime - tmpfs tmpfs rw,mode=755\n"
                "32 31 0:29 / {root}/cpu,cpuacct rw,relatime shared:9 "
                "- cgroup cgroup rw,cpu,cpuacct\n"
                "33 31 0:30 / {root}/memory rw,relatime - cgroup cgroup rw,memory\n")


def fake(tmp_path: Path, mountinfo: str, cgroup: str) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text(mountinfo.format(root=tmp_path))
    (proc / "cgroup").write_text(cgroup)
    return proc


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_quota_rounds_up(tmp_path: Path) -> None:
    """systemd's CPUQuota=150% on the service's cgroup: 2 workers, not one per core."""
    proc = fake(tmp_path, V2_MOUNTINFO, "0::/system.slice/wsdaemon.service\n")
    write(tmp_path / "cgroup/cpu.max", "max 100000\n")
    write(tmp_path / "cgroup/system.slice/cpu.max", "max 100000\n")
    write(tmp_path / "cgroup/system.slice/wsdaemon.service/cpu.max", "150000 100000\n")
    cores = usable_cores(proc)
    assert cores.quota == 1.5
    assert cores.usable == min(AFFINITY, 2)
    assert "cgroup quota 1.5 CPU(s)" in str(cores)


def test_the_tightest_quota_above_counts(tmp_path: Path) -> None:
    """A parent slice's quota limits every cgroup below it."""
    proc = fake(tmp_path, V2_MOUNTINFO, "0::/machine.slice/box\n")
    write(tmp_path / "cgroup/machine.slice/cpu.max", "50000 100000\n")
    write(tmp_path / "cgroup/machine.slice/box/cpu.max", "400000 100000\n")
    assert usable_cores(proc).quota == 0.5
    assert usable_cores(proc).usable == 1


def test_no_quota_means_the_affinity(tmp_path: Path) -> None:
    """cpu.max "max": every core the process may run on."""
    proc = fake(tmp_path, V2_MOUNTINFO, "0::/\n")
    write(tmp_path / "cgroup/cpu.max", "max 100000\n")
    assert usable_cores(proc) == Cores(AFFINITY, None)
    assert usable_cores(proc).usable == AFFINITY


def test_v1_cfs_quota(tmp_path: Path) -> None:
    """cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us on the mount carrying cpu; -1 is none."""
    proc = fake(tmp_path, V1_MOUNTINFO,
                "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    write(tmp_path / "cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    write(tmp_path / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "100000\n")
    write(tmp_path / "cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    write(tmp_path / "memory/docker/abc/cpu.cfs_quota_us", "1\n")  # not the cpu controller
    assert usable_cores(proc).quota == 1.0


def test_a_namespaced_view_reads_the_mount_root(tmp_path: Path) -> None:
    """In a container the cgroup path may lie outside the mount's root: the root's limit counts."""
    mountinfo = "30 23 0:26 /docker/abc {root}/cgroup rw - cgroup2 cgroup2 rw\n"
    proc = fake(tmp_path, mountinfo, "0::/elsewhere\n")
    write(tmp_path / "cgroup/cpu.max", "200000 100000\n")
    assert usable_cores(proc).quota == 2.0


@pytest.mark.parametrize("cpu_max", ["", "garbage", "100000 0", "-5 x", "-5 100000"])
def test_unreadable_limits_count_as_none(tmp_path: Path, cpu_max: str) -> None:
    """A file that cannot be understood never stops the daemon: no quota."""
    proc = fake(tmp_path, V2_MOUNTINFO, "0::/\n")
    write(tmp_path / "cgroup/cpu.max", cpu_max)
    assert usable_cores(proc).quota is None


def test_no_proc_files(tmp_path: Path) -> None:
    """Without /proc (or its cgroup files): the affinity alone."""
    assert usable_cores(tmp_path / "missing") == Cores(AFFINITY, None)


def test_this_machine() -> None:
    """Here, whatever the cgroups say, at least one and at most the affinity."""
    assert 1 <= usable_cores().usable <= AFFINITY
