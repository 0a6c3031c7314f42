"""The package's shape from its own imports: modules, floors, import arrows, circles.

The floors are declared here, once, bottom to top (docs/design.md shows them): a
module may import modules of its own floor and of floors below; an import of a
floor above is an arrow back up, and each one is listed in ``UP`` with why.
``tests/test_layout.py`` holds the package to them; ``python tests/layout.py
[PACKAGE_DIR]`` prints the counts (for any tree, an old checkout's too).
"""
import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fastcap"

# (floor, the module prefixes on it), bottom to top. The CS231n modules keep their
# assignment paths at the top of the package and stand on the floor of what they are.
FLOORS = (
    ("runtime", ("fastcap.runtime",)),
    ("kernels", ("fastcap._kernels",)),
    ("model", ("fastcap.model", "fastcap.rnn_layers", "fastcap.classifiers", "fastcap.optim",
               "fastcap.gradient_check", "fastcap.metrics")),
    ("data", ("fastcap.data", "fastcap.coco_utils", "fastcap.image_utils")),
    ("train", ("fastcap.train", "fastcap.captioning_solver")),
    ("inference", ("fastcap.inference",)),
    ("cli", ("fastcap.cli", "fastcap.__main__")),
    ("api", ("fastcap",)),  # fastcap/__init__.py: the public names
)

# The arrows back up that the design keeps, and why.
UP = {
    ("fastcap.runtime.backends", "fastcap._kernels"):
        "the registry checks every backend it loads against the kernel table",
    ("fastcap.data.prepare", "fastcap.train.options"):
        "prepare() checks its Python arguments with the command line's declarations of them",
}


def modules(root=ROOT):
    """{module name: path} of every .py file of the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(root=ROOT):
    """[(importer, imported, inside a function)] of the package's imports of its own modules."""
    mods = modules(root)
    package = root.name
    found = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join(here + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names]
                targets = [s for s in subs if s in mods] + ([base] if any(s not in mods for s in subs) else [])
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and target.split(".")[0] == package:
                    found.append((name, target, id(node) in in_function))
    return found


def floor(module):
    """The index in FLOORS of the floor `module` stands on (its longest prefix there; the
    package itself matches only its own name), or None for a module no floor holds."""
    best, index = -1, None
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            inside = module == p or (module.startswith(p + ".") and "." in p)
            if inside and len(p) > best:
                best, index = len(p), i
    return index


def circles(arrows):
    """The strongly connected sets of two or more modules (Tarjan)."""
    graph = {}
    for a, b in arrows:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def depth(arrows):
    """The longest chain of imports (in modules), circles counted as one module."""
    graph = {}
    for a, b in arrows:
        graph.setdefault(a, set()).add(b)
    memo = {}

    def level(v, seen):
        if v in memo:
            return memo[v]
        if v in seen:
            return 0
        seen = seen | {v}
        memo[v] = 1 + max((level(w, seen) for w in graph.get(v, ())), default=0)
        return memo[v]

    return max((level(v, frozenset()) for v in graph), default=0)


def report(root=ROOT):
    mods = modules(root)
    found = imports(root)
    arrows = sorted({(a, b) for a, b, _ in found})
    up = [(a, b) for a, b in arrows
          if floor(a) is not None and floor(b) is not None and floor(b) > floor(a)]
    return {
        "modules": len(mods),
        "folders": len({p.parent for p in mods.values()}),
        "import chain (longest)": depth(arrows),
        "arrows": len(arrows),
        "arrows back up": up,
        "modules on no floor": [m for m in mods if floor(m) is None],
        "circles": circles(arrows),
        "imports inside functions": [(a, b) for a, b, inside in found if inside],
    }


if __name__ == "__main__":
    r = report(pathlib.Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT)
    for key, value in r.items():
        if isinstance(value, list):
            print(f"{key}: {len(value)}")
            for item in value:
                print(f"  {item}")
        else:
            print(f"{key}: {value}")
