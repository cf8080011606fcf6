"""Build structurally real MicroPython-style ESP32 firmware files for tests: a bootloader image, the
partition table at 0x8000, an app image at 0x10000, all laid out as in micropython.org's .bin downloads.
esptool parses and checks them (magic, chip id, segment checksum); they just do not boot."""
import struct

from tools import boards

_DRAM = {"esp32": 0x3FFB0000, "esp32s3": 0x3FC88000}


def esp_image(chip_id, payload, load_addr=0x3FFB0000):
    data = payload + b"\0" * (-len(payload) % 4)
    header = struct.pack("<BBBBI", boards.ESP_IMAGE_MAGIC, 1, 2, 0x20, load_addr)
    # extended header: wp pin 0xEE (disabled), drive strengths, chip id, revisions, no appended SHA256
    header += struct.pack("<BBBBHBHH4sB", 0xEE, 0, 0, 0, chip_id, 0, 0, 0xFFFF, b"\0" * 4, 0)
    body = header + struct.pack("<II", load_addr, len(data)) + data
    checksum = 0xEF
    for b in data:
        checksum ^= b
    body += b"\0" * (15 - len(body) % 16)
    return body + bytes([checksum])


def micropython_bin(chip="esp32", series="1.23-1.25", app_bytes=64 * 1024):
    c = boards.CHIPS[chip]
    parts = [boards.Partition("nvs", 1, 2, 0x9000, 0x6000), boards.Partition("phy_init", 1, 1, 0xF000, 0x1000),
             boards.Partition("factory", 0, 0, 0x10000, 0x1F0000)]
    if series == "1.23-1.25":
        parts.append(boards.Partition("vfs", 1, 0x81, 0x200000, 0x200000))
    addr = _DRAM.get(chip, 0x3FC80000)
    out = bytearray(b"\xff" * (0x10000 - c.boot_offset))
    boot = esp_image(c.image_id, b"bootloader" * 100, addr)
    out[0:len(boot)] = boot
    table = boards.partition_table_bytes(parts)
    at = boards.PARTITION_TABLE_OFFSET - c.boot_offset
    out[at:at + len(table)] = table
    return bytes(out) + esp_image(c.image_id, bytes(range(256)) * (app_bytes // 256), addr)
