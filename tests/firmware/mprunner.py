# Tiny test runner for the MicroPython unix port, which has no unittest.
# `micropython mprunner.py <module>` runs every test_* function of the module (coroutines
# through asyncio) and prints one line per test: "@@PASS <name> <ms>" or "@@FAIL <name>",
# the traceback, "@@END". tests/firmware/conftest.py turns these lines into pytest items.
# Each test runs in a fresh empty directory (its flash root), so no test sees another's files.
import io
import os
import sys
import time


def _run(fn):
    result = fn()
    if type(result).__name__ == "generator":  # an async def test
        import asyncio
        asyncio.run(result)


def main(modname):
    mod = __import__(modname)
    names = sorted(n for n in dir(mod) if n.startswith("test_"))
    top = os.getcwd()  # a temp dir of the conftest's, removed with everything in it
    for i, name in enumerate(names):
        root = "%s/flash%d" % (top, i)
        os.mkdir(root)
        os.chdir(root)
        t0 = time.ticks_ms()
        try:
            _run(getattr(mod, name))
            print("@@PASS", name, time.ticks_diff(time.ticks_ms(), t0))
        except Exception as e:
            buf = io.StringIO()
            sys.print_exception(e, buf)
            print("@@FAIL", name)
            print(buf.getvalue())
            print("@@END")
        os.chdir(top)


main(sys.argv[1])
