"""Where things live in an ESP32's flash for a MicroPython release: bootloader, app, and the vfs region.

Sources (MicroPython repository, ports/esp32):
- v1.20-v1.25 ship one partition table per flash size, partitions-4MiB.csv / -8MiB.csv / -16MiB.csv:
  factory app at 0x10000 (0x1F0000 bytes), then `vfs` at 0x200000 filling the rest of the flash
  (4 MiB: 0x200000 bytes, 8 MiB: 0x600000, 16 MiB: 0xE00000). The same table appears in
  mp-image-tool-esp32's listing of ESP32_GENERIC-20240602-v1.23.0.bin.
- v1.26 and later ship one table for every board with 4 MiB or more, partitions-4MiBplus.csv, which
  stops after `factory`; its header says "The remaining flash is for the user filesystem(s)". The
  firmware registers the vfs region at boot from the end of the last partition to the end of the
  detected flash. Its factory size has changed between releases (0x1F0000, later 0x210000), so when a
  firmware file is given we read its own partition table instead of trusting this file's numbers.
- The firmware .bin from micropython.org holds bootloader + partition table + app and is written at the
  bootloader offset: 0x1000 on ESP32 and ESP32-S2, 0x0 on the newer chips (ESP-IDF's
  CONFIG_BOOTLOADER_OFFSET_IN_FLASH). The partition table sits at 0x8000 in flash on all of them.
- VfsLfs2 on ESP32 uses the partition's 4096-byte erase block (esp32_partition.c BLOCK_SIZE_BYTES).
"""
import hashlib
import struct
from dataclasses import dataclass

BLOCK_SIZE = 4096                 # bytes per LittleFS block = the flash erase sector
PARTITION_TABLE_OFFSET = 0x8000   # absolute flash address of the partition table
PARTITION_TABLE_MAX = 0xC00       # bytes ESP-IDF reserves for the table (95 entries + MD5)
ESP_IMAGE_MAGIC = 0xE9
_IMAGE_HEADER_BYTES = 24          # image header (8) + extended header (16)
_MAX_SEGMENTS = 16                # esptool refuses images with more
_ENTRY = struct.Struct("<2sBBLL16sL")
_ENTRY_MAGIC = b"\xAA\x50"
_MD5_MAGIC = b"\xEB\xEB"

MB = 1024 * 1024
FLASH_SIZES = {"4MB": 4 * MB, "8MB": 8 * MB, "16MB": 16 * MB}
# The oldest MicroPython the firmware runs on (firmware/main.py refuses older ones at boot: it needs
# asyncio streams with TLS and TCP_NODELAY). The one place the host tools take it from.
MIN_MICROPYTHON = (1, 23)
OLD_TABLES = "%d.%d-1.25" % MIN_MICROPYTHON     # one partition table per flash size, with a vfs entry
MP_SERIES = (OLD_TABLES, "1.26+")


@dataclass(frozen=True)
class Chip:
    name: str          # esptool's --chip name
    boot_offset: int   # where the MicroPython .bin is written
    image_id: int      # chip id in the ESP image extended header (esptool IMAGE_CHIP_ID)


CHIPS = {c.name: c for c in (
    Chip("esp32", 0x1000, 0),
    Chip("esp32s2", 0x1000, 2),
    Chip("esp32c3", 0x0, 5),
    Chip("esp32s3", 0x0, 9),
    Chip("esp32c6", 0x0, 13),
)}
CHIP_BY_IMAGE_ID = {c.image_id: c for c in CHIPS.values()}


@dataclass(frozen=True)
class Partition:
    name: str
    type: int
    subtype: int
    offset: int
    size: int

    @property
    def end(self):
        return self.offset + self.size


@dataclass(frozen=True)
class Layout:
    series: str        # "1.23-1.25" or "1.26+" (OLD_TABLES)
    flash_size: int
    app_offset: int
    app_size: int
    vfs_offset: int
    vfs_size: int
    source: str        # where the numbers came from, shown to the user

    @property
    def vfs_blocks(self):
        return self.vfs_size // BLOCK_SIZE


class BoardError(Exception):
    """A layout or firmware problem, phrased for the person holding the board."""


def flash_bytes(flash_size):
    if flash_size not in FLASH_SIZES:
        raise BoardError(f"flash size {flash_size!r} is not supported; choose one of {', '.join(FLASH_SIZES)}")
    return FLASH_SIZES[flash_size]


def check_mp_version(version):
    """(major, minor) of a release like '1.24' or 'v1.26.1'; BoardError when it is not one, or is
    older than the firmware runs on."""
    parts = str(version).lstrip("v").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        raise BoardError(f"MicroPython version {version!r} is not like 1.24 or 1.26.1") from None
    if (major, minor) < MIN_MICROPYTHON:
        raise BoardError(f"MicroPython {version} is too old: wisp needs {'.'.join(map(str, MIN_MICROPYTHON))} or "
                         f"later (asyncio streams with TLS, TCP_NODELAY; the board would refuse to start)")
    return major, minor


def mp_series(version):
    """'1.24' / 'v1.24.1' -> '1.23-1.25'; '1.26' and later -> '1.26+'."""
    return OLD_TABLES if check_mp_version(version) <= (1, 25) else "1.26+"


def default_layout(version, flash_size="4MB"):
    """The stock layout of a MicroPython release on a generic ESP32 board (see the module docstring)."""
    total = flash_bytes(flash_size)
    series = mp_series(version)
    app_offset, app_size = 0x10000, 0x1F0000
    if series == OLD_TABLES:
        source = f"partitions-{total // MB}MiB.csv of MicroPython v1.20-v1.25"
    else:
        source = "partitions-4MiBplus.csv of MicroPython v1.26+, vfs = rest of flash"
    vfs_offset = app_offset + app_size
    return Layout(series, total, app_offset, app_size, vfs_offset, total - vfs_offset, source)


