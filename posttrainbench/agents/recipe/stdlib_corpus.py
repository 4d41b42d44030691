"""HumanEval-style completion tasks mined from the Python standard library, so code training works offline.

Each task is a self-contained module-level function with a docstring: the prompt is the imports and the few
module-level helpers it needs, then its signature and docstring (HumanEval prompts look the same); the answer is
the whole function in a fenced block, the shape HumanEval's scorer extracts (it keeps what follows the first
`:\\n    ` of the first code block, i.e. the body). Sources are parsed with `ast`, never imported, so modules
with import-time side effects (`antigravity`, `this`) are harmless.
"""

import ast
import builtins
import copy
import sysconfig
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Test suites, GUIs, demos and vendored/legacy trees: their functions rely on fixtures or are not idiomatic code.
SKIP_DIRS = {
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "distutils",
}
BUILTINS = frozenset(dir(builtins))
MIN_DOC, MAX_DOC = 20, 1200
MIN_BODY_LINES, MAX_BODY_LINES = 2, 40
MAX_SIGNATURE = 140
MAX_HELPERS, MAX_HELPER_LINES = 6, 80


@dataclass(frozen=True)
class CodeTask:
    name: str
    module: str
    prompt: str  # imports, helpers, signature and docstring, ending with a newline, like a HumanEval prompt
    solution: str  # the full function (signature + body), without the docstring

    def answer(self) -> str:
        return f"```python\n{self.solution}```"


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(part in SKIP_DIRS or part.startswith("config-") for part in rel[:-1]):
            continue
        if rel[-1].startswith("test_") or rel[-1] == "__main__.py":
            continue
        files.append(path)
    return files


def _module_imports(tree: ast.Module) -> dict[str, str]:
    """Bound name -> the import statement that binds it (absolute imports at module level only)."""
    bound: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                stmt = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                bound[alias.asname or alias.name.split(".")[0]] = stmt
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if alias.name == "*":
                    continue
                stmt = f"from {node.module} import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                bound[alias.asname or alias.name] = stmt
    return bound


def _free_names(func: ast.FunctionDef) -> set[str] | None:
    """Names the function reads but does not bind itself; None when it declares globals or nonlocals."""
    bound = {func.name}
    loaded: set[str] = set()
    for node in ast.walk(func):
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            return None
        if isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            bound.add(node.name)
    return loaded - bound - BUILTINS


def _signature(func: ast.FunctionDef) -> str:
    bare = copy.copy(func)
    bare.body = [ast.Pass()]
    bare.decorator_list = []
    return ast.unparse(bare).splitlines()[0]


def _definitions(tree: ast.Module) -> dict[str, ast.stmt]:
    """Module-level helpers a task may carry along in its prompt: undecorated functions and simple constants."""
    defs: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.decorator_list:
            defs[node.name] = node
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            defs[node.targets[0].id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            defs[node.target.id] = node
    return defs


def _needs(node: ast.stmt) -> set[str] | None:
    if isinstance(node, ast.FunctionDef):
        return _free_names(node)
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return names - BUILTINS


def _closure(func: ast.FunctionDef, imports: dict[str, str], defs: dict[str, ast.stmt]):
    """The imports and helper definitions the function needs, or None when it needs too much."""
    wanted_imports: set[str] = set()
    helpers: dict[str, ast.stmt] = {}
    pending = [func]
    while pending:
        needs = _needs(pending.pop())
        if needs is None:
            return None
        for name in needs - {func.name} - helpers.keys():
            if name in imports:
                wanted_imports.add(name)
            elif name in defs and len(helpers) < MAX_HELPERS:
                helpers[name] = defs[name]
                pending.append(defs[name])
            else:
                return None
    return wanted_imports, sorted(helpers.values(), key=lambda n: n.lineno)


def _task(func: ast.FunctionDef, ctx: "_Module") -> CodeTask | None:
    if func.decorator_list or func.name.startswith("__") or func.col_offset != 0:
        return None
    doc = ast.get_docstring(func, clean=True)
    if not doc or '"""' in doc or "\\" in doc:
        return None
    doc = "\n".join(line.rstrip() for line in doc.strip().splitlines())
    if not MIN_DOC <= len(doc) <= MAX_DOC:
        return None
    body = func.body[1:]
    if not body or body[0].lineno <= func.body[0].end_lineno or body[0].col_offset != 4:
        return None
    body_lines = ctx.lines[body[0].lineno - 1 : body[-1].end_lineno]
    code_lines = [line for line in body_lines if line.strip()]
    if not MIN_BODY_LINES <= len(code_lines) <= MAX_BODY_LINES or any("\t" in line for line in body_lines):
        return None
    signature = _signature(func)
    if len(signature) > MAX_SIGNATURE:
        return None
    found = _closure(func, ctx.imports, ctx.defs)
    if found is None:
        return None
    imports, helpers = found
    helper_src = ["\n".join(ctx.lines[h.lineno - 1 : h.end_lineno]) for h in helpers]
    if sum(src.count("\n") + 1 for src in helper_src) > MAX_HELPER_LINES:
        return None
    header = "\n".join(sorted({ctx.imports[name] for name in imports}))
    parts = [part for part in (header, *helper_src) if part]
    doc_block = textwrap.indent(f'"""{doc}\n"""', "    ") if "\n" in doc else f'    """{doc}"""'
    prompt = "".join(f"{part}\n\n\n" for part in parts) + f"{signature}\n{doc_block}\n"
    solution = signature + "\n" + "\n".join(line.rstrip() for line in body_lines) + "\n"
    try:
        ast.parse(prompt + "    pass\n")
        ast.parse(solution)
    except SyntaxError:
        return None
    return CodeTask(name=func.name, module=ctx.name, prompt=prompt, solution=solution)


@dataclass
class _Module:
    name: str
    lines: list[str]
    imports: dict[str, str]
    defs: dict[str, ast.stmt]


def tasks_from_source(source: str, module: str) -> Iterator[CodeTask]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    ctx = _Module(module, source.splitlines(), _module_imports(tree), _definitions(tree))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            task = _task(node, ctx)
            if task is not None:
                yield task


def build_stdlib_tasks(root: Path | None = None) -> list[CodeTask]:
    """Every usable function of the standard library, deduplicated, in a stable order."""
    root = root or stdlib_root()
    seen: set[str] = set()
    tasks = []
    for path in source_files(root):
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for task in tasks_from_source(source, module):
            if task.solution not in seen:
                seen.add(task.solution)
                tasks.append(task)
    return tasks
