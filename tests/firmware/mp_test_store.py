# wisp.store: atomic JSON files on the flash root; torn or corrupt files never stop a boot.
import os

from mpcheck import FullFlash, eq

from wisp import store


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _read(path):
    with open(path) as f:
        return f.read()


def test_save_then_load_round_trips_and_leaves_no_temp_file():
    store.save("rt", {"a": [1, 2.5, "x"], "b": True})
    eq(store.load("rt", None), {"a": [1, 2.5, "x"], "b": True})
    if _exists("rt.tmp"):
        raise Exception("rt.tmp left behind")


def test_missing_file_gives_the_default_silently():
    lines = []
    eq(store.load("nothing_here", {"empty": 1}, lines.append), {"empty": 1})
    eq(lines, [])


def test_corrupt_file_is_kept_aside_reported_and_default_returned():
    _write("bad.json", '{"facts": [["a", 1], ["b"')
    lines = []
    eq(store.load("bad", "default", lines.append), "default")
    if len(lines) != 1 or "bad.json" not in lines[0] or "bad.bad" not in lines[0]:
        raise Exception(lines)
    eq(_read("bad.bad"), '{"facts": [["a", 1], ["b"')
    if _exists("bad.json"):
        raise Exception("corrupt file still in place")
    store.save("bad", {"fresh": 1})  # the next save starts clean
    eq(store.load("bad", None), {"fresh": 1})


def test_torn_temp_file_from_a_power_cut_is_ignored_and_removed():
    store.save("cut", {"n": 1})
    _write("cut.tmp", '{"n": 2, "more"')
    eq(store.load("cut", None), {"n": 1})
    if _exists("cut.tmp"):
        raise Exception("torn cut.tmp not removed")


def _lone_tmp(name, obj):
    """The .tmp a save of obj leaves when a cut lands between FAT's unlink and rename; its text."""
    store.save(name, obj)
    os.rename(name + ".json", name + ".tmp")
    return _read(name + ".tmp")


def test_complete_temp_file_without_json_is_recovered():
    # FAT renames by unlink + rename; a cut between the two leaves only the finished .tmp
    _lone_tmp("fat", {"n": 7})
    lines = []
    eq(store.load("fat", None, lines.append), {"n": 7})
    if not _exists("fat.json") or _exists("fat.tmp") or "recovered" not in lines[0]:
        raise Exception("not recovered: %r" % lines)
    _write("fat2.tmp", '{"n": 7')
    eq(store.load("fat2", "d"), "d")
    if _exists("fat2.tmp") or _exists("fat2.json"):
        raise Exception("torn fat2.tmp not cleaned up")


def test_a_first_save_cut_anywhere_is_never_taken_for_a_whole_one():
    # MicroPython before 1.26 parses '{"n": 7, "facts": [["a", 1]]' as {"n": 7, "facts": [["a", 1]]}
    whole = _lone_tmp("cut", {"n": 7, "facts": [["a", 1], ["b", "x"]], "on": True})
    for n in range(len(whole)):
        _write("cut.tmp", whole[:n])
        eq((n, store.load("cut", "d")), (n, "d"))
        if _exists("cut.tmp") or _exists("cut.json"):
            raise Exception("torn cut.tmp of %d characters not cleaned up" % n)
    _write("cut.tmp", whole)
    eq(store.load("cut", "d", lambda line: None), {"n": 7, "facts": [["a", 1], ["b", "x"]], "on": True})


def test_save_of_something_not_json_raises_and_keeps_the_old_file():
    store.save("keep", {"n": 1})
    try:
        store.save("keep", {"n": object()})
    except TypeError:
        pass
    else:
        raise Exception("no TypeError")
    eq(store.load("keep", None), {"n": 1})
    if _exists("keep.tmp"):
        raise Exception("keep.tmp left behind")


def test_nan_is_refused_rather_than_written_as_unreadable_json():
    store.save("nan", {"n": 1})
    try:
        store.save("nan", {"n": [float("nan")]})
    except TypeError:
        pass
    else:
        raise Exception("no TypeError")
    eq(store.load("nan", None), {"n": 1})


def test_a_heap_too_short_to_read_a_file_keeps_the_file():
    # memory and routines load again after every request: a MemoryError then must not cost the data
    store.save("kept", {"routines": {"night": [{"tool": "gpio_read"}]}})
    real = store._read

    def short_of_heap(*_):
        raise MemoryError("memory allocation failed, allocating 340 bytes")
    store._read = short_of_heap
    try:
        store.load("kept", {}, print)
        raise Exception("the MemoryError was swallowed")
    except MemoryError:
        pass
    finally:
        store._read = real
    eq((_exists("kept.json"), _exists("kept.bad")), (True, False))
    eq(store.load("kept", {}), {"routines": {"night": [{"tool": "gpio_read"}]}})


def test_a_full_flash_raises_and_keeps_the_old_file():
    store.save("full", {"n": 1})
    real, store.json = store.json, FullFlash
    try:
        store.save("full", {"n": 2})
        raise Exception("no OSError")
    except OSError as e:
        eq(e.args[0], 28)
    finally:
        store.json = real
    eq((store.load("full", None), _exists("full.tmp")), ({"n": 1}, False))


def test_a_lone_temp_file_survives_a_heap_too_short_to_read_it():
    # cut between write and rename of a first save (or FAT's unlink + rename): the .tmp is the only copy
    _lone_tmp("only", {"n": 7})
    real = store._read

    def short_of_heap(*_):
        raise MemoryError("memory allocation failed, allocating 340 bytes")
    store._read = short_of_heap
    try:
        store.load("only", {})
        raise Exception("the MemoryError was swallowed")
    except MemoryError:
        pass
    finally:
        store._read = real
    eq(_exists("only.tmp"), True)
    eq(store.load("only", {}), {"n": 7})
