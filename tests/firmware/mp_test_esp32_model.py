# What a real ESP32 does that a desktop does not, modelled on the simulated board: a Wi-Fi
# driver that keeps retrying by itself (and refuses a second connect() meanwhile), a boot
# that must never end at the REPL.
from hwdevice import set_inputs
from mpcheck import check, eq

from wisp.hal import sim

WIFI = {"wifi": {"ssid": "home", "password": "pw"}}


async def test_wifi_up_after_the_router_boots_slower_than_the_board():
    set_inputs({"wifi": False})  # power cut: the router is still booting
    board = sim.Board()
    board.wifi_timeout_ms = 400
    logged = []
    check(not await board.connect_network(WIFI, logged.append), "connected with no access point")
    check(not await board.connect_network(WIFI, logged.append), "connected with no access point")
    check(not any("Internal" in line for line in logged), "the retry hit the driver error: %r" % logged)
    set_inputs(None)  # the router is up
    check(await board.connect_network(WIFI, logged.append), "did not connect once the router was up")
    eq(board.wlan.connects, 2, "connect() calls (the driver joined by itself once the router was up)")


async def test_a_driver_error_is_logged_and_retried_not_raised():
    set_inputs({"wifi": False})
    board = sim.Board()
    board.wlan.connect("home")  # something else already started the driver's retries
    board._wifi["asked"] = True
    board.wlan.disconnect = lambda: None  # a driver that refuses even that
    logged = []
    check(not await board.connect_network(WIFI, logged.append), "connected through a driver error")
    check("Wifi Internal Error" in logged[-1], logged)


def test_an_error_at_start_is_logged_then_the_board_resets():
    from wisp import app
    from wisp import log as wlog

    async def broken(path):
        raise MemoryError("memory allocation failed")
    app.FATAL_WAIT_MS, real = 0, app.main
    app.main = broken
    try:
        app.start()
        raise Exception("start() returned: the board would sit at the REPL")
    except SystemExit as e:  # the simulated board's reset()
        eq(e.args[0], 3, "exit code of a reset")
    finally:
        app.main = real
    check("fatal: MemoryError" in wlog.recent(1)[0], wlog.recent())
