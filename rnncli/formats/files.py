"""Writing a file so that nothing is ever half-written, and only over what may be replaced.

A regular file is written atomically: a temp file in the target's folder, fsync, rename over the
target, fsync of the folder, so a crash at any moment leaves the old file or the new one. A
symbolic link keeps being a link: its target is what gets replaced. Anything else at the path (a
device node, a FIFO, a socket, a directory) is never renamed over: a command whose output is a
stream (a PNG plot) writes to it directly; one whose output must be a file refuses with the reason.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from typing import BinaryIO

from rnncli.errors import RnncliError, UsageError

KINDS = {stat.S_IFDIR: "directory", stat.S_IFCHR: "character device", stat.S_IFBLK: "block device",
         stat.S_IFIFO: "FIFO (named pipe)", stat.S_IFSOCK: "socket"}
STREAMS = ("character device", "FIFO (named pipe)")  # what an output that may be a stream is written into


def _kind(path: str) -> str | None:
    """What is at `path` once links are followed: None for a regular file or nothing."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else KINDS.get(stat.S_IFMT(mode), "special file")


def same_file(a: str, b: str) -> bool:
    """Whether paths `a` and `b` name one file: the same inode (through links, hard or symbolic), or
    the same path once links are resolved (a file not made yet)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_writable(path: str, what: str, folder_may_be_made: bool = False, streams: bool = False,
                   inputs: tuple = ()) -> None:
    """Refuse, before any work, a path that `atomic_write` would refuse (a missing folder too,
    unless the caller makes it, as `train` does for its run's files), and an output that is one of
    the command's `inputs` (paths; None and "-" are skipped): writing it would replace what is read."""
    for source in inputs:
        if source not in (None, "", "-") and same_file(path, source):
            raise UsageError(f"{path}: is also this command's input ({source}); writing the {what} there would "
                             "replace it: give another output path")
    kind = _kind(path)
    if streams and kind in STREAMS:
        return
    if kind is not None:
        raise UsageError(f"{path}: is a {kind}, not a regular file; rnncli writes a {what} only to a regular "
                         "file (replaced atomically, never half-written): give a file path")
    folder = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(folder) and not folder_may_be_made:
        raise UsageError(f"{path}: folder {folder} does not exist")


def atomic_write(path: str, write: Callable[[BinaryIO], None], what: str, streams: bool = False) -> None:
    """Write a file through `write(f)`: atomically when `path` is (or will be) a regular file;
    straight into a character device or FIFO when `streams` (else refused); never otherwise."""
    kind = _kind(path)
    if streams and kind in STREAMS:
        try:
            with open(path, "wb") as f:
                write(f)
        except OSError as err:
            raise RnncliError(f"{path}: could not write ({err.strerror or err})") from None
        return
    check_writable(path, what)
    target = os.path.realpath(path)  # a link keeps being a link: its target is replaced
    folder = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(target) + ".", suffix=".tmp", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; the output is an ordinary file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise RnncliError(f"{path}: could not write ({err.strerror or err}); nothing was replaced, "
                              "the previous file is intact") from None
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
