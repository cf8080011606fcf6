"""Which of a device's tools a round offers the model: the everyday ones always, the rest by family when the
model asks for them (docs/bridge.md, "Tools offered"). Most asks switch or read a pin, remember a fact or read
the clock; routines, schedules, system tools, MQTT publish and I2C were ~60 % of every request's bytes.

The bridge keeps no state between rounds: a family is loaded again in a later round when the conversation
already holds a call to one of its tools. Order is stable (everyday tools, then `more_tools`, then loaded
families in the order they were asked for) so providers' prompt caches keep matching the prefix.
"""
from __future__ import annotations

import json

MORE = "more_tools"  # the bridge answers this call itself; it never reaches the device

# family -> (tool name prefixes, what the model is told the family holds)
ON_DEMAND = {
    "routines": (("routine_",), "offline routines"),
    "schedule": (("schedule_", "timezone_"), "timed jobs, timezone"),
    "system": (("system_", "publish"), "info, health, reboot, MQTT publish"),
    "memory": (("memory_delete", "memory_list"), "list, forget"),
    "i2c": (("i2c_",), "I2C bus"),
}
_EMPTY_PARAMS = {"type": "object", "properties": {}}
MAX_OFFERS = 32  # tool lists a catalog keeps, one per order of loaded families a conversation reached


def family_of(name: str) -> str | None:
    for family, (prefixes, _what) in ON_DEMAND.items():
        if name.startswith(prefixes):
            return family
    return None


def openai_tools(tools: list[dict]) -> list[dict]:
    """A manifest's tools in the OpenAI `tools` shape, every provider's starting point."""
    return [{"type": "function",
             "function": {"name": t["name"], "description": t.get("desc", ""), "parameters": _params(t)}}
            for t in tools]


def _params(tool: dict) -> dict:
    """A tool's parameters, without the empty `required` a device writes for a tool whose arguments are all
    optional (schedule_list's skip): it says nothing, and Gemini's and Ollama's rules refuse it."""
    params = tool.get("params") or _EMPTY_PARAMS
    if params.get("required") == []:
        params = {k: v for k, v in params.items() if k != "required"}
    return params


class OfferedTools(list):
    """A tool list as a catalog offers it, shared by every round that offers the same tools: never changed
    once built. `translated` keeps each provider family's translation of it (schemas.translate)."""

    def __init__(self, tools: list[dict]):
        super().__init__(tools)
        self.translated: dict[str, list[dict]] = {}


class Catalog:
    """What one manifest tool list offers, worked out once. The manifest cache keeps one per distinct tool
    list, shared by the devices that publish it: building the offer and translating it for the provider took
    ~45 µs per request for the firmware's 22 tools."""

    def __init__(self, tools: list[dict]) -> None:
        self.all = openai_tools(tools)
        self.by_name = {t["name"]: t for t in tools}
        family = {t["function"]["name"]: family_of(t["function"]["name"]) for t in self.all}
        self.families = [f for f in ON_DEMAND if f in family.values()]  # the ones this device has
        self.of_family = {f: [t for t in self.all if family[t["function"]["name"]] == f] for f in self.families}
        self._core = [t for t in self.all if family[t["function"]["name"]] is None]
        self._offers: dict[tuple[str, ...], OfferedTools] = {}

    def offer(self, loaded: tuple[str, ...]) -> OfferedTools:
        """The everyday tools, `more_tools`, then the loaded families in order."""
        got = self._offers.get(loaded)
        if got is None:
            out = self._core + ([_more(self.families)] if self.families else [])
            for f in loaded:
                out += self.of_family[f]
            got = OfferedTools(out)
            if len(self._offers) < MAX_OFFERS:
                self._offers[loaded] = got
        return got


class Toolset:
    """The tools of one round. `load(family)` adds a family; `tools()` is what the next turn offers."""

    def __init__(self, manifest: dict, chat: list[dict], catalog: Catalog | None = None) -> None:
        self.catalog = catalog or Catalog(manifest["tools"])
        self.families = self.catalog.families
        self.loaded: list[str] = []
        for m in chat:  # a family already used in this conversation stays offered
            for c in m.get("tool_calls") or ():
                family = family_of(((c.get("function") or {}).get("name")) or "")
                if family in self.families and family not in self.loaded:
                    self.loaded.append(family)

    def tools(self) -> list[dict]:
        return self.catalog.offer(tuple(self.loaded))

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
        names = [t["function"]["name"] for t in self.catalog.of_family[family]]
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
