"""Whether other bridges on this host use the same SQLite cost file, told by locks on a file beside it
(`cost.db-bridges`), so that a lone bridge pays nothing for claims it does not need (claims.py).

Each bridge holds a shared lock on byte IN_USE for as long as it has the file open, and one on byte UNCLAIMED
while it answers requests it has not claimed in the file (it believed it was alone). A bridge takes UNCLAIMED
before it looks for others, so one that arrives meanwhile finds it either there or unclaimed. Locks are
open-file-description locks (Linux F_OFD_*): the kernel drops them when their bridge exits, however it exits,
and two bridges in one process see each other. Where such locks do not exist every bridge claims, as if it
always had company. Every call is one non-blocking system call.
"""
from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

try:
    import fcntl
    _OFD = hasattr(fcntl, "F_OFD_GETLK")
except ImportError:  # Windows
    _OFD = False

log = logging.getLogger("wisp.bridge.filepeers")

IN_USE, UNCLAIMED = 0, 1  # the bytes locked (see above)
_FLOCK = "hhqqi"  # struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks)


class FilePeers:
    """alone: no other bridge used the file when this one looked last. It only ever turns False: from then on
    this bridge claims every request in the file."""

    def __init__(self, db_path: Path):
        self._fd: int | None = None
        self.alone = False
        if not _OFD:
            return
        try:
            self._fd = os.open(f"{db_path}-bridges", os.O_RDWR | os.O_CREAT, 0o644)
            self._lock(IN_USE, fcntl.F_RDLCK)
            self.alone = not self._others(IN_USE)
        except OSError as e:  # a file system without these locks: claim every request
            log.warning("cannot tell whether other bridges use %s (%s): every request is claimed in it", db_path, e)
            self.close()

    def hold_unclaimed(self) -> None:
        """Before answering a request unclaimed: say so (then look with others_arrived())."""
        self._set(UNCLAIMED, fcntl.F_RDLCK)

    def drop_unclaimed(self) -> None:
        """No request is answered unclaimed any more: a bridge waiting in others_unclaimed() may go on."""
        self._set(UNCLAIMED, fcntl.F_UNLCK)

    def others_arrived(self) -> bool:
        """Another bridge uses the file (then stop answering unclaimed, and say so with drop_unclaimed())."""
        try:
            return self._fd is not None and self._others(IN_USE)
        except OSError:
            return True

    def others_unclaimed(self) -> bool:
        """Another bridge answers requests it has not claimed in the file: wait for it before taking any."""
        try:
            return self._fd is not None and self._others(UNCLAIMED)
        except OSError:
            return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops this bridge's locks
            self._fd = None
        self.alone = False

    def _set(self, byte: int, kind: int) -> None:
        if self._fd is None:
            return
        try:
            self._lock(byte, kind)
        except OSError as e:
            log.warning("lock on the bridges' file: %s", e)

    def _lock(self, byte: int, kind: int) -> None:
        fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, struct.pack(_FLOCK, kind, os.SEEK_SET, byte, 1, 0))

    def _others(self, byte: int) -> bool:
        """Another open file description holds a lock on the byte (this one's own locks never count)."""
        got = fcntl.fcntl(self._fd, fcntl.F_OFD_GETLK, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0))
        return struct.unpack(_FLOCK, got)[0] != fcntl.F_UNLCK
