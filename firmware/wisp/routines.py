# Named routines: tool steps the LLM composes once and the device runs offline forever. A step
# may bind its result to a name and carry a JSON condition on earlier results (never eval).
# Formats and the binding rule: docs/memory-and-routines.md. This module stores them; the checks
# made when a routine is defined live in wisp/routine_check.py, imported only when one is defined
# or restored, and the runner in wisp/routine_run.py, imported only while one runs.
from wisp import limits, store, unload

STORE_NAME = "routines"


def _ref(v):
    """The bound name a "$name" argument refers to, else None ("$$..." is a literal "$...")."""
    if isinstance(v, str) and len(v) > 1 and v[0] == "$" and v[1] != "$":
        return v[1:]
    return None


def _literal(v):
    return v[1:] if isinstance(v, str) and v.startswith("$$") else v


def _runnable(steps):
    if not isinstance(steps, list) or not steps:
        return False
    for step in steps:
        if not isinstance(step, dict) or not isinstance(step.get("tool"), str):
            return False
    return True


class Routines:
    def __init__(self, dev, log=print):
        self.dev, self.log = dev, log
        self.keep = 0  # runs in progress, +1 for good when loading dropped a routine (a reload would
        # log it again): the device does not drop us from the heap meanwhile (Device.rest)
        doc = store.load(STORE_NAME, None, log)
        saved = doc.get("routines") if isinstance(doc, dict) else None
        self._routines = {}
        llm = doc.get("llm") if isinstance(doc, dict) else None
        self._llm = store.names(llm)  # names the LLM defined (confirm.py)
        if not isinstance(saved, dict):
            if doc is not None:
                log("routines error: %s.json holds no routines object; starting empty" % STORE_NAME)
                store.set_aside(STORE_NAME, doc, log)
            return
        for name in saved:  # checked when defined; a hand-edited one that breaks fails its run
            if _runnable(saved[name]):
                self._routines[name] = saved[name]
            else:
                log("routines error: '%s' dropped: not a list of steps with a tool each" % name)
                self.keep = 1
        if self.keep:
            store.set_aside(STORE_NAME, doc, log)

    def _save(self, old):
        try:
            store.save(STORE_NAME, {"v": 1, "routines": self._routines, "llm": self.llm_names()})
        except Exception as e:  # OSError (flash full), MemoryError, TypeError (not JSON)
            self._routines = old  # keep RAM and flash in agreement
            raise ValueError("could not save to flash (%s)" % e)

    def define(self, name, steps, llm=0):
        """Store (or replace) a routine; raises ValueError with the reason if it is not valid.
        llm: the LLM defined it, so whoever runs it, its actions count as the LLM's."""
        from wisp import routine_check
        err = routine_check.check_routine(self.dev, name, steps)
        if not err and name not in self._routines and len(self._routines) >= limits.MAX_ROUTINES:
            err = "%d routines stored, the limit; delete one first" % limits.MAX_ROUTINES
        merged = dict(self._routines)
        merged[name] = steps
        err = err or routine_check.check_all(None, merged, name)  # nesting and targets, with this routine in place
        del routine_check
        unload("wisp.routine_check")  # one-shot: define time only
        if err:
            raise ValueError(err)
        old, self._routines = self._routines, merged
        old_llm = set(self._llm)
        (self._llm.add if llm else self._llm.discard)(name)
        try:
            self._save(old)
        except ValueError:
            self._llm = old_llm
            raise

    def llm_names(self):
        """The routines the LLM defined (saved, and kept in backups)."""
        return [n for n in self._llm if n in self._routines]

    def replace(self, routines, llm=()):
        """Swap in a whole set {name: steps} (restore), llm: the names the LLM defined; raises
        ValueError, changing nothing, if invalid."""
        from wisp import routine_check
        err = routine_check.check_all(self.dev, routines)
        del routine_check
        unload("wisp.routine_check")  # one-shot: restore time only
        if err:
            raise ValueError(err)
        old, old_llm = self._routines, self._llm
        self._routines, self._llm = dict(routines), set(llm)
        try:
            self._save(old)
        except ValueError:
            self._llm = old_llm
            raise

    def get(self, name):
        return self._routines.get(name)

    def list(self):
        return sorted(self._routines)

    def all(self):
        return dict(self._routines)

    def delete(self, name):
        if name not in self._routines:
            return False
        old = dict(self._routines)
        del self._routines[name]
        self._save(old)
        return True

    async def run(self, name, trigger="tool", llm=0):
        """Run a routine; one short summary line ("ok: ..." or "Error: ..."). Never raises.
        llm: the chain that runs it began with the LLM (tools.run). The runner is
        wisp/routine_run.py, loaded for the run: defining one does not carry it."""
        from wisp import routine_run
        return await routine_run.run(self, name, trigger, llm)
