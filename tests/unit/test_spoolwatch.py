"""Which spools the watcher can be trusted with alone: a local file system (a long safety
rescan) or a network one, where other machines' writes raise no inotify event."""

from __future__ import annotations

from pathlib import Path

from bantzd.supervisor.spoolwatch import on_local_filesystem

MOUNTS = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 0:50 / /home rw,relatime - nfs4 server:/home rw,vers=4.2
41 40 0:51 / /home/me/local rw,relatime - xfs /dev/vdb rw
42 27 0:52 / /mnt/my\\040box rw - fuse.sshfs me@box: rw
"""


def test_the_longest_mount_prefix_decides(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTS)
    assert on_local_filesystem(Path("/var/tmp/home/spool"), str(info))
    assert not on_local_filesystem(Path("/home/me/.bantz/spool"), str(info))
    assert on_local_filesystem(Path("/home/me/local/spool"), str(info))
    assert not on_local_filesystem(Path("/home/melocal/spool"), str(info))  # not under it
    assert not on_local_filesystem(Path("/mnt/my box/spool"), str(info))  # FUSE: remote


def test_unknown_means_not_local(tmp_path: Path) -> None:
    assert not on_local_filesystem(Path("/x"), str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("")
    assert not on_local_filesystem(Path("/x"), str(tmp_path / "empty"))
