# What a frozen wisp firmware adds to the port's own frozen modules (tools/frozen_manifest.py; the
# 32-bit builds of bench/frozen32.py freeze the same). MicroPython's build reads this file as Python
# with its working directory here. It stages the package as the other builds compile it (constants
# inlined, private names shortened: tools/constfold.py) into build/frozen/ of this checkout, since
# frozen source as it is would keep wisp.limits loaded and every module's public constants as globals,
# heap a frozen firmware need not spend. main.py imports wispboot before the package, so both are
# frozen. boot.py and main.py stay on the board's filesystem: MicroPython runs only those two names.
import os
import sys

_checkout = os.path.dirname(os.getcwd())
if "tools" in sys.modules and not sys.modules["tools"].__file__.startswith(_checkout):
    raise ImportError("another 'tools' package is loaded: cannot stage the wisp firmware")
sys.path.insert(0, _checkout)
from tools.constfold import stage_package  # noqa: E402

_staged = str(stage_package(os.path.join(_checkout, "build", "frozen"), os.path.join(_checkout, "firmware")))
package("wisp", base_path=_staged, opt=1)  # noqa: F821
module("wispboot.py", base_path=_staged, opt=1)  # noqa: F821
