"""A virtual board's console reads like a board's: every line ends "\r\n" on the terminal side, while
mpremote's raw REPL and Ctrl-C keep working (tools/vdev.py, real socat + MicroPython unix port)."""
import os
import pty
import re
import select
import subprocess
import sys
import termios
import time

import pytest
import serial

from tools import vdev

BARE_LF = re.compile(rb"(?<!\r)\n")


def read_until(port, marker, timeout=10):
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{marker!r} not seen; got {seen[-300:]!r}")
        seen += port.read(port.in_waiting or 1)
    return seen


@pytest.fixture
def console(tmp_path):
    """A board running main.py (it prints, then works until interrupted), and its console port."""
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text("import time\nprint('booted')\nprint('line one\\nline two')\n"
                                   "while True:\n    time.sleep(0.05)\n")
    with vdev.start(flash) as d, serial.Serial(d.tty, 115200, timeout=0.2) as port:
        yield d, port


def test_interactive_repl_lines_end_in_crlf_never_a_bare_lf(console):
    _, port = console
    seen = read_until(port, b"line one\r\nline two\r\n")      # main.py's prints, as a board shows them
    port.write(b"\x03")                                       # Ctrl-C interrupts main.py
    seen += read_until(port, b">>> ")
    assert b"KeyboardInterrupt" in seen
    port.write(b"print('a'); print('b\\nc')\r")
    seen += read_until(port, b"a\r\nb\r\nc\r\n>>> ")
    port.write(b"1/0\r")
    seen += read_until(port, b"ZeroDivisionError: divide by zero\r\n>>> ")
    assert b"Traceback (most recent call last):\r\n" in seen
    port.write(b"\x04")                                       # Ctrl-D: the board reboots into main.py
    seen += read_until(port, b"booted\r\nline one\r\nline two\r\n")
    assert not BARE_LF.search(seen), seen


def test_wisp_repl_shows_lines_that_end_in_crlf(console):
    """Through `wisp repl` (mpremote's REPL, which puts the user's terminal in raw mode), as a person sees it."""
    d, _ = console
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "repl", "--port", d.tty, "--stay"],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    try:
        pty_read_until(master, b"exit this shell\r\n")
        deadline = time.monotonic() + 10
        while termios.tcgetattr(master)[3] & termios.ICANON:   # until mpremote makes the terminal raw
            assert time.monotonic() < deadline, "mpremote never put the terminal in raw mode"
            time.sleep(0.01)
        os.write(master, b"\x03")    # stops main.py
        seen = pty_read_until(master, b">>> ")
        os.write(master, b"print('a'); print('b\\nc')\r")
        seen = seen[seen.index(b"Traceback"):] + pty_read_until(master, b"c\r\n>>> ")
        assert b"a\r\nb\r\nc\r\n>>> " in seen and not BARE_LF.search(seen), seen
        os.write(master, b"\x1d")   # Ctrl-] leaves
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def pty_read_until(fd, marker, timeout=10):
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{marker!r} not seen; got {seen[-300:]!r}")
        if select.select([fd], [], [], left)[0]:
            seen += os.read(fd, 4096)
    return seen


def mpremote_exec(tty, code):
    return subprocess.run([sys.executable, "-m", "mpremote", "connect", tty, "resume", "exec", code],
                          capture_output=True, timeout=30)


def test_mpremote_raw_repl_output_passes_byte_for_byte_even_while_the_board_boots(console):
    """exec's output, LF bytes included, arrives as the interpreter wrote it (mpremote's protocol),
    also when mpremote's Ctrl-C and Ctrl-A arrive while the interpreter is still starting."""
    d, port = console
    payload = bytes(range(5, 128))   # 0x04 ends the raw REPL's output, >= 0x80 is not UTF-8
    code = f"import sys; sys.stdout.buffer.write(bytes(range(5, 128))); print(); print('x', {len(payload)})"
    done = mpremote_exec(d.tty, code)   # at once: the interpreter may not have started yet
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == payload + b"\nx 123\n"
    port.write(b"\x04")                 # mpremote left it at the friendly REPL: soft reset, then at once
    done = mpremote_exec(d.tty, "print('after reset')")
    assert done.returncode == 0 and done.stdout == b"after reset\n", done.stdout + done.stderr


def test_keys_sent_right_behind_a_soft_reset_reach_the_next_start(console):
    """A soft reset's Ctrl-D, then at once Ctrl-C and Ctrl-A (what `wisp repl` then mpremote send):
    the rebooted board's main.py is interrupted and the raw REPL opens, nothing is lost."""
    _, port = console
    read_until(port, b"line two\r\n")
    port.write(b"\x03")
    read_until(port, b">>> ")
    port.write(b"\x04\r\x03\r\x01")
    seen = read_until(port, b"raw REPL; CTRL-B to exit\r\n>")
    assert b"KeyboardInterrupt" in seen


@pytest.mark.parametrize("cut", [1, 3, 10, 20, 30])
def test_a_crlf_or_a_banner_split_across_two_reads_is_seen_whole(cut):
    out = (b">>> print(1)\r\n1\r\n>>> \r\nraw REPL; CTRL-B to exit\r\n>OK1\n\x04\x04>"
           b'\r\nMicroPython\r\nType "help()" for more information.\r\n>>> print(2)\r\n2\n')
    whole = vdev.Console().feed(out)
    c = vdev.Console()
    assert c.feed(out[:cut]) + c.feed(out[cut:]) == whole
    assert b">OK1\n\x04" in whole and whole.endswith(b">>> print(2)\r\n2\r\n")
    c = vdev.Console()
    assert b"".join(c.feed(out[i:i + 1]) for i in range(len(out))) == whole   # one byte per read
    c = vdev.Console()
    assert c.feed(b"ok\n\x18\x02\n\x00") == b"ok\r\n\x18\x02\n\x00"   # mpremote mount's binary protocol
