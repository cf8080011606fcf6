"""`wisp provision <id>`: broker credentials, a per-device secret key, the device config, and the broker's
password and ACL files, kept in one fleet directory. Idempotent; secrets stay in 0600 files, never on screen.

Layout of the fleet directory (default .wisp/fleet, or $WISP_FLEET):
  secrets.json               0600  every generated credential (the only source the other files come from)
  passwd                     0600  mosquitto password file (hashed by mosquitto_passwd)
  acl                        0644  mosquitto ACL: each device only wisp/<id>/# and its own HA discovery topics
  mosquitto.conf             0644  the broker's listener, logins and ACL: `mosquitto -c` it, or copy it
                                   to /etc/mosquitto/conf.d/ (Debian's mosquitto reads that folder)
  mosquitto.d/               0755  your own broker settings (*.conf, e.g. a TLS listener): mosquitto.conf
                                   includes them; `wisp provision` never writes there
  bridge.toml                0600  [broker] section with the bridge's login (WISP_CONFIG=... for the bridge)
  devices/<id>/config.json   0600  what `wisp image` / `wisp flash` / `wisp deploy --device` put on the board;
                                   keys provision does not manage (ntp, ha, broker tls/ca...) are kept, and
                                   files it names (the broker CA) are taken from this folder
"""
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from bridge import protocol
from tools import configcheck
from tools.paths import RUN_DIR
from tools.private import write_private, write_whole
from tools.system_deps import SBIN_DIRS

BRIDGE_USER = "wisp-bridge"        # reserved: no device may take this id
ADMIN_USER = "wisp-admin"          # reserved: the login of `wisp ask`/`cmd`/`devices`/`logs` on this fleet
PASSWORD_BYTES = 24                # broker passwords: 192 bits, URL-safe text
DEVICE_KEY_BYTES = 32              # per-device secret key: 256 bits, hex in config.json "key"
HA_DISCOVERY_PREFIX = "homeassistant"
LOCAL_CONF_DIR = "mosquitto.d"     # in the fleet directory: the user's broker settings, never written here
ID_CHARS = set(protocol.DEVICE_ID_CHARS)
MAX_ID_LEN = protocol.MAX_DEVICE_ID


class ProvisionError(Exception):
    pass


def fleet_dir(flag=None):
    return Path(flag or os.environ.get("WISP_FLEET") or RUN_DIR / "fleet")


def device_config_path(fleet, dev_id):
    return Path(fleet) / "devices" / dev_id / "config.json"


def check_device_id(dev_id):
    if not (1 <= len(dev_id) <= MAX_ID_LEN and set(dev_id) <= ID_CHARS):
        raise ProvisionError(f"device id {dev_id!r} must be 1-{MAX_ID_LEN} characters of a-z 0-9 _ -")
    if dev_id in (BRIDGE_USER, ADMIN_USER):
        raise ProvisionError(f"'{dev_id}' is a broker login of the fleet itself; pick another device id")
    if dev_id == protocol.BRIDGE:  # its ACL (wisp/bridge/#) would let it write every bridge's presence
        raise ProvisionError("'bridge' names the bridges' presence topics (wisp/bridge/<name>/status); "
                             "pick another device id")


