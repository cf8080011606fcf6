# wisp: an AI agent for cheap microcontrollers. Kept empty so `import wisp.x` loads only x.
VERSION = "0.1.0"
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"  # job, routine, bound names


def unload(name, clear=False):
    """Forget a one-shot module (manifest building, define-time checks, cron parsing) so the GC
    can reclaim its heap once nothing else refers to it; the next import loads it again.
    clear: also empty its globals, when none of its functions will run again. The collector is
    conservative: a stale word that still points at the module or one of its functions then
    keeps that alone, not every function and table the module holds (docs/architecture.md)."""
    import sys
    module = sys.modules.pop(name, None)
    if clear and module is not None:
        module.__dict__.clear()
    parent, _, child = name.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None and child in getattr(package, "__dict__", {}):
        delattr(package, child)  # `from wisp import x` binds x on the package: drop that too
