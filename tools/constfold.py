"""Inline the firmware's named constants at build time: `limits.NAME` (or `cron.KIND`) becomes the
number the module gives it with `NAME = const(<int>)`, and the import goes wherever nothing else
uses it.

Why: mpy-cross folds `const()` only inside the module that defines it. Every other module read a
limit as `limits.NAME` at run time, so the device kept wisp.limits loaded for good: its bytecode, its
globals dict and ~90 interned names, ~5 KB of a 32-bit heap, plus a global and an attribute lookup at
each use. In the same way a module that needs only cron's field numbers need not load cron's parser.
The source stays as it is (one place for each limit); the simulator and the firmware tests run it
unchanged. Used by tools/image.py (.mpy files, OTA bundles), tools/romfs.py and, through
tools/frozen_wisp.py, frozen firmware builds.
"""
import ast
import shutil
from pathlib import Path

from tools import flashtext, shortnames

PACKAGE = "wisp"


def module_source(src, shown_name, consts, kept=None, catalog=None):
    """The text to compile for firmware module `src` (shown_name: its path in the package, e.g.
    wisp/agent.py): the constants of `consts` (package_consts) inlined and, given `kept`
    (tools/shortnames.py package_kept), its private names shortened and, given `catalog`
    (tools/flashtext.py package_catalog), the long strings of its functions read from flash; None
    when it is compiled as it is."""
    if consts is None or not shown_name.startswith(PACKAGE + "/"):
        return None
    source = Path(src).read_text(encoding="utf-8")
    try:
        folded = inline(source, consts)
        if kept is not None:
            folded = shortnames.shorten(folded, kept)
        if catalog is not None and flashtext.moves_strings(shown_name):
            folded = flashtext.move_strings(folded, catalog)
    except SyntaxError:  # mpy-cross says where, naming the module
        return None
    return None if folded == source else folded


def stage_package(dest, firmware_dir):
    """Copy the wisp package and wispboot (which main.py imports first) into dest as the builds that
    run them in place from flash compile them (ROMFS image, frozen firmware): constants inlined and
    private names shortened, as in .mpy files. Returns dest."""
    dest, firmware_dir = Path(dest), Path(firmware_dir)
    shutil.rmtree(dest / PACKAGE, ignore_errors=True)
    shutil.copytree(firmware_dir / PACKAGE, dest / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(firmware_dir / "wispboot.py", dest / "wispboot.py")
    consts = package_consts(dest / PACKAGE)
    kept = shortnames.package_kept(dest / PACKAGE, firmware_dir.glob("*.py"), consts)
    for src in sorted((dest / PACKAGE).rglob("*.py")):
        text = module_source(src, src.relative_to(dest).as_posix(), consts, kept)
        if text is not None:
            src.write_text(text, encoding="utf-8")
    return dest


def package_consts(package_dir):
    """{"wisp.limits": {NAME: int}, ...}: the public `NAME = const(<int>)` of every module of the
    package in package_dir. Read once per build, after the whole package is in place."""
    package_dir = Path(package_dir)
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
        try:
            consts = read_consts(path)
        except SyntaxError:
            continue
        if consts:
            found[".".join(parts)] = consts
    return found


def read_consts(path):
    """{NAME: int} of every top-level `NAME = const(<int>)` whose name is public (no leading _)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        value = shortnames.int_const(node) if isinstance(node, ast.Assign) else None
        if value is not None and not node.targets[0].id.startswith("_"):
            found[node.targets[0].id] = value
    return found


def inline(source, consts):
    """source (text of one firmware module) with each `<module>.NAME` of a module imported as
    `from wisp import <module>` replaced by its value. Each such import goes when the scope it binds
    (its function, or the module) has no other use of the name left."""
    tree = ast.parse(source)
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def scope_of(node):  # the innermost function around node, or None for the module
        node = parent.get(node)
        while node is not None and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            node = parent.get(node)
        return node

    bindings = {}  # (bound name, scope) -> module
    imports = []   # (ImportFrom node, alias, bound name, scope)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                full = node.module + "." + alias.name
                if full in consts:
                    bound = alias.asname or alias.name
                    bindings[(bound, scope_of(node))] = full
                    imports.append((node, alias, bound, scope_of(node)))
    names = {b for b, _ in bindings}
    names -= _rebound(tree, names, consts)
    if not names:
        return source

    def in_fstring(node):  # positions inside f-strings are not reliable before Python 3.12: left alone
        while node is not None:
            if isinstance(node, ast.JoinedStr):
                return True
            node = parent.get(node)
        return False

    def binder(name_node):  # the scope whose import the name refers to, as Python resolves it
        scope = scope_of(name_node)
        while True:
            if (name_node.id, scope) in bindings:
                return scope
            if scope is None:
                return False  # not bound by one of these imports
            scope = scope_of(scope)

    edits, uses = [], {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Name) and node.id in names):
            continue
        scope = binder(node)
        if scope is False:
            continue
        attr = parent.get(node)
        module_consts = consts[bindings[(node.id, scope)]]
        if (isinstance(attr, ast.Attribute) and attr.value is node and isinstance(attr.ctx, ast.Load)
                and attr.attr in module_consts and attr.lineno == attr.end_lineno and not in_fstring(attr)):
            edits.append((attr.lineno, attr.col_offset, attr.end_col_offset, "(%d)" % module_consts[attr.attr]))
        else:
            uses[(node.id, scope)] = uses.get((node.id, scope), 0) + 1  # a use that still needs the module
    dropped = {}
    for node, alias, bound, scope in imports:
        if bound in names and not uses.get((bound, scope)):
            dropped.setdefault(node, []).append(alias)
    lines = source.splitlines(keepends=True)
    for node, gone in dropped.items():
        if node.lineno != node.end_lineno:
            raise ValueError("line %d: a multi-line import of a module with constants is not handled" % node.lineno)
        kept = [a for a in node.names if a not in gone]
        text = ", ".join(a.name if a.asname is None else "%s as %s" % (a.name, a.asname) for a in kept)
        new = "from %s import %s" % (node.module, text) if kept else "pass"
        end = len(lines[node.lineno - 1].rstrip("\r\n").encode("utf-8"))
        edits.append((node.lineno, node.col_offset, min(node.end_col_offset, end), new))
    return _apply(lines, edits)


def _rebound(tree, names, consts):
    """Those of names that are also bound some other way (an argument, an assignment, another
    import): left alone."""
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            out.update(a.asname or a.name for a in n.names
                       if (a.asname or a.name) in names and "%s.%s" % (n.module, a.name) not in consts)
        if isinstance(n, ast.Name) and n.id in names and not isinstance(n.ctx, ast.Load):
            out.add(n.id)
        elif isinstance(n, ast.arg) and n.arg in names:
            out.add(n.arg)
        elif isinstance(n, ast.Import):
            out.update(a.asname or a.name.split(".")[0] for a in n.names if (a.asname or a.name.split(".")[0]) in names)
    return out


def _apply(lines, edits):
    for line, start, end, new in sorted(edits, reverse=True):  # right to left, so offsets stay true
        raw = lines[line - 1].encode("utf-8")
        lines[line - 1] = (raw[:start] + new.encode("utf-8") + raw[end:]).decode("utf-8")
    return "".join(lines)
