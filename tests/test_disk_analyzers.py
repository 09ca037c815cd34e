"""The disk analyzers (web.disk, pg.disk) on real df output: tmpfs, overlay and container roots count,
pseudo file systems and read-only images do not, df -i reports inodes, and an empty df is no data."""

from __future__ import annotations

from squads.brain.analyzers import Output
from squads.brain.analyzers.common import real_filesystems
from squads.brain.models import Severity
from squads.brain.parsers.system import parse_df
from squads.bundles.database.analyzers import disk as pg_disk
from squads.bundles.webserver.analyzers import disk as web_disk

# `df -h` in a Docker container whose nginx logs live on a 16 MiB tmpfs (docker run --tmpfs).
CONTAINER_DF = """\
Filesystem      Size  Used Avail Use% Mounted on
overlay          59G   31G   26G  55% /
tmpfs            64M     0   64M   0% /dev
shm              64M     0   64M   0% /dev/shm
/dev/vda1        59G   31G   26G  55% /etc/hosts
tmpfs            16M   16M     0 100% /var/log/nginx
tmpfs           3.9G     0  3.9G   0% /proc/acpi
"""

# `df -hT` on a host with snaps, Docker and a full container root under /var/lib/docker.
HOST_DF_T = """\
Filesystem     Type      Size  Used Avail Use% Mounted on
udev           devtmpfs  3.9G     0  3.9G   0% /dev
tmpfs          tmpfs     796M  1.6M  794M   1% /run
/dev/sda2      ext4       98G   41G   53G  44% /
/dev/loop0     squashfs   64M   64M     0 100% /snap/core20/2105
/dev/sda1      vfat      511M  6.1M  505M   2% /boot/efi
overlay        overlay    98G   41G   53G  44% /var/lib/docker/overlay2/5c1e/merged
"""


def _out(stdout: str, argv: list[str] | None = None) -> Output:
    return Output(argv=argv or ["df", "-h"], exit_code=0, stdout=stdout, stderr="")


def test_full_tmpfs_log_directory_is_the_cause() -> None:
    result = web_disk(_out(CONTAINER_DF), {})
    assert result.facts["full_mounts"] == ["/var/log/nginx"]
    (finding,) = result.findings
    assert finding.code == "disk_full" and finding.severity is Severity.CAUSE
    assert "/var/log/nginx (tmpfs) is 100% full" in finding.text and "It is a tmpfs" in finding.text
    assert "/var/log/nginx 100%" in result.summary


def test_full_container_root_counts() -> None:
    df = CONTAINER_DF.replace("59G   31G   26G  55% /\n", "59G   59G   20M 100% /\n", 1)
    result = pg_disk(_out(df), {})
    full = [f for f in result.findings if f.code == "disk_full"]
    assert [f.data["mount"] for f in full] == ["/", "/var/log/nginx"]
    assert "container's root (overlay)" in full[0].text and "PostgreSQL cannot write WAL" in full[0].text
    assert "PostgreSQL cannot write WAL" not in full[1].text  # a log tmpfs is not the data directory


def test_pseudo_images_and_container_views_are_skipped() -> None:
    kept = [f.mount for f in real_filesystems(parse_df(HOST_DF_T))]
    assert kept == ["/dev", "/run", "/", "/boot/efi"]
    listing = "Filesystem 1K-blocks Used Available Use% Mounted on\nproc 0 0 0 - /proc\nsysfs 0 0 0 - /sys\n" \
              "cgroup2 0 0 0 - /sys/fs/cgroup\n/dev/sda2 102626232 42991172 54379796 45% /\n"
    assert [f.mount for f in real_filesystems(parse_df(listing))] == ["/"]
    assert web_disk(_out(HOST_DF_T, ["df", "-hT"]), {}).findings == []  # the 100% snap is no problem


def test_inodes_from_df_i() -> None:
    df_i = "Filesystem      Inodes   IUsed  IFree IUse% Mounted on\n/dev/sda2      6553600 6553600      0  100% /\n" \
           "tmpfs           1017654       1 1017653    1% /run\n/dev/sdb1            0       0      0     - /data\n"
    result = web_disk(_out(df_i, ["df", "-i"]), {})
    (finding,) = result.findings
    assert finding.code == "disk_full" and "100% of its inodes" in finding.text
    assert result.summary == "/ 100% inodes, /run 1% inodes"


def test_empty_df_is_no_data_not_clean() -> None:
    for analyzer in (web_disk, pg_disk):
        result = analyzer(_out(""), {})
        assert [(f.code, f.severity) for f in result.findings] == [("no_data", Severity.INFO)]
        assert result.findings[0].data == {"check": "disk space"}


def test_shipped_tree_walks_are_bounded() -> None:
    """Every shipped find stays on one file system (-xdev) and every find/du has a time limit of its own,
    so one slow disk cannot take a whole turn (a `find /` once took 11.6 s of a 14 s turn)."""
    from squads.service import load_squads

    walks = [(squad.name, tool) for squad in load_squads().values() for tool in squad.tools
             if tool.argv[0] in ("find", "du")]
    assert {t.name for _, t in walks} >= {"setuid_files", "compliance_setuid", "dir_size"}
    for squad, tool in walks:
        assert tool.timeout_s is not None and tool.timeout_s <= 15, (squad, tool.name)
        if tool.argv[0] == "find":
            assert "-xdev" in tool.argv, (squad, tool.name)