def provision(dev_id, fleet, broker_host, broker_port, wifi_ssid=None, wifi_password=None, pins=None,
              rotate=False, ntp=None):
    """Create or refresh everything device `dev_id` needs. Returns the paths written (never secrets).
    The device's config.json keeps every key provision does not manage (merged, not replaced)."""
    check_device_id(dev_id)
    fleet = Path(fleet)
    store = load_secrets(fleet)
    if rotate or "password" not in store["bridge"]:
        store["bridge"] = {"user": BRIDGE_USER, "password": secrets.token_urlsafe(PASSWORD_BYTES)}
    if rotate or "password" not in store["admin"]:
        store["admin"] = {"user": ADMIN_USER, "password": secrets.token_urlsafe(PASSWORD_BYTES)}
    before = store.get("broker") or {}
    moved_from = (before.get("host"), before.get("port")) if before and before != {
        "host": broker_host, "port": broker_port} else None
    store["broker"] = {"host": broker_host, "port": broker_port}
    creds = store["devices"].get(dev_id)
    if rotate or not creds:
        creds = {"password": secrets.token_urlsafe(PASSWORD_BYTES), "key": secrets.token_hex(DEVICE_KEY_BYTES)}
        store["devices"][dev_id] = creds

    cfg_path = device_config_path(fleet, dev_id)
    old = _read_json(cfg_path)
    wifi = dict(old.get("wifi") or {})
    if wifi_ssid is not None:
        wifi["ssid"] = wifi_ssid
    if wifi_password is not None:
        wifi["password"] = wifi_password
    broker = old.get("broker") if isinstance(old.get("broker"), dict) else {}
    # the user's own broker keys (tls, ca) stay; a TLS device keeps its port too: the TLS listener's
    # (mosquitto.d), where broker_port is the plain listener of mosquitto.conf
    port = broker.get("port", broker_port) if broker.get("tls") else broker_port
    cfg = {"id": dev_id,
           "broker": {**broker, "host": broker_host, "port": port, "user": dev_id, "password": creds["password"]},
           "key": creds["key"],
           "pins": pins if pins is not None else old.get("pins", {})}
    if wifi:
        cfg["wifi"] = wifi
    if ntp is not None:
        cfg["ntp"] = ntp
    for key, value in old.items():
        cfg.setdefault(key, value)     # what the user added (ntp, ha, sensors, ...) is theirs
    try:
        configcheck.check(cfg, f"the config of '{dev_id}'", configcheck.config_files(cfg, cfg_path.parent))
    except configcheck.ConfigCheckError as e:
        raise ProvisionError(f"{e}; nothing was written for it") from None
    fleet.mkdir(parents=True, exist_ok=True)
    write_private(fleet / "secrets.json", json.dumps(store, indent=1, sort_keys=True))
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    write_private(cfg_path, json.dumps(cfg, indent=1))

    write_broker_files(fleet, store)
    bridge = store["bridge"]
    write_private(fleet / "bridge.toml",
                   f'[broker]\nhost = "{broker_host}"\nport = {broker_port}\n'
                   f'user = "{bridge["user"]}"\npassword = "{bridge["password"]}"\n'
                   # the bridge signs llm/res with each device's key (docs/security.md)
                   f'\n[signing]\nkeys = "{(fleet / "secrets.json").resolve()}"\n')
    return {"config": cfg_path, "passwd": fleet / "passwd", "acl": fleet / "acl",
            "mosquitto_conf": fleet / "mosquitto.conf", "mosquitto_d": fleet / LOCAL_CONF_DIR,
            "bridge_toml": fleet / "bridge.toml",
            "rotated": bool(rotate), "wifi": "ssid" in wifi,
            "moved_from": moved_from, "behind": _behind(fleet, store, broker_host, broker_port)}


def _behind(fleet, store, host, port):
    """{(host, port): [device ids]} of the devices whose config.json still names another broker than the
    fleet's: the fleet has one listener (mosquitto.conf), so a device left at an old address stops
    connecting once the broker runs with the new one. A TLS device keeps its own port (mosquitto.d)."""
    out = {}
    for dev in sorted(store["devices"]):
        broker = _read_json(device_config_path(fleet, dev)).get("broker")
        if not isinstance(broker, dict):
            continue
        there = (broker.get("host"), broker.get("port"))
        if there[0] != host or (there[1] != port and not broker.get("tls")):
            out.setdefault(there, []).append(dev)
    return out


