"""A griffe extension for docs/api.md (mkdocs.yml loads it; the library never imports it).

The docstrings are written for Python's help() and name other objects with reST roles
(:class:`StoredEvent`, :func:`voicestate.open_store`), and end a line introducing an
example with ``::``. mkdocstrings renders docstrings as Markdown, which would print both
as they are. This rewrites each role to code, linked to its entry on the API page when
the target is a name that page renders (a public module, or a name in one's ``__all__``),
and turns a trailing ``::`` into ``:`` (the indented example is a code block either way).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import griffe

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ("voicestate", "voicestate.backend", "voicestate.plugins", "voicestate.testing")
ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc|obj):`(~?)\.?([^`]+)`")


def _exports(module: str) -> list[str]:
    """A public module's ``__all__``, read from its source (nothing is imported)."""
    base = ROOT / module.replace(".", "/")
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return [str(name) for name in ast.literal_eval(node.value)]
    return []


class RstRoles(griffe.Extension):
    def __init__(self) -> None:
        super().__init__()
        self.anchors = set(PUBLIC)
        self.by_name: dict[str, str] = {}
        for module in PUBLIC:
            for name in _exports(module):
                self.anchors.add(f"{module}.{name}")
                self.by_name.setdefault(name, f"{module}.{name}")

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name == "voicestate":
            self._rewrite(pkg)

    def _rewrite(self, obj: griffe.Object | griffe.Alias) -> None:
        if obj.is_alias:
            return  # documented where it is defined
        if obj.docstring is not None:
            text = ROLE.sub(self._role, obj.docstring.value)
            obj.docstring.value = re.sub(r"::$", ":", text, flags=re.M)
        for member in obj.members.values():
            self._rewrite(member)

    def _role(self, match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2)
        shown = target.rsplit(".", 1)[-1] if short else target
        anchor = target if target in self.anchors else self.by_name.get(target)
        return f"[`{shown}`][{anchor}]" if anchor else f"`{shown}`"
