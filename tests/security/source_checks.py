"""An AST scan of the project's Python for shell commands and string-built SQL.

What counts as a finding (each with the file, line and enclosing function):

* ``shell=`` anything but the constant ``False`` in any call;
* ``os.system``, ``os.popen``, ``subprocess.getoutput``/``getstatusoutput`` (all go through
  a shell), however they were imported;
* a ``subprocess`` call (``run``, ``Popen``, ``call``, ``check_call``, ``check_output``) whose
  command (first argument or ``args=``) is a string rather than an argv list;
* SQL built from pieces (an f-string with placeholders, ``%``, ``+``, ``.format()``,
  ``str.join``) passed to ``text()``, ``.execute()``, ``.executemany()``,
  ``.exec_driver_sql()`` or Alembic's ``op.execute()``, directly or through a variable
  assigned in the same function.

A variable is followed one level (``sql = f"..."; conn.execute(text(sql))``), which is how
string-built SQL usually hides; anything cleverer is for code review.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SUBPROCESS_CALLS = frozenset({"run", "Popen", "call", "check_call", "check_output"})
SHELL_FUNCTIONS = frozenset({("os", "system"), ("os", "popen"), ("subprocess", "getoutput"),
                             ("subprocess", "getstatusoutput")})  # fmt: skip
SQL_METHODS = frozenset({"execute", "executemany", "exec_driver_sql"})


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the scanned root, with "/"
    line: int
    function: str  # dotted qualname of the enclosing def/class, "<module>" at top level
    kind: str  # "shell", "shell-function", "subprocess-string", "sql-built"
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} in {self.function}: {self.kind}: {self.detail}"


def _is_str_constant(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _built_string(node: ast.AST) -> str | None:
    """How ``node`` builds a string from pieces, or None when it is not (or not obviously) one."""
    if isinstance(node, ast.JoinedStr):
        if any(isinstance(v, ast.FormattedValue) for v in node.values):
            return "f-string"
        return None
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Mod) and (_is_str_constant(node.left) or _built_string(node.left)):
            return "% formatting"
        if isinstance(node.op, ast.Add) and any(
            _is_str_constant(side) or _built_string(side) is not None for side in (node.left, node.right)
        ):
            return "+ concatenation"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "format" and (_is_str_constant(node.func.value) or _built_string(node.func.value)):
            return ".format()"
        if node.func.attr == "join" and _is_str_constant(node.func.value):
            return "str.join"
    return None


def _string_valued(node: ast.AST) -> bool:
    return _is_str_constant(node) or isinstance(node, ast.JoinedStr) or _built_string(node) is not None


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.findings: list[Finding] = []
        self._scope: list[str] = []
        self._assigned: list[dict[str, ast.AST]] = [{}]
        # local name -> (module, attribute) for "from os import system" style imports
        self._imported: dict[str, tuple[str, str]] = {}
        self._module_alias: dict[str, str] = {}  # "import subprocess as sp" -> sp: subprocess

    # -------------------------------------------------------------- bookkeeping
    def _function(self) -> str:
        return ".".join(self._scope) or "<module>"

    def _add(self, node: ast.AST, kind: str, detail: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), self._function(), kind, detail))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._module_alias[alias.asname or alias.name] = alias.name

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module:
            for alias in node.names:
                self._imported[alias.asname or alias.name] = (node.module, alias.name)

    def _enter(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self._scope.append(node.name)
        self._assigned.append({})
        self.generic_visit(node)
        self._assigned.pop()
        self._scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _enter  # type: ignore[assignment]

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name):
                self._assigned[-1][target.id] = node.value
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if isinstance(node.target, ast.Name) and node.value is not None:
            self._assigned[-1][node.target.id] = node.value
        self.generic_visit(node)

    def _resolve(self, node: ast.AST) -> ast.AST:
        """A plain name's value when it was assigned in this function (or at module level)."""
        if isinstance(node, ast.Name):
            for scope in (self._assigned[-1], self._assigned[0]):
                if node.id in scope:
                    return scope[node.id]
        return node

    def _qualified(self, func: ast.AST) -> tuple[str, str] | None:
        """(module, name) of a called function when it is ``mod.name`` or an imported name."""
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            module = self._module_alias.get(func.value.id, func.value.id)
            return module, func.attr
        if isinstance(func, ast.Name) and func.id in self._imported:
            return self._imported[func.id]
        return None

    # -------------------------------------------------------------- the checks
    def visit_Call(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                self._add(node, "shell", f"shell={ast.unparse(keyword.value)}")
        qualified = self._qualified(node.func)
        if qualified in SHELL_FUNCTIONS:
            self._add(node, "shell-function", f"{qualified[0]}.{qualified[1]}() runs its command through a shell")
        if qualified is not None and qualified[0] == "subprocess" and qualified[1] in SUBPROCESS_CALLS:
            command = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "args"), None)
            if command is not None and _string_valued(self._resolve(command)):
                self._add(node, "subprocess-string", f"subprocess.{qualified[1]}() given a string, not an argv list")
        self._check_sql(node)
        self.generic_visit(node)

    def _check_sql(self, node: ast.Call) -> None:
        func = node.func
        is_text = (isinstance(func, ast.Name) and func.id == "text") or (
            isinstance(func, ast.Attribute) and func.attr == "text" and isinstance(func.value, ast.Name)
            and self._module_alias.get(func.value.id, func.value.id) in ("sqlalchemy", "sa")
        )
        is_execute = isinstance(func, ast.Attribute) and func.attr in SQL_METHODS
        if not (is_text or is_execute) or not node.args:
            return
        statement = self._resolve(node.args[0])
        how = _built_string(statement)
        if how is not None:
            sink = "text()" if is_text else f".{func.attr}()"  # type: ignore[union-attr]
            self._add(node, "sql-built", f"SQL built by {how} passed to {sink}: {ast.unparse(statement)[:120]}")


def scan_source(source: str, path: str = "<string>") -> list[Finding]:
    scanner = _Scanner(path)
    scanner.visit(ast.parse(source, filename=path))
    return scanner.findings


def python_files(root: Path, folders: Iterable[str]) -> Iterator[Path]:
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            if "__pycache__" not in path.parts and ".venv" not in path.parts:
                yield path


def scan_tree(root: Path, folders: Iterable[str]) -> list[Finding]:
    findings: list[Finding] = []
    for path in python_files(root, folders):
        findings.extend(scan_source(path.read_text(encoding="utf-8"), path.relative_to(root).as_posix()))
    return findings
