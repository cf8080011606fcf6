"""Shorten the firmware's module-private names at build time: a module's own `_helpers`, `_TABLES`
and `_Classes` become `_0`, `_1`, ... in its compiled code.

Why: loading a .mpy file interns every name in it, and MicroPython never frees an interned name.
Each costs its characters in the heap for good, even after the module is unloaded again (the
per-request modules are). Numbered names are the same few names in every module, interned once:
~140 private names over an agent session, ~900 characters of heap and of .mpy files. The source
stays as it is; the simulator and the firmware tests run it unchanged.

Release builds only: builds that keep line numbers for debugging (`--lines`) keep the names too, so
their tracebacks read as the source. For a release traceback, `python -m tools.shortnames
firmware/wisp/<module>.py` prints which number is which name.

Only names the module binds at its top level (def, class, assignment) are shortened, and only where
nothing else can see them: a name used as an attribute or imported anywhere in the package, written
in a string, bound again inside a function or class, passed as a keyword, or used in an f-string is
kept.

A public integer constant (`NAME = const(3)`) that no other module reads at run time, because the
build wrote its number wherever it is used (tools/constfold.py), is numbered too: `_4 = const(3)`
is folded by mpy-cross and leaves no global, no name and no bytecode behind. Whole modules of
limits and cron's field numbers compile to almost nothing so.
"""
import ast
import io
import re
import sys
import tokenize
from pathlib import Path

SHORT = re.compile(r"_\d+$")
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
           ast.GeneratorExp)


def package_kept(package_dir, also=(), consts=None):
    """The names no module may shorten, because other modules (or the files in `also`: boot.py,
    main.py, wispboot.py) may reach them: every attribute name, imported name and string of them.
    consts: the package's constants (tools/constfold.py package_consts), read as the build inlines
    them in the package's modules, so a constant whose every use became its number is no longer
    reached. The files in `also` are not inlined (boot.py and main.py stay source on the board)."""
    from tools.constfold import inline
    kept = set()
    package = sorted(Path(package_dir).rglob("*.py"))
    for path in [*package, *map(Path, also)]:
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(inline(source, consts) if consts and path in package else source)
        except (SyntaxError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                kept.add(node.attr)
            elif isinstance(node, ast.alias):
                kept.update((node.name.split(".")[0], node.asname or node.name))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                kept.add(node.value)
    return kept


def short_names(source, kept):
    """{private name: its number} for one module's source."""
    tree = ast.parse(source)
    hidden = _bound_inside(tree) | _keywords_and_fstrings(tree)
    names = [n for n in _top_level_private(tree) if n not in kept and n not in hidden]
    if any(SHORT.match(t.string) for t in _tokens(source) if t.type == tokenize.NAME):
        return {}  # a numbered name is already in use: leave the module alone rather than clash
    return {name: "_%d" % i for i, name in enumerate(names)}


def shorten(source, kept):
    """source (one firmware module) with its module-private names numbered (short_names)."""
    short = short_names(source, kept)
    if not short:
        return source
    lines = source.splitlines(keepends=True)
    edits, previous = [], None
    for tok in _tokens(source):
        if tok.type == tokenize.NAME and tok.string in short and not (previous and previous.string == "."):
            edits.append((tok.start, tok.end, short[tok.string]))
        if tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
            previous = tok
    for (row, col), (_row, end), new in reversed(edits):  # right to left, so offsets stay true
        lines[row - 1] = lines[row - 1][:col] + new + lines[row - 1][end:]
    return "".join(lines)


def _tokens(source):
    return tokenize.generate_tokens(io.StringIO(source).readline)


def _top_level_private(tree):
    """Private names the module binds at its top level (also in top-level if/try blocks), and its
    public integer constants, in the order first bound. `_X = const(...)` is left alone: mpy-cross
    drops those names already."""
    found = []

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound = [node.name]
            elif isinstance(node, ast.Assign) and int_const(node) is not None:
                found.extend(n.id for n in node.targets if not n.id.startswith("_") and n.id not in found)
                continue
            elif isinstance(node, ast.Assign) and not _is_const(node.value):
                bound = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            elif isinstance(node, (ast.If, ast.Try)):
                for part in (node.body, node.orelse, getattr(node, "finalbody", []),
                             *[h.body for h in getattr(node, "handlers", [])]):
                    visit(part)
                continue
            else:
                continue
            found.extend(n for n in bound if n.startswith("_") and not n.startswith("__") and n not in found)

    visit(tree.body)
    return found


def _is_const(value):
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "const"


def int_const(node):
    """The number of an assignment `NAME = const(<int literal>)`, the constants mpy-cross folds
    wherever it can see them; None for any other assignment."""
    if not (len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and _is_const(node.value)
            and len(node.value.args) == 1):
        return None
    try:
        value = ast.literal_eval(node.value.args[0])
    except ValueError:  # an expression, such as 1 << 4
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bound_inside(tree):
    """Names bound inside a function, class or comprehension (locals, arguments, methods, class
    attributes, except targets, imports): their tokens belong to another scope."""
    out = set()
    for scope in ast.walk(tree):
        if not isinstance(scope, _SCOPES):
            continue
        declared_global = {n for node in ast.walk(scope) if isinstance(node, ast.Global) for n in node.names}
        for node in ast.walk(scope):
            if node is scope:
                continue
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load) and node.id not in declared_global:
                out.add(node.id)
            elif isinstance(node, ast.arg):
                out.add(node.arg)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(node.name)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                out.add(node.name)
            elif isinstance(node, ast.alias):
                out.add(node.asname or node.name.split(".")[0])
    return out


def _keywords_and_fstrings(tree):
    """Keyword argument names, and every name used in an f-string (before Python 3.12 tokenize sees
    an f-string as one string token, so its names cannot be edited)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg:
            out.add(node.arg)
        elif isinstance(node, ast.JoinedStr):
            out.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
    return out


def main(argv=None):
    """Print the number -> name map of firmware modules (to read a release build's traceback)."""
    from tools.constfold import inline, package_consts
    from tools.paths import FIRMWARE
    paths = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    if not paths:
        print("usage: python -m tools.shortnames firmware/wisp/<module>.py ...", file=sys.stderr)
        return 2
    consts = package_consts(FIRMWARE / "wisp")
    kept = package_kept(FIRMWARE / "wisp", FIRMWARE.glob("*.py"), consts)
    for path in paths:
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as e:
            print(f"{path}: {e.strerror}", file=sys.stderr)
            return 2
        names = short_names(inline(source, consts), kept)
        for name, short in names.items():
            print("%s %s %s" % (path.as_posix(), short, name))
        if not names:   # say so: silence reads like a broken tool
            print(f"{path.as_posix()}: no name shortened (each top-level name is public or reached from "
                  f"elsewhere), so its tracebacks show the real names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