def write_broker_files(fleet, store):
    """Regenerate passwd, acl and mosquitto.conf from secrets.json, so re-running changes nothing else."""
    logins = {store["bridge"]["user"]: store["bridge"]["password"], store["admin"]["user"]: store["admin"]["password"]}
    logins.update({dev: c["password"] for dev, c in sorted(store["devices"].items())})
    _hash_password_file(fleet / "passwd", logins)
    lines = ["# Written by `wisp provision`; edits are overwritten.",
             f"user {BRIDGE_USER}", f"topic readwrite {protocol.EVERYTHING}",
             # its own connectivity sensor for Home Assistant (bridge/ha.py), sent again when HA starts
             f"topic write {HA_DISCOVERY_PREFIX}/binary_sensor/+/status/config",
             f"topic read {HA_DISCOVERY_PREFIX}/status", "",
             # the CLI, and Home Assistant's MQTT integration if it logs in as this user
             f"user {ADMIN_USER}", f"topic readwrite {protocol.EVERYTHING}",
             f"topic readwrite {HA_DISCOVERY_PREFIX}/#", ""]
    for dev in sorted(store["devices"]):
        # a device writes only its own discovery topics (<prefix>/<component>/wisp_<id>/<name>/config):
        # with homeassistant/# one device could repoint or delete another's entities
        lines += [f"user {dev}", f"topic readwrite {protocol.device_filter(dev)}",
                  f"topic write {HA_DISCOVERY_PREFIX}/+/wisp_{dev}/#",
                  f"topic read {HA_DISCOVERY_PREFIX}/status", ""]
    write_whole(fleet / "acl", "\n".join(lines))   # whole: `wisp run --fleet` reloads mosquitto on a change
    port = store.get("broker", {}).get("port", 1883)
    local = fleet / LOCAL_CONF_DIR
    local.mkdir(exist_ok=True)         # include_dir of a missing folder stops mosquitto
    write_whole(fleet / "mosquitto.conf",
        "# Written by `wisp provision`; edits are overwritten: put your own settings in\n"
        f"# {local.resolve()}/*.conf (included below; never written by wisp).\n"
        "# The fleet's broker: only provisioned devices, the bridge and the CLI may connect, each to its\n"
        "# own topics. Use it as it is (`mosquitto -c mosquitto.conf`, or `wisp run --fleet`), or copy it\n"
        "# to /etc/mosquitto/conf.d/wisp.conf: Debian's mosquitto.conf reads that folder (include_dir).\n"
        "# mosquitto reads include_dir only in its main file, so then copy mosquitto.d/*.conf there too.\n"
        "# The broker's user must be able to read passwd and acl.\n"
        f"listener {port}\n"
        f"allow_anonymous false\npassword_file {(fleet / 'passwd').resolve()}\n"
        f"acl_file {(fleet / 'acl').resolve()}\n"
        f"include_dir {local.resolve()}\n")


def admin_login(fleet):
    """(user, password) of the fleet's CLI login, or None when `fleet` holds no provisioned fleet.
    A secrets.json that cannot be read raises ProvisionError: going on anonymously would hide it."""
    admin = load_secrets(Path(fleet))["admin"]
    return (admin["user"], admin["password"]) if admin.get("password") else None


def broker_address(fleet):
    """(host, port) the fleet's devices were provisioned with, or None (ProvisionError: as admin_login)."""
    broker = load_secrets(Path(fleet)).get("broker") or {}
    return (broker["host"], int(broker["port"])) if "host" in broker and "port" in broker else None


def find_mosquitto_passwd():
    found = shutil.which("mosquitto_passwd")
    if found:
        return found
    for d in ("/usr/bin", *SBIN_DIRS):
        if os.access(os.path.join(d, "mosquitto_passwd"), os.X_OK):
            return os.path.join(d, "mosquitto_passwd")
    raise ProvisionError("mosquitto_passwd is missing: install mosquitto (sudo apt-get install mosquitto)")


def _hash_password_file(path, users):
    # `mosquitto_passwd -U` hashes a plain user:password file in place, so no password is ever put on a
    # command line (where `ps` would show it, as `mosquitto_passwd -b` would).
    tool = find_mosquitto_passwd()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".passwd-")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp files are 0600
            f.write("".join(f"{user}:{password}\n" for user, password in users.items()))
        done = subprocess.run([tool, "-U", tmp], capture_output=True, text=True)
        if done.returncode != 0:
            raise ProvisionError(f"mosquitto_passwd failed: {done.stderr.strip() or done.stdout.strip()}")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_secrets(fleet):
    store = _read_json(fleet / "secrets.json")
    for section in ("bridge", "admin", "devices"):
        store.setdefault(section, {})
    return store


def _read_json(path):
    from tools.jsonfile import JsonFileError, read_object
    if not Path(path).exists():
        return {}
    try:
        return read_object(path)[1]
    except JsonFileError as e:
        raise ProvisionError(f"{e}; fix or remove it") from None
