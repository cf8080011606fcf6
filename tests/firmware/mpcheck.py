# Checks for the MicroPython tests (the unix port has no unittest): each raises an Exception
# that says what it saw, which mprunner.py reports as the test's failure.
import asyncio


def eq(got, want, what=""):
    if got != want:
        raise Exception("%sgot %r, want %r" % (what + ": " if what else "", got, want))


def check(cond, what):
    if not cond:
        raise Exception(what)


def raises(fn, *fragments, exc=ValueError):
    """Call fn(); it must raise exc with every fragment in its message, which is returned."""
    try:
        fn()
    except exc as e:
        for frag in fragments:
            if frag not in str(e):
                raise Exception("%r not in error %r" % (frag, str(e))) from None
        return str(e)
    raise Exception("no %s raised; wanted one with %r" % (exc.__name__, fragments))


async def until(cond, ms=3000):
    """Wait until cond() is true, at most ms; returns cond() at the end."""
    waited = 0
    while not cond() and waited < ms:
        await asyncio.sleep_ms(5)
        waited += 5
    return cond()


class FullFlash:
    """A stand-in for wisp.store's json whose writes fail as on a full LittleFS: ENOSPC after part
    of the file is written (store.json = FullFlash; put the real one back after)."""

    @staticmethod
    def dump(obj, f):
        f.write("{")
        raise OSError(28)

    @staticmethod
    def load(f):
        import json
        return json.load(f)


def all_pages(call, tool, max_pages=64):
    """The whole of a listing tool's answer: calls `tool` through call(name, args), page after page,
    following each "; more: skip=N". Each page must fit a tool result uncut."""
    from wisp import limits
    pages, args = [], {}
    for _ in range(max_pages):
        page = call(tool, args)
        check(len(page) <= limits.MAX_RESULT_TEXT and not page.endswith("..."), "a page was cut: %r" % page)
        pages.append(page)
        if "; more: skip=" not in page:
            return pages
        args = {"skip": int(page.rsplit("=", 1)[1])}
    raise Exception("%s still had more after %d pages" % (tool, max_pages))
