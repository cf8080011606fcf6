# Atomic JSON persistence on the flash root: a power cut mid-save leaves the old file or the
# new one, never a torn one. save() writes <name>.tmp fully, then renames it over <name>.json.
import json
import os

_sync = getattr(os, "sync", None)  # ESP32 has it; the unix port relies on the host's fsync
_INF = float("inf")


def remove(path):
    """Delete a file if it is there; a missing one is not an error."""
    try:
        os.remove(path)
    except OSError:
        pass


def _read(path, whole=False):
    """The JSON in path; whole: only if it ends in the newline save() writes last (else ValueError)."""
    with open(path) as f:
        obj = json.load(f)
        if whole:
            f.seek(-1, 2)
            if f.read(1) != "\n":
                raise ValueError
    return obj


def check_plain(obj):
    """Raise TypeError unless obj is plain JSON. MicroPython's json writes repr() of other objects
    and "nan"/"inf" (1e999 parses as inf): a file no load can read."""
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str):
                raise TypeError("store: key %r is not a string" % (k,))
            check_plain(obj[k])
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            check_plain(v)
    elif isinstance(obj, float):
        if obj != obj or obj in (_INF, -_INF):
            raise TypeError("store: %r is not a JSON number" % obj)
    elif not (obj is None or isinstance(obj, (str, int, bool))):
        raise TypeError("store: %s is not JSON" % type(obj).__name__)


def names(v):
    """The set of strings in the saved list v (names, keys); anything else (hand-edited) is left out."""
    return set(x for x in v if isinstance(x, str)) if isinstance(v, list) else set()


def load(name, default, log=print):
    """The saved object, or `default` when there is none or it cannot be read (reported, never raised;
    only a MemoryError is, which leaves the files as they are)."""
    path, tmp = name + ".json", name + ".tmp"
    try:
        os.stat(path)
    except OSError:
        # No .json but a .tmp: on FAT a rename is unlink + rename, and a cut between the two
        # leaves only the new file. A .tmp that ends in the newline save() writes last was fully
        # written (parsing is no proof: MicroPython before 1.26 reads '{"n": 1, "m"' as {"n": 1}).
        try:
            obj = _read(tmp, True)
        except MemoryError:
            raise  # as below: the .tmp may be the only copy
        except Exception:
            remove(tmp)
            return default
        try:
            os.rename(tmp, path)
        except OSError:
            pass  # still the state; the next save writes the .json
        log("store: %s recovered from an interrupted save" % path)
        return obj
    remove(tmp)  # a save cut short before its rename: the .json still holds the last good state
    try:
        return _read(path)
    except MemoryError:
        raise  # the heap is short now, the file is fine: setting it aside would lose it for nothing
    except Exception as e:  # ValueError (torn/corrupt JSON), OSError: never stop the boot
        try:
            os.rename(path, name + ".bad")
        except OSError:
            pass
        log("store error: %s unreadable (%s); kept as %s.bad, starting empty" % (path, e, name))
        return default


def load_dict(name, log=print):
    """load() of a saved object, or {}: a file of another shape (hand-edited) is no state."""
    obj = load(name, {}, log)
    return obj if isinstance(obj, dict) else {}


def set_aside(name, obj, log):
    """Keep obj, a loaded file the caller drops part of, as <name>.bad for the user. A copy, not a
    rename: until the valid rest is saved, <name>.json must still hold it (a power cut between)."""
    try:
        with open(name + ".bad", "w") as f:
            json.dump(obj, f)
        log("store: %s.json kept aside as %s.bad" % (name, name))
    except OSError as e:
        log("store error: %s.json not kept aside: %s" % (name, e))


def save(name, obj):
    """Write obj as <name>.json atomically. Raises OSError (flash full) or TypeError (not JSON)."""
    check_plain(obj)
    tmp = name + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f)
            f.write("\n")  # last: the mark of a whole file (load)
            f.flush()
        if _sync:
            _sync()
        os.rename(tmp, name + ".json")  # atomic on LittleFS and POSIX: old or new, nothing between
    except Exception:
        remove(tmp)
        raise
