# Runs first on every ESP32 boot. Kept minimal so a broken main.py still leaves a usable REPL.
import gc

gc.collect()
