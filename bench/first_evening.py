"""The first evening, literally: a clean clone of this checkout's last commit, `make run` in the
background, then every command the README's quick start and the `make run` banner print, run in
a shell as written (port 1883, no -p), twice in a row (a restart). Prints and records the time
to the banner of each start and which commands worked. Needs port 1883 free; installs the venv
of the clone as `make run` does (minutes), so it lives here and not in `make test`."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import write_section  # noqa: E402
from tools import broker as brokers  # noqa: E402
from tools.paths import REPO  # noqa: E402

BANNER_TIMEOUT_S = 900     # the first start creates the venv and installs the packages
RUNS = 2


def readme_lines(readme):
    """Shell lines of the README's quick start and its 'From any MQTT client' block."""
    text = readme.read_text()
    quick = re.findall(r"^    (\.venv/bin/wisp .+)$", text.split("## What it is")[0], re.M)
    mqtt = re.findall(r"^    (mosquitto_(?:pub|sub) .+)$", text, re.M)
    return quick + mqtt


def banner_lines(output):
    block = output.rsplit("wisp is running", 1)[1].split("In another terminal:", 1)[1].split("Press Ctrl-C")[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def try_line(clone, line):
    follow = line.startswith("mosquitto_sub")     # it follows forever: what it printed in 3 s counts
    done = subprocess.run(["bash", "-c", f"timeout 3 {line}" if follow else line], cwd=str(clone),
                          capture_output=True, text=True, timeout=120)
    ok = (done.returncode == 124 and "wisp/dev1/" in done.stdout) if follow else done.returncode == 0
    return ok, (done.stdout.strip() or done.stderr.strip()).splitlines()[-1:] or [""]


def main():
    if not brokers.port_is_free(1883):
        raise SystemExit(f"port 1883 is taken by {brokers.port_owner(1883) or 'another program'}: "
                         "the README's lines assume it; stop it first")
    with tempfile.TemporaryDirectory(prefix="wisp-first-evening-") as tmp:
        clone = Path(tmp) / "wisp"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        rows, starts = [], []
        for attempt in range(1, RUNS + 1):
            log = open(Path(tmp) / f"run{attempt}.log", "w")
            t0 = time.monotonic()
            proc = subprocess.Popen(["make", "run"], cwd=str(clone), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            out = ""
            while "Press Ctrl-C" not in out:
                if proc.poll() is not None or time.monotonic() - t0 > BANNER_TIMEOUT_S:
                    raise SystemExit(f"`make run` never printed its banner:\n{out[-3000:]}")
                time.sleep(0.5)
                out = (Path(tmp) / f"run{attempt}.log").read_text(errors="replace")
            starts.append(time.monotonic() - t0)
            time.sleep(2)     # the device announces itself right after the banner
            for line in readme_lines(clone / "README.md") + banner_lines(out):
                ok, last = try_line(clone, line)
                rows.append((attempt, line, ok, last[0][:80]))
            moved = "is taken" in out
            rows.append((attempt, "broker kept port 1883", not moved, "moved" if moved else "kept"))
            os.killpg(proc.pid, signal.SIGINT)      # Ctrl-C in the terminal: the whole process group
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
    lines = ["## The first evening: README and banner commands on a clean clone",
             "",
             f"`git clone` of the last commit, `make run` in the background, then each command the README's "
             f"quick start and the banner print, run in a shell as written; {RUNS} starts in a row. First start "
             f"(venv and packages installed): {starts[0]:.0f} s to the banner; restart: {starts[-1]:.1f} s. "
             f"{sum(r[2] for r in rows)} of {len(rows)} checks passed.",
             "",
             "| start | command | worked | last line |",
             "|---|---|---|---|"]
    lines += [f"| {a} | `{c}` | {'yes' if ok else '**no**'} | {last.replace('|', '/')} |" for a, c, ok, last in rows]
    report = "\n".join(lines)
    print(report)
    write_section("first_evening", report)
    if not all(r[2] for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
