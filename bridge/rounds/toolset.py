"""Which of a device's tools a round offers the model: the everyday ones always, the rest by family when the
model asks for them (docs/bridge.md, "Tools offered"). Most asks switch or read a pin, remember a fact or read
the clock; routines, schedules, system tools, MQTT publish and I2C were ~60 % of every request's bytes.

The bridge keeps no state between rounds: a family is loaded again in a later round when the conversation
already holds a call to one of its tools. Order is stable (everyday tools, then `more_tools`, then loaded
families in the order they were asked for) so providers' prompt caches keep matching the prefix.
"""
from __future__ import annotations

import json

from bridge.manifests import openai_tools

MORE = "more_tools"  # the bridge answers this call itself; it never reaches the device

# family -> (tool name prefixes, what the model is told the family holds)
ON_DEMAND = {
    "routines": (("routine_",), "offline routines"),
    "schedule": (("schedule_", "timezone_"), "timed jobs, timezone"),
    "system": (("system_", "publish"), "info, health, reboot, MQTT publish"),
    "memory": (("memory_delete", "memory_list"), "list, forget"),
    "i2c": (("i2c_",), "I2C bus"),
}


def family_of(name: str) -> str | None:
    for family, (prefixes, _what) in ON_DEMAND.items():
        if name.startswith(prefixes):
            return family
    return None


class Toolset:
    """The tools of one round. `load(family)` adds a family; `tools()` is what the next turn offers."""

    def __init__(self, manifest: dict, chat: list[dict]) -> None:
        self._all = openai_tools(manifest)
        present = {family_of(t["function"]["name"]) for t in self._all}
        self.families = [f for f in ON_DEMAND if f in present]  # the ones this device has
        self.loaded: list[str] = []
        for m in chat:  # a family already used in this conversation stays offered
            for c in m.get("tool_calls") or ():
                family = family_of(((c.get("function") or {}).get("name")) or "")
                if family and family not in self.loaded:
                    self.loaded.append(family)

    def tools(self) -> list[dict]:
        core = [t for t in self._all if family_of(t["function"]["name"]) is None]
        out = core + ([_more(self.families)] if self.families else [])
        for family in self.loaded:
            out += [t for t in self._all if family_of(t["function"]["name"]) == family]
        return out

    def load(self, raw_args: str) -> tuple[str, bool]:
        """The tool result of a `more_tools` call, and whether it was valid."""
        try:
            family = json.loads(raw_args or "{}").get("family")
        except (ValueError, AttributeError):
            family = None
        if family not in self.families:
            return f"Error: family must be one of {', '.join(self.families)}", False
        if family not in self.loaded:
            self.loaded.append(family)
        names = [t["function"]["name"] for t in self._all if family_of(t["function"]["name"]) == family]
        return f"ok: now offered: {', '.join(names)}", True

    def hint(self) -> str:
        """The system prompt's line about the families not offered until asked for."""
        if not self.families:
            return ""
        return "More tools (more_tools): " + ", ".join(f"{f} ({ON_DEMAND[f][1]})" for f in self.families) + ". "


def _more(families: list[str]) -> dict:
    return {"type": "function", "function": {
        "name": MORE, "description": "Offer a family of further tools.",
        "parameters": {"type": "object", "properties": {"family": {"type": "string", "enum": families}},
                       "required": ["family"]}}}
