"""Files written whole: to a temporary name, then renamed over the old one, so no reader (a broker
reloading its acl, a device image being flashed) ever sees one half-written. Those only their owner
may read (secrets, and images that carry them) are 0600 from the first byte."""
import os
from pathlib import Path


class WriteError(Exception):
    """The file could not be written (nothing was left behind); the text says where and why."""


def write_private(path, data):
    """Write `data` (str or bytes) to `path` atomically with mode 0600 (write_whole)."""
    write_whole(path, data, 0o600)


def write_whole(path, data, mode=0o644):
    """Write `data` (str or bytes) to `path` atomically with `mode`. On any failure, Ctrl-C
    included, neither `path` nor a temporary file is left changed."""
    path = Path(path)
    tmp = path.with_name("." + path.name + ".tmp")
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            os.fchmod(f.fileno(), mode)   # not left to the umask
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, (FileExistsError, NotADirectoryError)):   # a folder on the way is a file
            raise WriteError(f"cannot write {path}: a part of that path is a file, not a folder") from None
        if isinstance(e, OSError):
            raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
        raise
