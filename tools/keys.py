"""Where the host finds a device's signing key: the fleet's secrets.json (`wisp provision`),
else the config of a simulated device under .wisp/devices/<id>/. Keys are never printed."""
import json

from tools.paths import RUN_DIR


def device_key(dev_id, fleet=None):
    """The key as bytes, or None when this host does not know one."""
    return key_and_source(dev_id, fleet)[0]


def key_and_source(dev_id, fleet=None):
    """(the key as bytes, the file it came from), or (None, the fleet's secrets.json) when this host
    does not know one."""
    from tools.provision import fleet_dir
    secrets = fleet_dir(fleet) / "secrets.json"
    for path, pick in ((secrets, lambda d: d["devices"][dev_id]["key"]),
                       (RUN_DIR / "devices" / dev_id / "config.json", lambda d: d["key"])):
        try:
            return bytes.fromhex(pick(json.loads(path.read_text()))), path
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None, secrets


NOT_SIGNED = "must be signed with this device's key"    # the device's refusal of a signature it cannot verify


def refusal_note(dev_id, fleet, said):
    """What the user should do when the device refused the signature of what this host sent, else None."""
    if not (isinstance(said, str) and NOT_SIGNED in said):
        return None
    key, path = key_and_source(dev_id, fleet)
    if key is None:
        return (f"this host has no key for '{dev_id}' (not in {path}): give --fleet DIR, the fleet directory "
                f"it was provisioned in")
    return (f"the key for '{dev_id}' in {path} is not the one on the device: it was provisioned again "
            f"(`wisp provision --rotate`) or from another fleet directory since it got its config.json. Give it "
            f"its config (`wisp deploy --device {dev_id}`, or `wisp flash`), or use the fleet directory it was "
            f"provisioned in (--fleet DIR)")
