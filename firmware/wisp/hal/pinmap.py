# GPIO facts of the classic ESP32 (WROOM/WROVER modules), shared by the real and simulated
# boards so a config behaves the same on both. wisp/pins.py turns them into refusals.
MAX_PIN = 39
FORBIDDEN = (6, 7, 8, 9, 10, 11)      # the SPI flash bus: touching them crashes the chip
MISSING = (20, 24, 28, 29, 30, 31)    # no such GPIO on a classic ESP32
INPUT_ONLY = (34, 35, 36, 37, 38, 39)  # no output driver and no internal pull resistors
ADC1 = (32, 33, 34, 35, 36, 37, 38, 39)  # ADC2 pins read garbage while Wi-Fi is on
CAUTION = (0, 1, 2, 3, 12, 15)        # boot strapping pins and UART0 (the REPL): wiring can stop boot
