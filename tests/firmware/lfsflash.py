# An ESP32's flash as LittleFS sees it, for power-cut tests on the MicroPython unix port: a block
# device (MicroPython's extended block protocol: readblocks/writeblocks with an offset, ioctl 1-6)
# over a bytearray, with the ESP32's geometry and NOR semantics, that can lose power after a
# given number of program/erase operations. Runs on MicroPython only (vfs.VfsLfs2).
import os

import vfs

BLOCK_SIZE = 4096       # the ESP32 partition's erase sector (ports/esp32/esp32_partition.c)
BLOCK_COUNT = 512       # a 4 MB board: the vfs region is the 2 MB after the firmware
_EIO = -5               # what a dead flash answers: littlefs passes it up as OSError(EIO)
_PROG, _ERASE = 0, 1


class Flash:
    """NOR flash: an erase sets a whole block to 0xFF, a program can only clear bits (the result
    is old AND new). Every program and erase counts as one operation, numbered from 0. With
    cut_at=N, operation N is where the power fails: it and every later one do nothing and
    return an error, except that a torn cut (torn=k of 4) does the first k quarters of
    operation N's bytes (a program stops part way, an erase leaves the rest of its block as it
    was). What operations 0..N-1 did is the flash a fresh boot finds."""

    def __init__(self, image, cut_at=None, torn=0, erased=None):
        self.image = image
        self.mv = memoryview(image)
        self.blocks = len(image) // BLOCK_SIZE
        self.ops = 0              # operations asked for so far, done or not
        self.cut_at = cut_at
        self.torn = torn
        self.dead = False
        self.overwrites = 0       # programs over bytes not erased: littlefs must never need one
        self.erased = erased      # {block: erases}, counted when given (wear, metadata compactions)

    # ---- the block protocol (docs.micropython.org, library/vfs.html "Block devices") ----------
    def readblocks(self, block, buf, off=0):
        at = block * BLOCK_SIZE + off
        buf[:] = self.mv[at:at + len(buf)]

    def writeblocks(self, block, buf, off=None):
        if off is None:  # the simple protocol erases whole blocks first (littlefs never uses it)
            for b in range(block, block + len(buf) // BLOCK_SIZE):
                if self._op(_ERASE, b, 0, None):
                    return _EIO
            off = 0
        return self._op(_PROG, block, off, buf)

    def ioctl(self, op, arg):
        if op == 4:   # block count
            return self.blocks
        if op == 5:   # block size
            return BLOCK_SIZE
        if op == 6:   # erase one block
            return self._op(_ERASE, arg, 0, None)
        return 0      # 1 init, 2 deinit, 3 sync: nothing is cached here

    # ---- the flash ---------------------------------------------------------------------------
    def _op(self, kind, block, off, data):
        n = self.ops
        self.ops += 1
        if self.dead:
            return _EIO
        at = block * BLOCK_SIZE + off
        size = BLOCK_SIZE if kind == _ERASE else len(data)
        if n == self.cut_at:
            self.dead = True
            size = size * self.torn // 4
            if not size:
                return _EIO
        if kind == _ERASE:
            if self.erased is not None:
                self.erased[block] = self.erased.get(block, 0) + 1
            self.mv[at:at + size] = _ONES[:size]
        elif bytes(self.mv[at:at + size]) == _ONES[:size]:
            self.mv[at:at + size] = data[:size]
        else:
            for i in range(size):
                old, new = self.image[at + i], data[i]
                if old & new != new:
                    self.overwrites += 1
                self.image[at + i] = old & new
        return _EIO if self.dead else 0


_ONES = b"\xff" * BLOCK_SIZE


def blank(blocks=BLOCK_COUNT):
    """An erased flash region."""
    return bytearray(_ONES * blocks)


def mkfs(image):
    """Make a LittleFS2 volume on image as MicroPython's first boot does (esp32 inisetup.py)."""
    vfs.VfsLfs2.mkfs(Flash(image))


def mount(flash, path="/flash"):
    """Mount the flash at path as an ESP32 boot does (_boot.py: vfs.mount(bdev, "/"), which finds
    LittleFS2 and opens it with VfsLfs2's defaults: read/prog size 32, lookahead 32, mtime on),
    and make path the current directory, the firmware's flash root. Raises OSError when it
    cannot: on a board that is the "filesystem appears to be corrupted" loop, a bricked device."""
    vfs.mount(flash, path)
    os.chdir(path)


def unmount(path="/flash"):
    os.chdir("/")
    try:
        vfs.umount(path)
    except OSError:
        pass
