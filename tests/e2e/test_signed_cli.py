"""`wisp cmd` and `wisp ask` signing for a device with a key, on the real firmware: what the user is told
when this host's clock is off, or when the key this host holds is not the device's."""
import json
import subprocess
import sys

import pytest

from tests.e2e.stack import REPO, Stack

KEY_HEX = "5e" * 32
OTHER_KEY_HEX = "a7" * 32
# the CLI as a user runs it, on a host whose clock is off by argv[1] seconds
SHIFTED_CLI = ("import sys, time; real = time.time; time.time = lambda: real() + float(sys.argv[1]); "
               "from tools.cli import main; sys.exit(main(sys.argv[2:]))")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack() as s:
        s.start_device("sig1", extra={"key": KEY_HEX})
        s.start_device("only1", extra={"key": KEY_HEX, "signed": "only"})
        yield s


def fleet_with(tmp_path, key_hex):
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    (fleet / "secrets.json").write_text(json.dumps({"devices": {d: {"key": key_hex} for d in ("sig1", "only1")}}))
    return fleet


def cli(stack, offset_s, *args):
    return subprocess.run([sys.executable, "-c", SHIFTED_CLI, str(offset_s), *args, "--broker", stack.broker_addr],
                          cwd=str(REPO), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("offset_s, says", [(-600, "behind"), (120, "ahead of")])
def test_a_host_clock_off_by_minutes_is_named_as_the_cause(stack, tmp_path, offset_s, says):
    fleet = fleet_with(tmp_path, KEY_HEX)
    done = cli(stack, offset_s, "cmd", "sig1", "gpio_read", "pin=fan", "--fleet", str(fleet))
    assert done.returncode == 1 and "must be the current Unix time" in done.stdout, done.stdout + done.stderr
    assert f"this host's clock is {abs(offset_s) // 60} min" in done.stderr and says in done.stderr, done.stderr
    assert "timedatectl" in done.stderr
    right = cli(stack, 0, "cmd", "sig1", "gpio_read", "pin=fan", "--fleet", str(fleet))
    assert right.returncode == 0 and right.stdout.strip() == "fan=0", right.stdout + right.stderr


def test_a_signed_ask_refused_for_the_host_s_clock_says_to_check_it(stack, tmp_path):
    fleet = fleet_with(tmp_path, KEY_HEX)
    done = cli(stack, -600, "ask", "only1", "turn on the fan", "--fleet", str(fleet))
    assert done.returncode == 1 and "must be the current Unix time" in done.stdout, done.stdout + done.stderr
    assert "check this host's clock" in done.stderr and "timedatectl" in done.stderr, done.stderr


def test_a_key_that_is_not_the_device_s_is_named_with_what_to_do(stack, tmp_path):
    rotated = fleet_with(tmp_path, OTHER_KEY_HEX)     # provisioned again (--rotate) after the device got its config
    done = cli(stack, 0, "cmd", "sig1", "gpio_read", "pin=fan", "--fleet", str(rotated))
    assert done.returncode == 1 and "must be signed with this device's key" in done.stdout, done.stdout + done.stderr
    assert f"the key for 'sig1' in {rotated / 'secrets.json'} is not the one on the device" in done.stderr, done.stderr
    assert "wisp deploy --device sig1" in done.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "secrets.json").write_text(json.dumps({"devices": {}}))
    done = cli(stack, 0, "ask", "only1", "turn on the fan", "--fleet", str(other))
    assert done.returncode == 1 and "must be signed" in done.stdout, done.stdout + done.stderr
    assert f"this host has no key for 'only1' (not in {other / 'secrets.json'})" in done.stderr, done.stderr
