"""`wisp` commands for a board: the config it gets, image, flash, deploy, provision, repl."""
import os
import sys
from pathlib import Path

from tools.cli_fleet import resolve_broker, resolve_login
from tools.paths import FIRMWARE

DEFAULT_IMAGE_DIR = Path("build")


def device_config(args, required=True):
    """The config.json to put on the board, and the files it names (its broker CA): --config FILE, or
    the one `wisp provision` wrote for --device, each with the files beside it. Checked by the
    firmware's own boot-time rules first, so no board gets a config it refuses.
    Returns (text, {name on the board: host file}), or (None, {}) when not required and not given."""
    from tools import configcheck, jsonfile
    from tools.provision import check_device_id, device_config_path, fleet_dir
    if args.config:
        path, what = Path(args.config), f"--config {args.config}"
    elif args.device:
        check_device_id(args.device)
        path = device_config_path(fleet_dir(args.fleet), args.device)
        if not path.exists():
            raise ValueError(f"no config for device '{args.device}' in {path.parent.parent.parent}: "
                             f"run `wisp provision {args.device} --broker <host>:1883` first, or pass --config")
        what = str(path)
    elif required:
        raise ValueError("say which device: --device <id> (after `wisp provision <id>`) or --config <file>")
    else:
        return None, {}
    # UTF-8 with a BOM or UTF-16 (Windows editors) goes on the board as plain UTF-8, which it parses
    text, config = jsonfile.read_object(path, what)
    try:
        files = configcheck.config_files(config, path.parent)
        configcheck.check(config, what, files)
    except configcheck.ConfigCheckError as e:
        raise ValueError(str(e)) from None
    return text, files


def warn_without_wifi(config_text):
    """After an image, flash or deploy that worked: a config with no Wi-Fi passes the firmware's check (the
    simulator needs none), but a board given it never comes online. `wisp provision` without WISP_WIFI_SSID
    writes one, with a note the user may not have read."""
    import json
    if config_text is None:  # a ready image (flash --image), or deploy leaving the board's config as it is
        return
    wifi = json.loads(config_text).get("wifi")
    if not (isinstance(wifi, dict) and wifi.get("ssid")):
        print("wisp: warning: its config has no Wi-Fi (wifi.ssid): the board will not come online; run "
              "`WISP_WIFI_SSID=<network> WISP_WIFI_PASSWORD=<password> wisp provision <id>` again, or add "
              '"wifi": {"ssid": ..., "password": ...} to the config', file=sys.stderr)


def cmd_image(args):
    from tools import boards, image
    config, files = device_config(args)
    if args.firmware:
        layout = boards.read_firmware(args.firmware).layout(args.flash_size)
    else:
        layout = boards.default_layout(args.mp_version or "1.26", args.flash_size)
    name = args.device or Path(args.config).stem
    out = args.output or DEFAULT_IMAGE_DIR / f"{name}-fs.img"
    info = image.make_image(out, config, layout.vfs_size, mp_version=args.mp_version, verify=not args.no_verify,
                            lines=args.lines, extra_files=files)
    print(f"wisp: {info['image']}: {info['image_bytes']} bytes ({layout.vfs_size // 1024} KiB vfs at "
          f"{layout.vfs_offset:#x}; {layout.source}), {info['used_bytes']} bytes used, {info['files']} files, "
          f".mpy {info['mpy_bytes']} bytes (from {info['source_bytes']} bytes of .py)"
          + ("; mounted and imported on the MicroPython unix port" if info.get("verified") else ""))
    warn_without_wifi(config)
    return 0


def cmd_flash(args):
    from tools import flash
    config, files = (None, {}) if args.image else device_config(args)
    name = args.device or Path(args.config or args.image or "wisp").stem
    if args.merge is not None:
        out = args.merge or DEFAULT_IMAGE_DIR / f"{name}-factory.bin"
        info = flash.merge(out, args.firmware, config, flash_size=args.flash_size or "4MB",
                           chip=args.chip, image=args.image, mp_version=args.mp_version, lines=args.lines,
                           extra_files=files)
        print(f"wisp: {info['merged']}: {info['bytes']} bytes, mode 0600; write it at 0x0 "
              f"(esptool write-flash 0x0 {info['merged']}); image-info ok, filesystem read back: "
              f"{info['files']} files, device id {info['device']}. It holds this device's identity and "
              f"secrets: use it for that one board only")
        warn_without_wifi(config)
        return 0
    if not args.port:
        raise ValueError("--port is needed to flash a board (or --merge OUT.bin for a factory image)")
    flash.flash(args.port, args.firmware, config, DEFAULT_IMAGE_DIR / f"{name}-fs.img", flash_size=args.flash_size,
                chip=args.chip, erase=args.erase, baud=args.baud, image=args.image, dry_run=args.dry_run,
                mp_version=args.mp_version, lines=args.lines, extra_files=files)
    if not args.dry_run:
        print(f"wisp: flashed; `wisp repl --port {args.port}` shows the board's console")
    warn_without_wifi(config)
    return 0