def parse_partition_table(data):
    """Partitions from the binary table (32-byte entries, ended by the MD5 entry or erased flash)."""
    parts = []
    for pos in range(0, min(len(data), PARTITION_TABLE_MAX) - _ENTRY.size + 1, _ENTRY.size):
        magic, ptype, subtype, offset, size, label, _flags = _ENTRY.unpack_from(data, pos)
        if magic != _ENTRY_MAGIC:
            break
        parts.append(Partition(label.rstrip(b"\0").decode(errors="replace"), ptype, subtype, offset, size))
    return parts


def partition_table_bytes(parts):
    """The binary form ESP-IDF's gen_esp32part.py writes: entries, an MD5 entry, then 0xFF padding."""
    body = b"".join(_ENTRY.pack(_ENTRY_MAGIC, p.type, p.subtype, p.offset, p.size,
                                p.name.encode()[:16].ljust(16, b"\0"), 0) for p in parts)
    body += _MD5_MAGIC + b"\xff" * 14 + hashlib.md5(body).digest()
    return body.ljust(PARTITION_TABLE_MAX, b"\xff")


@dataclass(frozen=True)
class Firmware:
    path: str
    size: int
    chip: Chip
    partitions: tuple

    def layout(self, flash_size="4MB"):
        """The vfs region this firmware will mount on a board with `flash_size` of flash."""
        total = flash_bytes(flash_size)
        app = next((p for p in self.partitions if p.type == 0), None)
        if app is None:
            raise BoardError(f"{self.path}: its partition table has no app partition")
        vfs = next((p for p in self.partitions if p.name == "vfs"), None)
        if vfs is not None:  # v1.20-1.25: the table says where the filesystem is
            series, offset, size = OLD_TABLES, vfs.offset, vfs.size
            source = f"the firmware's partition table, vfs at {vfs.offset:#x}"
        else:                # v1.26+: the firmware claims everything after the last partition at boot
            series = "1.26+"
            offset = _align_up(max(p.end for p in self.partitions), BLOCK_SIZE)
            size = total - offset
            source = "the firmware's partition table, no vfs entry: rest of flash, as v1.26+ does at boot"
        if offset + size > total or size <= 0:
            raise BoardError(f"{self.path}: its filesystem region {offset:#x}+{size:#x} does not fit "
                             f"{flash_size} of flash; is --flash-size right?")
        if self.chip.boot_offset + self.size > app.end:
            raise BoardError(f"{self.path} is {self.size} bytes: larger than its own app region")
        return Layout(series, total, app.offset, app.size, offset, size, source)


def read_firmware(path):
    """Check that `path` is a MicroPython ESP32 firmware image and read its chip and partition table."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BoardError(f"firmware file {path} does not exist; download the .bin for your board from "
                         "micropython.org/download") from None
    except OSError as e:
        raise BoardError(f"cannot read firmware file {path}: {e.strerror}") from None
    if data[:1] == bytes([ESP_IMAGE_MAGIC]) and len(data) < _IMAGE_HEADER_BYTES:
        raise BoardError(f"{path} is cut short ({len(data)} bytes): download it again from micropython.org/download")
    if len(data) < _IMAGE_HEADER_BYTES or data[0] != ESP_IMAGE_MAGIC:
        first = f"{data[0]:#04x}" if data else "nothing"
        raise BoardError(f"{path} is not an ESP firmware image (first byte {first}, expected 0xe9); "
                         "use the .bin file from micropython.org/download, not .uf2/.hex/.elf")
    image_id = struct.unpack_from("<H", data, 12)[0]
    chip = CHIP_BY_IMAGE_ID.get(image_id)
    if chip is None:
        raise BoardError(f"{path} is for an ESP chip wisp does not know (image chip id {image_id})")
    table_at = PARTITION_TABLE_OFFSET - chip.boot_offset
    parts = parse_partition_table(data[table_at:table_at + PARTITION_TABLE_MAX])
    if not parts:
        raise BoardError(f"{path} has no partition table at {PARTITION_TABLE_OFFSET:#x}: it looks like a bare "
                         "app image; use the full firmware .bin from micropython.org/download")
    app = next((p for p in parts if p.type == 0), None)
    for what, at in (("bootloader", 0), ("app", app.offset - chip.boot_offset if app else None)):
        end = None if at is None else image_end(data, at)
        if at is not None and (end is None or end > len(data)):
            raise BoardError(f"{path} is cut short or damaged: its {what} image at {at + chip.boot_offset:#x} is not "
                             f"complete in the file's {len(data)} bytes; download it again from "
                             "micropython.org/download")
    return Firmware(str(path), len(data), chip, tuple(parts))


def image_end(data, at):
    """Where the ESP image starting at data[at] ends (its segments, the checksum byte at the end of a
    16-byte block, and the SHA-256 when one is appended: esptool's LoadFirmwareImage), or None when
    there is no image header there. An end past len(data) means the file was cut short."""
    if len(data) < at + _IMAGE_HEADER_BYTES or data[at] != ESP_IMAGE_MAGIC:
        return None
    segments, hash_appended = data[at + 1], data[at + 23] == 1
    if not 0 < segments <= _MAX_SEGMENTS:
        return None
    pos = at + _IMAGE_HEADER_BYTES
    for _ in range(segments):
        if pos + 8 > len(data):
            return pos + 8
        pos += 8 + struct.unpack_from("<I", data, pos + 4)[0]
    pos += 15 - (pos - at) % 16 + 1       # padding up to the checksum byte, which ends a 16-byte block
    return pos + (32 if hash_appended else 0)


def _align_up(n, step):
    return (n + step - 1) // step * step
