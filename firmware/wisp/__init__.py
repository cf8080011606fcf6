# wisp: an AI agent for cheap microcontrollers. Kept empty so `import wisp.x` loads only x.
VERSION = "0.1.0"
