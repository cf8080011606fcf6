"""Install the Debian packages wisp needs (mosquitto and its command-line clients) when they are missing.

Runs with the system python3 before the venv exists, so stdlib only.
`--for test`: mosquitto is required (tests always use the real broker).
`--for run`: mosquitto is preferred; without it `wisp run` falls back to amqtt.
`--for test` also installs chromium and its WebDriver for the dashboard's browser test, and PostgreSQL for the
tests of many bridges sharing one store (they start their own server with initdb + pg_ctl).
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
# mosquitto-clients: the mosquitto_pub/mosquitto_sub the README and `wisp run` banner use;
# socat: virtual serial devices; openssl: the TLS tests' CA; util-linux (unshare) and mount: the update
# tests' small tmpfs flash that fills up (tests/e2e/test_ota.py), in a private mount namespace
PACKAGES = ("mosquitto", "mosquitto-clients", "socat", "openssl", "util-linux", "mount")
COMMANDS = ("mosquitto_pub", "mosquitto_sub", "socat", "openssl", "unshare", "mount")
BROWSER_PACKAGES = ("chromium", "chromium-driver")  # tests/e2e/test_dashboard.py drives it with Selenium
POSTGRES_PACKAGES = ("postgresql",)  # tests/bridge/test_shared_store.py: bridges sharing one PostgreSQL


def find_pg_bin(name):
    """initdb, pg_ctl: Debian keeps them in /usr/lib/postgresql/<major>/bin, off PATH."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


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


def install_packages(packages=PACKAGES):
    """Try apt-get; return True when it installed them (and, for the default group, mosquitto is usable)."""
    prefix = _apt_prefix()
    if prefix is None or not shutil.which("apt-get"):
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("wisp: installing Debian packages: " + " ".join(packages), flush=True)
    subprocess.run(prefix + ["apt-get", "update", "-qq"], env=env, check=False)
    done = subprocess.run(prefix + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                          env=env, check=False)
    return done.returncode == 0 and (packages != PACKAGES or find_mosquitto() is not None)


def ensure_browser():
    """chromium + chromedriver for the dashboard test; a warning, not a failure, where they cannot be had."""
    if (shutil.which("chromium") and shutil.which("chromedriver")) or install_packages(BROWSER_PACKAGES):
        return
    print("wisp: chromium/chromium-driver are missing and cannot be installed here; the dashboard test "
          "(tests/e2e/test_dashboard.py) will fail. Install them with "
          "`sudo apt-get install chromium chromium-driver`.", file=sys.stderr)


def ensure_postgres():
    if (find_pg_bin("initdb") and find_pg_bin("pg_ctl")) or install_packages(POSTGRES_PACKAGES):
        return
    print("wisp: PostgreSQL is missing and cannot be installed here; the shared-store tests "
          "(tests/bridge/test_shared_store.py) will fail. Install it with `sudo apt-get install postgresql`.",
          file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--for", dest="purpose", choices=("run", "test"), default="test")
    args = parser.parse_args(argv)
    if args.purpose == "test":
        ensure_browser()
        ensure_postgres()
    if (find_mosquitto() and all(shutil.which(c) for c in COMMANDS)) or install_packages():
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
