# wisp: an AI agent for cheap microcontrollers. Kept empty so `import wisp.x` loads only x.
VERSION = "0.1.0"
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"  # job, routine, bound names


def unload(name):
    """Forget a one-shot module (manifest building, define-time checks, cron parsing) so the GC
    can reclaim its heap once nothing else refers to it; the next import loads it again."""
    import sys
    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None and child in getattr(package, "__dict__", {}):
        delattr(package, child)  # `from wisp import x` binds x on the package: drop that too


def flash_text(n):
    """String n of strings.bin beside this file. Release builds move the long strings of function
    bodies there (tools/flashtext.py: the file's format), so a string takes heap only while in use."""
    with open(__file__[:__file__.rfind("/") + 1] + "strings.bin", "rb") as f:  # frozen builds never call this
        f.seek(2 * n)
        at = f.read(4)
        start = at[0] | at[1] << 8
        f.seek(start)
        return str(f.read((at[2] | at[3] << 8) - start), "utf-8")
