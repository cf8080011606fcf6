"""Move the firmware's long strings out of its compiled code into one file on flash, read back when
used: `"mqtt: read failed: %r"` in a function body compiles as `_S(12)`, and `wisp/strings.bin`
holds string 12.

Why: a .mpy file's strings are copied into the heap when the module loads, and stay there while it
is loaded: for the modules resident between requests that was ~9 KB of a no-PSRAM ESP32's heap
(log lines, error texts, JSON keys; each string a 16-byte object plus its characters rounded up to
16 bytes), ~3 KB once moved. Read back from flash, a string costs heap only while it is in use.
Reading one is an open, a seek and a read of a small file, fine for what these strings are: log
lines, errors, replies and keys read once per message, not inner loops.

Only strings that mpy-cross would not intern anyway (longer than 10 bytes), no longer than LONGEST,
and only inside function bodies: a string at module or class level is evaluated once at import
and would stay in the heap either way. Docstrings and the parts of f-strings stay as they are.
Release builds only (`--lines` builds keep every string in place); ROMFS images and frozen builds
keep them too, since there the characters already stay in flash.

The catalog is one file for the whole package, written with the package (image, deploy, update
bundles), so a module and the catalog it reads always come from the same build. Strings are
numbered over every module of the package, whichever of them a build ships, so a module compiles
to the same bytes in an image and in an update bundle. String n is at the offset in 2-byte
little-endian entry n of the header, up to entry n + 1.
"""
import ast
from pathlib import Path

CATALOG = "wisp/strings.bin"
READER = "flash_text"      # reads string n of the catalog
READER_MODULE = "wisp/__init__.py"  # holds the reader, so its own strings stay
LOCAL = "_S"               # what a module calls it
INTERNED_MAX = 10          # MICROPY_ALLOC_PARSE_INTERN_STRING_LEN: shorter strings become names anyway
LONGEST = 200              # a longer string stays: read back it needs one block that size, which a
                           # fragmented heap may lack (a 959-byte one failed where resident it fitted)
MAX_BYTES = 0xFFFF         # 2-byte offsets


class CatalogError(Exception):
    """The strings do not fit the catalog's format."""


class Catalog:
    """The strings moved out of one build's modules, numbered in the order first met."""

    def __init__(self):
        self.strings = []
        self.numbers = {}

    def number(self, text):
        if text not in self.numbers:
            self.numbers[text] = len(self.strings)
            self.strings.append(text)
        return self.numbers[text]

    def blob(self):
        """The file: a header of len(strings) + 1 offsets, then the UTF-8 strings end to end."""
        data = [s.encode("utf-8") for s in self.strings]
        at = 2 * (len(data) + 1)
        offsets = []
        for d in data:
            offsets.append(at)
            at += len(d)
        offsets.append(at)
        if at > MAX_BYTES:
            raise CatalogError(f"{at} bytes of strings: more than the catalog's {MAX_BYTES}")
        return b"".join(o.to_bytes(2, "little") for o in offsets) + b"".join(data)


def package_catalog(package_dir):
    """The catalog of every module in package_dir (the wisp package), numbered in path order."""
    catalog = Catalog()
    package_dir = Path(package_dir)
    for path in sorted(package_dir.rglob("*.py")):
        if not moves_strings(path.relative_to(package_dir.parent).as_posix()):
            continue
        try:
            move_strings(path.read_text(encoding="utf-8"), catalog)
        except SyntaxError:
            continue  # mpy-cross says where, naming the module
        except CatalogError as e:
            raise CatalogError(f"{path}: {e}") from None
    return catalog


def moves_strings(shown_name):
    """Whether the module at this path in the package (wisp/agent.py) gets its strings moved."""
    return shown_name != READER_MODULE


def movable(text):
    return isinstance(text, str) and INTERNED_MAX < len(text.encode("utf-8")) <= LONGEST


class _Mover(ast.NodeTransformer):
    def __init__(self, catalog):
        self.catalog = catalog
        self.in_function = False
        self.moved = 0

    def _function(self, node):
        # decorators, defaults and annotations are evaluated where the def is: keep the outer rule
        for field in ("decorator_list", "args", "returns"):
            value = getattr(node, field, None)
            if isinstance(value, list):
                setattr(node, field, [self.visit(v) for v in value])
            elif value is not None:
                setattr(node, field, self.visit(value))
        outer, self.in_function = self.in_function, True
        node.body = [self.visit(stmt) for stmt in node.body]
        self.in_function = outer
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node):
        node.args = self.visit(node.args)
        outer, self.in_function = self.in_function, True
        node.body = self.visit(node.body)
        self.in_function = outer
        return node

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Constant):
            return node  # a docstring or a bare constant: not compiled into anything
        return self.generic_visit(node)

    def visit_JoinedStr(self, node):
        return node  # an f-string's parts must stay constants

    def visit_Constant(self, node):
        if not (self.in_function and movable(node.value)):
            return node
        self.moved += 1
        call = ast.Call(ast.Name(LOCAL, ast.Load()), [ast.Constant(self.catalog.number(node.value))], [])
        return ast.copy_location(call, node)


def move_strings(source, catalog):
    """source (one firmware module) with the long strings of its function bodies read from the
    catalog; unchanged when it has none."""
    tree = ast.parse(source)
    if any(isinstance(n, ast.Name) and n.id == LOCAL for n in ast.walk(tree)):
        raise CatalogError(f"the module already uses the name {LOCAL}")
    mover = _Mover(catalog)
    tree = mover.visit(tree)
    if not mover.moved:
        return source
    body = tree.body
    at = 1 if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) else 0
    while at < len(body) and isinstance(body[at], ast.ImportFrom) and body[at].module == "__future__":
        at += 1
    body.insert(at, ast.ImportFrom("wisp", [ast.alias(READER, LOCAL)], 0))
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"
