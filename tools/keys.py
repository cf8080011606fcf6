"""Where the host finds a device's signing key: the fleet's secrets.json (`wisp provision`),
else the config of a simulated device under .wisp/devices/<id>/. Keys are never printed."""
import json

from tools.paths import RUN_DIR


def device_key(dev_id, fleet=None):
    """The key as bytes, or None when this host does not know one."""
    from tools.provision import fleet_dir
    for path, pick in ((fleet_dir(fleet) / "secrets.json", lambda d: d["devices"][dev_id]["key"]),
                       (RUN_DIR / "devices" / dev_id / "config.json", lambda d: d["key"])):
        try:
            return bytes.fromhex(pick(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None
