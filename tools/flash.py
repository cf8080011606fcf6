"""`wisp flash`: write MicroPython and the device's filesystem image to a board with esptool, or merge both
into one factory image of that one device (written at 0x0, e.g. by a web flasher or by someone without
this checkout). The image carries the device's identity and secrets, so it is written 0600 and is good
for that one board only: a fleet is flashed one `wisp flash --device <id>` per board. Every esptool step
is a printed command (`--dry-run` shows them and stops); offsets come from the firmware's own partition
table (tools/boards.py).
"""
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools import boards
from tools.image import ImageError, make_image, verify_image
from tools.private import write_private

DEFAULT_BAUD = 460800       # what micropython.org's ESP32 instructions use for write-flash
# esptool 5 renamed the commands (write_flash -> write-flash, merge_bin -> merge-bin, ...) and
# detect_flash_size(esp) returns the size: an esptool 4 says "invalid choice" halfway through.
MIN_ESPTOOL = (5, 0)


class FlashError(Exception):
    pass


@dataclass
class Plan:
    firmware: boards.Firmware
    layout: boards.Layout
    image: str
    commands: list


def esptool(*args):
    return [sys.executable, "-m", "esptool", *args]


def check_esptool():
    """A FlashError naming the fix when this Python has no esptool, or one older than MIN_ESPTOOL."""
    try:
        from esptool import __version__ as version
    except ImportError:
        version = None
    try:
        found = tuple(int(part) for part in str(version).split(".")[:2])
    except ValueError:
        found = (0, 0)
    if found < MIN_ESPTOOL:
        need = ".".join(map(str, MIN_ESPTOOL))
        has = f"esptool {version}" if version else "no esptool"
        raise FlashError(f"`wisp flash` needs esptool {need} or later and {sys.executable} has {has}: "
                         f"{sys.executable} -m pip install 'esptool>={need}'")


def check_chip(firmware, chip):
    """`chip`: what the user said (--chip) or esptool detected; refuse a firmware built for another chip."""
    if chip and chip != "auto" and chip != firmware.chip.name:
        raise FlashError(f"{firmware.path} is built for {firmware.chip.name}, but the board is {chip}: "
                         f"download the {chip.upper()} firmware from micropython.org/download")


def check_image_fits(image_path, layout):
    size = Path(image_path).stat().st_size
    if size > layout.vfs_size:
        raise FlashError(f"filesystem image {image_path} is {size} bytes, bigger than the board's "
                         f"{layout.vfs_size}-byte vfs region at {layout.vfs_offset:#x}; {layout.source}")


def write_commands(port, firmware, layout, image, baud=DEFAULT_BAUD, erase=False):
    chip = firmware.chip
    cmds = []
    if erase:
        cmds.append(esptool("--chip", chip.name, "--port", port, "erase-flash"))
    cmds.append(esptool("--chip", chip.name, "--port", port, "--baud", str(baud), "write-flash",
                        f"{chip.boot_offset:#x}", firmware.path, f"{layout.vfs_offset:#x}", str(image)))
    return cmds


def merge_command(firmware, layout, image, out, flash_size):
    return esptool("--chip", firmware.chip.name, "merge-bin", "-o", str(out), "--flash-size", flash_size,
                   f"{firmware.chip.boot_offset:#x}", firmware.path, f"{layout.vfs_offset:#x}", str(image))


def show(cmd):
    return " ".join(shlex.quote(c) for c in cmd)


def check_port(port):
    """A clear error for a port that does not exist, listing the ones that do."""
    if os.path.exists(port):
        from tools.repl import ConsoleError
        from tools.repl import check_port as check_serial
        try:
            check_serial(port)     # a directory or a plain file is no port
        except ConsoleError as e:
            raise FlashError(str(e)) from None
        return
    try:
        from serial.tools.list_ports import comports
        seen = sorted(p.device for p in comports())
    except ImportError:
        seen = []
    hint = f"ports seen: {', '.join(seen)}" if seen else "no serial ports are visible: is the USB cable a data cable?"
    raise FlashError(f"no such port {port}; {hint}")