def cmd_deploy(args):
    from tools import deploy, repl
    from tools.listen import BrokerUnreachable, Listener
    repl.check_port(args.port)
    config, files = device_config(args, required=False)
    source = Path(args.source) if args.source else FIRMWARE
    if not (source / "main.py").exists():
        raise ValueError(f"--source {source} has no main.py; point it at a wisp firmware/ directory")
    result = deploy.deploy(args.port, config, prune=not args.no_prune, reset=False, mp_version=args.mp_version,
                           firmware=source, lines=args.lines, extra_files=files)
    for rel in result.copied:
        print(f"  copied   {rel}")
    for rel in result.removed:
        print(f"  removed  {rel}")
    total = len(result.copied) + result.unchanged
    print(f"wisp: copied {len(result.copied)} of {total} files ({result.bytes_copied} bytes), removed "
          f"{len(result.removed)} stale, {result.unchanged} unchanged")
    warn_without_wifi(config)
    if args.no_reset:
        return 0
    identity = None if args.no_wait else deploy.board_identity(args.port)
    if identity is None:
        repl.soft_reset(args.port)
        print("wisp: soft-reset" + ("" if args.no_wait else "; the board has no readable config.json, so "
                                    "whether it came back online is not checked"))
        return 0
    dev_id, host, port = identity
    host, port = resolve_broker(args.broker) if args.broker else (host, port)
    try:
        with Listener(host, port, [f"wisp/{dev_id}/status"], name="deploy", login=resolve_login(args.fleet)) as lis:
            deploy.reset_and_wait_online(args.port, dev_id, lis, timeout_s=args.wait)
    except BrokerUnreachable as e:
        repl.soft_reset(args.port)
        print(f"wisp: soft-reset; whether '{dev_id}' came back is not checked: {e} (--no-wait skips the check)")
        return 1
    print(f"wisp: soft-reset; '{dev_id}' is back online on {host}:{port}")
    return 0


def cmd_provision(args):
    from bridge.address import join_host_port
    from tools import provision, sim
    fleet = provision.fleet_dir(args.fleet)
    # without --broker, the address the fleet has: running it again must not move the fleet to
    # whichever broker happens to run on this machine
    host, port = resolve_broker(args.broker) if args.broker else (provision.broker_address(fleet)
                                                                   or resolve_broker(None, args.fleet))
    pins = None
    if args.pins:
        from tools.jsonfile import read_object
        pins = read_object(args.pins, f"--pins {args.pins}")[1]
    if pins is None and not provision.device_config_path(fleet, args.device).exists():
        pins = sim.DEFAULT_PINS
    out = provision.provision(args.device, fleet, host, port,
                              wifi_ssid=args.ssid or os.environ.get("WISP_WIFI_SSID"),
                              wifi_password=args.wifi_password or os.environ.get("WISP_WIFI_PASSWORD"),
                              pins=pins, rotate=args.rotate, ntp=ntp_servers(args.ntp))
    print(f"wisp: device '{args.device}' provisioned for broker {host}:{port}"
          + (" (credentials rotated)" if out["rotated"] else ""))
    for key in ("config", "passwd", "acl", "mosquitto_conf", "mosquitto_d", "bridge_toml"):
        print(f"  {key:15s}{out[key]}")
    if out["moved_from"]:
        print(f"  note: the fleet's broker moved from {join_host_port(*out['moved_from'])} to "
              f"{join_host_port(host, port)} (mosquitto.conf listens on port {port} only)")
    for (old_host, old_port), ids in out["behind"].items():
        print(f"  note: {', '.join(ids)} still connect{'s' if len(ids) == 1 else ''} to "
              f"{join_host_port(old_host, old_port)}: run `wisp provision {ids[0]}` again"
              f"{' (and for each of the others)' if len(ids) > 1 else ''} and give it its new config.json "
              f"(`wisp deploy --device {ids[0]}`, or `wisp flash`)")
    if not out["wifi"]:
        print("  note: no Wi-Fi yet; set WISP_WIFI_SSID / WISP_WIFI_PASSWORD and run again for a real board")
    if host in ("127.0.0.1", "localhost"):
        print(f"  note: a real board cannot reach {host}; use --broker <this computer's LAN address>:{port}")
    return 0


def ntp_servers(text):
    """--ntp "192.168.1.1" -> "192.168.1.1"; "a,b" -> ["a", "b"] (config.json's "ntp": one or a list)."""
    if text is None:
        return None
    servers = [s.strip() for s in text.split(",") if s.strip()]
    if not servers:
        raise ValueError("--ntp needs a host, host:port, or a comma-separated list of them")
    return servers[0] if len(servers) == 1 else servers


def cmd_repl(args):
    from tools import repl
    if args.exec is not None:
        rc, out = repl.run_code(args.port, args.exec, resume=not args.stay)
        sys.stdout.write(out)
        return rc
    return repl.interactive(args.port, resume=not args.stay)
