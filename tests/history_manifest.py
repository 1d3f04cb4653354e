"""Which workflow code each kept history was recorded with, so none is ever left behind.

A kept history proves that today's code continues a pathway started by the code that
recorded it. When the workflow's code changes and no history is recorded with the change,
the change goes out with nothing to prove that the pathways it starts will continue on the
next release. So each recording is listed in `manifest.txt` with the commit it was
recorded at and a digest of the workflow's code then (`workflows/` and `rop_domain/`, which
is what the workflow imports: parsed, so comments, formatting and docstrings do not count),
and a test fails while today's code has no recording (`make histories`).
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "tests" / "histories" / "manifest.txt"
WORKFLOW_CODE = ("workflows", "rop_domain")
"""The packages whose code decides what a pathway's workflow issues."""


class _NoDocstrings(ast.NodeTransformer):
    """Drops statements that are only a string (docstrings): they issue nothing."""

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        body = getattr(node, "body", None)
        if isinstance(body, list):
            kept = [
                statement
                for statement in body
                if not (
                    isinstance(statement, ast.Expr)
                    and isinstance(statement.value, ast.Constant)
                    and isinstance(statement.value.value, str)
                )
            ]
            node.body = kept or [ast.Pass()]  # type: ignore[attr-defined]
        return node


def code_digest(sources: Mapping[str, str]) -> str:
    """A digest of the workflow's code from its files' text, by path: the same for a change
    of comments, formatting or docstrings only."""
    hashed = hashlib.sha256()
    for path in sorted(sources):
        tree = _NoDocstrings().visit(ast.parse(sources[path]))
        hashed.update(f"{path}\n{ast.dump(tree)}\n".encode())
    return hashed.hexdigest()[:16]


def current_sources(root: Path = ROOT) -> dict[str, str]:
    """The workflow's code as it is in the working tree."""
    return {
        str(path.relative_to(root)): path.read_text(encoding="utf-8")
        for package in WORKFLOW_CODE
        for path in (root / package).rglob("*.py")
    }


def sources_at(commit: str, root: Path = ROOT) -> dict[str, str]:
    """The workflow's code at `commit` (read from git, no checkout)."""
    names = _git(root, "ls-tree", "-r", "--name-only", commit, "--", *WORKFLOW_CODE).split()
    return {name: _git(root, "show", f"{commit}:{name}") for name in names if name.endswith(".py")}


def head_commit(root: Path = ROOT) -> str:
    """The commit checked out, or `unknown` outside a git clone."""
    try:
        return _git(root, "rev-parse", "--short", "HEAD").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _git(root: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def read_manifest(path: Path = MANIFEST) -> dict[str, tuple[str, str]]:
    """Each kept history's (code digest, commit), by file name."""
    listed = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, digest, commit = line.split()
            listed[name] = (digest, commit)
    return listed


def add_to_manifest(name: str, digest: str, commit: str, path: Path = MANIFEST) -> None:
    with path.open("a", encoding="utf-8") as manifest:
        manifest.write(f"{name}  {digest}  {commit}\n")
