# The log ring over MQTT (`wisp logs`): the whole ring, and new lines, as JSON the host reads.
import json

from fakeboard import make_device, run
from mpcheck import check, eq

from wisp import log as wlog
from wisp import logfeed


def test_the_whole_ring_goes_out_a_line_per_piece():
    # ~2 KB of JSON when full: one block that a heap fragmented after hours may not have
    dev = make_device()
    for i in range(wlog.RING_SIZE + 3):
        wlog.log('line %d says "%s"' % (i, "x" * 200))
    run(logfeed.send(dev, wlog.RING_SIZE, ring=True))
    pieces = dev.link.pieces["wisp/t1/log"]
    body = json.loads("".join(pieces))
    eq(body["ring"], True, "ring flag")
    eq(len(body["lines"]), wlog.RING_SIZE, "lines")
    t, text = body["lines"][-1]
    check(text.startswith('line %d says "xxx' % (wlog.RING_SIZE + 2)) and len(text) < wlog.RING_LINE,
          "last line %r" % text)
    check(isinstance(t, int) and t > 1500000000, "a unix time, whatever the board's epoch: %r" % t)
    longest = max(len(p) for p in pieces)
    check(longest <= wlog.RING_LINE + 40, "a %d-character piece" % longest)


def test_new_lines_only_and_no_ring_flag():
    dev = make_device()
    wlog.log("one")
    wlog.log("two")
    run(logfeed.send(dev, 1))
    body = json.loads(dev.link.sent[-1][1])
    eq([text for _t, text in body["lines"]], ["two"], "lines")
    check("ring" not in body, "only a log/get answer is the ring: %r" % body)


def test_the_repl_reads_the_same_lines():
    wlog.log("for the repl")
    eq(logfeed.lines(1)[0][1], "for the repl", "text")
