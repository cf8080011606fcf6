"""What a user of the fleet soak (bench/fleet_soak.py) would notice, as figures: each ask answered once, each
command's effect landing once, each schedule firing once a minute, `wisp devices` telling the truth, device
heap and bridge memory over the run, cost rows against the tier's calls, tracebacks in the logs."""
import collections
import json
import sqlite3

from bench.report import percentile

EXPECTED = {"dark": "Done.", "bed": "Done.", "warm": "I have no temperature sensor, sorry.", "slow": "Done."}


def _dev(topic):
    return topic.split("/")[1]


def _ms(values):
    if not values:
        return "-"
    return "%d / %d / %d / %d" % (percentile(values, 50), percentile(values, 90), percentile(values, 99), max(values))


def asks(r):
    t0, tf = r["t_start"], r["t_fault"]
    sent = {(_dev(t), p.get("id")) for _, t, p in r["mqtt"] if t.endswith("/ask") and isinstance(p, dict)}
    answers = collections.Counter((_dev(t), p.get("id")) for _, t, p in r["mqtt"]
                                  if t.endswith("/reply") and isinstance(p, dict))
    rows = ["| asks | steady | faults |", "|---|---|---|"]
    by_phase = collections.defaultdict(lambda: collections.Counter())
    latency = collections.defaultdict(list)
    odd = []
    for x in r["records"]:
        if x["op"] != "ask":
            continue
        phase = "steady" if x["t_end"] < tf else "faults"
        reply = x.get("reply") or {}
        ok = bool(reply.get("ok")) and reply.get("text") == EXPECTED[x["kind"]]
        by_phase[phase]["ok" if ok else f"{x['src'].split('-')[0]} {x['rc']}"] += 1
        if ok:
            latency[(x["src"].split("-")[0], phase)].append(x["dt"] * 1000)
        elif x["src"] != "fault" and phase == "steady":
            odd.append(f"t={x['t_end'] - t0:.0f} s {x['src']} {x['dev']}: {x['rc']} {reply or x['err']}")
    for what in sorted(set(by_phase["steady"]) | set(by_phase["faults"])):
        rows.append(f"| {what} | {by_phase['steady'][what]} | {by_phase['faults'][what]} |")
    rows.append(f"| seen on MQTT: without a reply / with two or more | {len([k for k in sent if not answers[k]])} "
                f"/ {len([k for k in sent if answers[k] > 1])} | |")
    rows += ["", "| ask wall time, ms (p50 / p90 / p99 / max) | steady | faults |", "|---|---|---|"]
    for src in ("cli", "rest"):
        rows.append(f"| {src} | {_ms(latency[(src, 'steady')])} | {_ms(latency[(src, 'faults')])} |")
    device_ms = [p["ms"] for _, t, p in r["mqtt"] if t.endswith("/reply") and isinstance(p, dict)
                 and isinstance(p.get("ms"), int)]
    rows.append(f"| the device's own `ms` | {_ms(device_ms)} | |")
    return rows + [f"- unexpected in steady load: {o}" for o in odd[:10]]


def commands(r):
    notes = collections.Counter(str(p) for _, t, p in r["mqtt"] if t.endswith("/notes/soak"))
    cmds = [x for x in r["records"] if x["op"] == "cmd"]
    ok = [x for x in cmds if (x.get("reply") or {}).get("ok")]
    wrong = [x for x in ok if notes[x["mark"]] != 1]
    landed_anyway = [x for x in cmds if x not in ok and notes[x["mark"]]]
    return [f"- commands: {len(cmds)}, answered ok {len(ok)}; an ok one whose effect did not land exactly once: "
            f"{len(wrong)}; a failed one whose effect landed: {len(landed_anyway)}; wall time ms (p50 / p90 / p99 / "
            f"max) {_ms([x['dt'] * 1000 for x in ok])}"]


