# What a request loads and drops goes back to the heap: memory and routines after Device.rest,
# a module after wisp.unload. MicroPython's delattr on an instance leaves the old value in the
# freed slot of its dict, where the collector still finds it: dropped memory stayed whole.
import gc
import sys

from fakeboard import make_device

import wisp
from wisp import unload


class _Loaded:
    """Stands in for the loaded memory or routines: big enough to see in gc.mem_alloc()."""
    keep = 0

    def __init__(self):
        self.data = bytearray(40000)


def _used():
    gc.collect()
    gc.collect()
    return gc.mem_alloc()


def _use(dev):  # in its own frame: no stale pointer on this test's stack
    dev.memory = _Loaded()
    dev.routines = _Loaded()


def test_rest_gives_the_heap_of_memory_and_routines_back():
    dev = make_device()
    before = _used()
    _use(dev)
    dev.rest()
    kept = _used() - before
    if "memory" in dev.__dict__ or "routines" in dev.__dict__ or kept > 4096:
        raise Exception("after rest %d bytes stay held" % kept)


def test_rest_keeps_what_must_stay():
    dev = make_device()
    _use(dev)
    dev.memory.keep = 1  # e.g. a read reordered the facts, not yet saved
    dev.rest()
    if "memory" not in dev.__dict__ or "routines" in dev.__dict__:
        raise Exception(sorted(dev.__dict__))


def _load_big():
    big = bytearray(40000)  # stands in for a module's code and tables
    sys.modules["wisp.big"] = big
    wisp.big = big          # as `from wisp import big` binds it


def test_an_unloaded_module_gives_its_heap_back():
    before = _used()
    _load_big()
    unload("wisp.big")
    kept = _used() - before
    if "wisp.big" in sys.modules or "big" in wisp.__dict__ or kept > 4096:
        raise Exception("%d bytes stay held after unload" % kept)


def test_the_gpio_tools_stay_for_a_request_and_go_with_it():
    import asyncio

    from wisp import tools
    dev = make_device()
    for name, args in (("gpio_write", {"pin": "porch_light", "value": 1}), ("gpio_read", {"pin": "porch_light"})):
        asyncio.run(tools.run(dev, name, args))
        if "wisp.tools.gpio" not in sys.modules:
            raise Exception("the gpio tools were unloaded between a request's steps")
    dev.rest()  # the request is over: loaded among its objects, the module would be an island
    if "wisp.tools.gpio" in sys.modules:
        raise Exception("the gpio tools stay loaded after the request")
