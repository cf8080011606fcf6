# Simulated PWM, ADC and I2C for hal/sim.py, loaded on their first use: a session that only
# switches pins never pays heap for them (the ESP32 never loads any of the simulator).
ADC_VOLTS = 3.3        # full scale of the simulated 12-bit ADC
ENODEV = 19            # errno machine.I2C raises when no device acknowledges


class SimPWM:
    def __init__(self, freq, duty_u16):
        self._freq, self._duty = freq, duty_u16

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        self._duty = d


class SimADC:
    def __init__(self, board, num):
        self.board, self.num = board, num

    def read(self):
        raw = self.board.inputs().get("adc", {}).get(str(self.num), 0)
        return min(4095, max(0, int(raw)))

    def volts(self):
        return self.read() * ADC_VOLTS / 4095


class SimI2C:
    """Devices are register maps from sim_inputs.json ("i2c": {"0x76": {"0xD0": [96]}}: a list
    fills consecutive registers). Writes are kept in memory on top of the file."""

    def __init__(self, board):
        self.board = board
        self.pointer = {}   # addr -> register the next read starts at
        self.written = {}   # (addr, reg) -> byte

    def _regs(self, addr):
        for key, regs in self.board.inputs().get("i2c", {}).items():
            if int(key, 0) == addr:
                out = {}
                for reg, data in regs.items():
                    r = int(reg, 0)
                    for b in data if isinstance(data, list) else (data,):
                        out[r & 0xFF] = int(b) & 0xFF
                        r += 1
                return out
        raise OSError(ENODEV)  # what machine.I2C raises when nothing acknowledges

    def scan(self):
        return sorted(int(k, 0) for k in self.board.inputs().get("i2c", {}))

    def readfrom(self, addr, n):
        regs, reg = self._regs(addr), self.pointer.get(addr, 0)
        out = bytearray(n)
        for i in range(n):
            r = (reg + i) & 0xFF
            out[i] = self.written.get((addr, r), regs.get(r, 0))
        self.pointer[addr] = (reg + n) & 0xFF
        return bytes(out)

    def writeto(self, addr, buf, stop=True):
        self._regs(addr)
        if buf:
            reg = buf[0]
            for i, b in enumerate(buf[1:]):
                self.written[(addr, (reg + i) & 0xFF)] = b
            self.pointer[addr] = reg
        return len(buf)

    def readfrom_mem(self, addr, reg, n):
        self.writeto(addr, bytes((reg,)), False)
        return self.readfrom(addr, n)

    def writeto_mem(self, addr, reg, buf):
        self.writeto(addr, bytes((reg,)) + bytes(buf))