def detect(port, baud=115200):
    """Ask the board on `port` what it is: (esptool chip name, flash size like '4MB')."""
    check_port(port)
    from esptool.cmds import detect_chip, detect_flash_size
    try:
        esp = detect_chip(port, baud)
        try:
            size = detect_flash_size(esp)
            name = esp.CHIP_NAME.lower().replace("-", "")
        finally:
            esp._port.close()
    except Exception as e:  # esptool raises FatalError / SerialException with its own text
        why = " ".join(str(e).split())
        raise FlashError(f"no board answered on {port} ({why}); hold BOOT, tap EN/RST, and try again") from None
    return name, size


def build_fs_image(out, config, layout, mp_version=None, lines=False, extra_files=None):
    """The filesystem image for `layout`; too much firmware for the region is a FlashError."""
    try:
        return make_image(out, config, layout.vfs_size, mp_version=mp_version, lines=lines, extra_files=extra_files)
    except ImageError as e:
        raise FlashError(str(e)) from None


def flash(port, firmware_path, config, image_out, flash_size=None, chip=None, erase=False, baud=DEFAULT_BAUD,
          image=None, dry_run=False, mp_version=None, log=print, lines=False, extra_files=None):
    """Write firmware + filesystem to the board on `port`. The filesystem image is `image`, else built from
    `config` (and `extra_files`, what it names, e.g. its CA) into `image_out` (also on --dry-run, so the
    printed commands can be run by hand)."""
    check_esptool()
    firmware = boards.read_firmware(firmware_path)
    check_chip(firmware, chip)
    if not dry_run:
        detected_chip, detected_size = detect(port)
        check_chip(firmware, detected_chip)
        flash_size = flash_size or detected_size
    layout = firmware.layout(flash_size or "4MB")
    log(f"wisp: {firmware.chip.name}, {layout.flash_size // boards.MB} MB flash, MicroPython {layout.series}; "
        f"filesystem {layout.vfs_size // 1024} KiB at {layout.vfs_offset:#x}; from {layout.source}")
    if image is None:
        image = image_out
        build_fs_image(image, config, layout, mp_version, lines, extra_files)
    else:
        check_image_fits(image, layout)
    cmds = write_commands(port, firmware, layout, image, baud, erase)
    for cmd in cmds:
        log(show(cmd))
        if not dry_run and subprocess.call(cmd) != 0:
            raise FlashError(f"esptool failed: {show(cmd)}")
    return cmds


def merge(out, firmware_path, config, flash_size="4MB", chip=None, image=None, mp_version=None, log=print,
          lines=False, extra_files=None):
    """One factory image (written at 0x0) holding MicroPython and this device's filesystem, identity and
    secrets included (so 0600); verified."""
    check_esptool()
    firmware = boards.read_firmware(firmware_path)
    check_chip(firmware, chip)
    layout = firmware.layout(flash_size)
    with tempfile.TemporaryDirectory(prefix="wisp-merge-") as tmp:
        if image is None:
            image = Path(tmp) / "fs.img"
            build_fs_image(image, config, layout, mp_version, lines, extra_files)
        else:
            check_image_fits(image, layout)
        merged = Path(tmp) / "merged.bin"   # esptool writes world-readable files: move it in 0600
        cmd = merge_command(firmware, layout, image, merged, flash_size)
        log(show(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise FlashError(f"esptool merge-bin failed: {(done.stderr or done.stdout).strip()}")
        write_private(out, merged.read_bytes())
        return verify_merged(out, firmware, layout, image, Path(tmp))


def verify_merged(out, firmware, layout, image, tmp):
    """esptool image-info on the app inside the merged file, and the filesystem read back and mounted."""
    data = Path(out).read_bytes()
    app = tmp / "app.bin"
    app.write_bytes(data[layout.app_offset:layout.app_offset + layout.app_size])
    info = subprocess.run(esptool("--chip", firmware.chip.name, "image-info", str(app)),
                          capture_output=True, text=True)
    if info.returncode != 0:
        raise FlashError(f"esptool image-info rejects the app in {out}: {(info.stderr or info.stdout).strip()}")
    fs = data[layout.vfs_offset:layout.vfs_offset + layout.vfs_size]
    if fs.rstrip(b"\xff") != Path(image).read_bytes().rstrip(b"\xff"):
        raise FlashError(f"the filesystem in {out} differs from the image that went in")
    back = tmp / "fs-back.img"
    back.write_bytes(fs.ljust(layout.vfs_size, b"\xff"))
    files, dev_id = verify_image(back)
    return {"merged": str(out), "bytes": len(data), "files": len(files), "device": dev_id,
            "image_info": info.stdout, "layout": layout}
