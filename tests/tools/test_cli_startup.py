"""`wisp ask` at a shell is mostly Python starting: the commands that talk to a device must not load
what only building or flashing a board needs (docs/benchmarks.md, `wisp ask` wall time)."""
import subprocess
import sys

from tools.paths import REPO

# What building a flash image needs and a command over the broker does not: littlefs alone took
# ~30 ms of every `wisp` command's start.
BOARD_ONLY = ("littlefs",)


def test_the_wisp_command_parser_loads_no_image_library():
    code = ("import sys\nfrom tools import cli\ncli.build_parser()\nimport tools.ask\n"
            f"print(sorted(m for m in {BOARD_ONLY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
