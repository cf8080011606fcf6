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
