"""Inline the firmware's limits at build time: `limits.NAME` becomes the number firmware/wisp/limits.py
gives it, and `limits` leaves the module's imports when nothing else uses it.

Why: mpy-cross folds `const()` only inside the module that defines it. Every other module reads a limit
as `limits.NAME` at run time, so the device kept wisp.limits loaded for good: its bytecode, its globals
dict and ~90 interned names, ~5 KB of a 32-bit heap, plus a global and an attribute lookup at each use.
Inlined, the compiled modules carry the numbers and wisp.limits is never imported on the device. The
source stays as it is (one place for each limit); the simulator and the firmware tests run it unchanged.
"""
import ast
from pathlib import Path

LIMITS_MODULE = "limits"  # imported as `from wisp import limits`


def module_source(src, shown_name):
    """The text to compile for firmware module `src` (shown_name: its path in the package, e.g.
    wisp/agent.py), limits inlined; None when it is compiled as it is."""
    if shown_name == "wisp/%s.py" % LIMITS_MODULE or not shown_name.startswith("wisp/"):
        return None
    limits_py = Path(src).parents[len(Path(shown_name).parts) - 2] / ("%s.py" % LIMITS_MODULE)
    if not limits_py.is_file():  # a firmware tree without limits (e.g. a test's own)
        return None
    source = Path(src).read_text(encoding="utf-8")
    try:
        folded = inline_limits(source, read_limits(limits_py))
    except SyntaxError:  # mpy-cross says where, naming the module
        return None
    return None if folded == source else folded


def read_limits(path):
    """{NAME: int} of every `NAME = const(<int>)` in limits.py."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                and node.value.func.id == "const" and len(node.value.args) == 1):
            value = ast.literal_eval(node.value.args[0])
            if isinstance(value, int) and not isinstance(value, bool):
                found[node.targets[0].id] = value
    return found


def inline_limits(source, limits):
    """source (text of one firmware module) with each `limits.NAME` replaced by its value. The import
    of `limits` goes when no other use of the name is left; otherwise the source keeps it."""
    tree = ast.parse(source)
    if not _imports_limits(tree) or _rebinds_limits(tree):
        return source
    edits = []  # (line, start col, end col, new text), cols in UTF-8 bytes as ast gives them
    left = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == LIMITS_MODULE:
            if node.attr in limits and isinstance(node.ctx, ast.Load) and node.lineno == node.end_lineno:
                edits.append((node.lineno, node.col_offset, node.end_col_offset, "(%d)" % limits[node.attr]))
                continue
        if isinstance(node, ast.Name) and node.id == LIMITS_MODULE:
            left += 1  # a use not inlined: an unknown name, a store, or `limits` passed on
    left -= sum(1 for e in edits)  # each inlined attribute's own `limits` Name was counted too
    if left == 0:
        edits.extend(_import_edits(tree, source))
    return _apply(source, edits)


def _rebinds_limits(tree):
    """True when `limits` is also a local name somewhere (an argument, an assignment): left alone."""
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and n.id == LIMITS_MODULE and not isinstance(n.ctx, ast.Load):
            return True
        if isinstance(n, ast.arg) and n.arg == LIMITS_MODULE:
            return True
    return False


def _imports_limits(tree):
    return any(isinstance(n, ast.ImportFrom) and n.module == "wisp" and n.level == 0
               and any(a.name == LIMITS_MODULE and a.asname is None for a in n.names) for n in tree.body)


def _import_edits(tree, source):
    """Edits dropping `limits` from every module-level `from wisp import ...` that names it."""
    edits = []
    lines = source.splitlines(keepends=True)
    for node in tree.body:
        if not (isinstance(node, ast.ImportFrom) and node.module == "wisp" and node.level == 0):
            continue
        kept = [a for a in node.names if not (a.name == LIMITS_MODULE and a.asname is None)]
        if len(kept) == len(node.names):
            continue
        if node.lineno != node.end_lineno:
            raise ValueError("line %d: a multi-line `from wisp import` naming limits is not handled" % node.lineno)
        names = ", ".join(a.name if a.asname is None else "%s as %s" % (a.name, a.asname) for a in kept)
        new = "from wisp import %s" % names if kept else "pass"
        end = len(lines[node.lineno - 1].rstrip("\r\n").encode("utf-8"))
        edits.append((node.lineno, node.col_offset, min(node.end_col_offset, end), new))
    return edits


def _apply(source, edits):
    lines = source.splitlines(keepends=True)
    for line, start, end, new in sorted(edits, reverse=True):  # right to left, so offsets stay true
        raw = lines[line - 1].encode("utf-8")
        lines[line - 1] = (raw[:start] + new.encode("utf-8") + raw[end:]).decode("utf-8")
    return "".join(lines)
