"""Install the Debian packages wisp needs (mosquitto) when they are missing.

Runs with the system python3 before the venv exists, so stdlib only.
`--for test`: mosquitto is required (tests always use the real broker).
`--for run`: mosquitto is preferred; without it `wisp run` falls back to amqtt.
"""
import argparse
import os
import shutil
import subprocess
import sys

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
PACKAGES = ("mosquitto", "socat")  # socat: the virtual serial devices of tests/tools


def find_mosquitto():
    found = shutil.which("mosquitto")
    if found:
        return found
    for d in SBIN_DIRS:
        path = os.path.join(d, "mosquitto")
        if os.access(path, os.X_OK):
            return path
    return None


def _apt_prefix():
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def install_packages():
    """Try apt-get; return True when mosquitto is usable afterwards."""
    prefix = _apt_prefix()
    if prefix is None or not shutil.which("apt-get"):
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("wisp: installing Debian packages: " + " ".join(PACKAGES), flush=True)
    subprocess.run(prefix + ["apt-get", "update", "-qq"], env=env, check=False)
    done = subprocess.run(prefix + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
                          env=env, check=False)
    return done.returncode == 0 and find_mosquitto() is not None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--for", dest="purpose", choices=("run", "test"), default="test")
    args = parser.parse_args(argv)
    if (find_mosquitto() and shutil.which("socat")) or install_packages():
        return 0
    if args.purpose == "run":
        print("wisp: mosquitto is not installed and cannot be installed here (need root or sudo);"
              " `wisp run` will use the embedded amqtt broker (MQTT 3.1.1).", flush=True)
        return 0
    print("wisp: the test suite needs mosquitto. Install it with `sudo apt-get install mosquitto`"
          " and run `make test` again.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
