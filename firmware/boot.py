# Runs first on every ESP32 boot. Kept minimal so a broken main.py still leaves a usable REPL.
# Outputs go to their safe level before anything else loads: relays must not float meanwhile.
try:
    from wisp.hal import Board, early
    early.drive(Board())
    del Board, early
except Exception as e:
    print("wisp: boot: outputs not set early:", repr(e))
import gc

gc.collect()