def schedules(r):
    t0 = r["t_start"]
    ticks = collections.defaultdict(collections.Counter)
    for t, topic, _p in r["mqtt"]:
        if topic.endswith("/notes/tick"):
            ticks[_dev(topic)][int(t // 60)] += 1
    prompts = collections.defaultdict(collections.Counter)
    for t, topic, p in r["mqtt"]:
        if topic.endswith("/llm/req") and isinstance(p, dict) and p.get("class") == "scheduled" and p.get("round") == 0:
            prompts[_dev(topic)][int(t // 60)] += 1
    out = []
    for what, seen in (("routine", ticks), ("prompt", prompts)):
        for dev, c in sorted(seen.items()):
            span = range(min(c), max(c) + 1)
            missing = [round(m * 60 - t0) for m in span if not c[m]]
            twice = [round(m * 60 - t0) for m in span if c[m] > 1]
            out.append(f"- {what} every minute on {dev}: {len(span)} minutes, fired {sum(c.values())}; minutes "
                       f"missed {missing or 'none'}; twice {twice or 'none'} (s after the start)")
    return out


def truth(r):
    wrong = 0
    for s in r["samples"]:
        shown = s.get("wisp_devices")
        if not shown:
            continue
        for dev, info in shown["devices"].items():
            if dev in s["running"] and (info.get("state") == "online") != s["running"][dev]:
                wrong += 1
        for name, info in shown["bridges"].items():
            if (info.get("state") == "online") != (name.removeprefix("soak-") in s["bridges"]):
                wrong += 1
    checks = sum(1 for s in r["samples"] if s.get("wisp_devices"))
    return [f"- `wisp devices` against the processes: {checks} checks, {wrong} states wrong (a device or bridge "
            "shown online that was not running, or the reverse)"]


def creep(r):
    t0, out = r["t_start"], []
    for b in ("a", "b"):
        pts = [(s["t"] - t0, *s["bridges"][b]) for s in r["samples"] if b in s["bridges"]]
        if len(pts) > 2:
            out.append(f"- bridge {b}: RSS {pts[0][1] / 1024:.1f} MB at {pts[0][0]:.0f} s, {pts[-1][1] / 1024:.1f} MB "
                       f"at {pts[-1][0]:.0f} s; open fds {min(p[2] for p in pts)}-{max(p[2] for p in pts)}")
    heaps = collections.defaultdict(list)
    for s in r["samples"]:
        for dev, kb in s["heap"].items():
            if kb is not None:
                heaps[dev].append(kb)
    drift = [h[-1] - h[0] for h in heaps.values() if len(h) > 1]
    lows = [min(h) for h in heaps.values() if h]
    if drift:
        out.append(f"- device heap free (system_health, KB): last minus first sample per device {min(drift)} to "
                   f"{max(drift)}; lowest seen {min(lows)}")
    return out


def costs(r, root):
    db = sqlite3.connect(root / "cost.db")
    rows = db.execute("SELECT count(*), round(sum(cost_usd), 4) FROM usage").fetchone()
    return [f"- cost rows {rows[0]} (USD {rows[1]}) for {r['fake_calls']} tier calls (a cancelled hedge loser and "
            "the rows a SIGKILLed bridge had not committed are not counted, docs/bridge.md)"]


def logs(root):
    counts = {f.name: f.read_text(errors="replace").count("Traceback") for f in sorted(root.glob("*.log"))}
    bad = {k: v for k, v in counts.items() if v}
    return [f"- tracebacks in the {len(counts)} logs: {bad or 'none'}"]


def figures(r, root):
    faults = ", ".join(f"{t - r['t_start']:.0f} s {what}" for t, what in r["faults"]) or "none"
    lines = [f"Faults: {faults}.", "", *asks(r), "", *commands(r), *schedules(r), *truth(r), *creep(r),
             *costs(r, root), *logs(root)]
    return "\n".join(lines)


if __name__ == "__main__":  # figures of a run kept with --keep: python -m bench.fleet_soak_figures <dir>
    import sys
    from pathlib import Path
    root = Path(sys.argv[1])
    print(figures(json.loads((root / "result.json").read_text()), root))
