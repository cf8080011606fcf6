"""Files only their owner may read (secrets, and images that carry them): 0600 from the first
byte, written to a temporary name and renamed, so no reader sees them half-written or open."""
import os
from pathlib import Path


def write_private(path, data):
    """Write `data` (str or bytes) to `path` atomically with mode 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
