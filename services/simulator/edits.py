"""Source edits the scripted agent proposes: the errors module, its import and the decorator.

Every edit is an exact `old_string` that occurs once in the source the agent read, and every edit is
checked to leave source that still parses, so a runner applying it keeps the module valid Python.
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections.abc import Collection
from dataclasses import dataclass

from services.simulator.templates import ERRORS_MODULE_RAISING, ERRORS_MODULE_RESPONSES

__all__ = [
    "DECORATOR",
    "Edit",
    "decorator_edit",
    "errors_module_path",
    "errors_module_source",
    "import_edit",
    "import_statement",
]

DECORATOR = "handle_errors"

# Handlers that look things up are the likeliest to fail on a missing item, so they are decorated first.
_LOOKUP_PREFIXES = ("get_", "show_", "read_", "fetch_", "find_", "load_", "retrieve_")
_LOOKUP_NAMES = frozenset({"get", "show", "read", "fetch", "find", "load", "retrieve", "lookup"})
_HANDLER_PREFIXES = ("create_", "update_", "delete_", "list_", "handle_", "post_", "put_", "patch_")
_ENTRY_POINTS = frozenset({"main", "serve", "run", "create_app", "setup", "cli"})
_TUPLE_RESPONSE = re.compile(r"^\s*return\s+\(?\s*\d{3}\s*,", re.MULTILINE)


@dataclass(frozen=True, kw_only=True)
class Edit:
    """An `edit_file` replacement whose `old_string` occurs once in the source it was made for."""

    old_string: str
    new_string: str


def errors_module_path(main_path: str | None, known_files: Collection[str]) -> str:
    """Return where the errors module goes: beside the main module, under a free name."""
    directory = posixpath.dirname(main_path) if main_path else ""
    for name in ("errors.py", "api_errors.py", "http_errors.py"):
        path = posixpath.join(directory, name)
        if path not in known_files:
            return path
    return posixpath.join(directory, "turnlog_errors.py")


def errors_module_source(main_source: str | None) -> str:
    """Choose the errors module flavour that fits what the main module's handlers return."""
    if main_source is not None and _TUPLE_RESPONSE.search(main_source):
        return ERRORS_MODULE_RESPONSES
    return ERRORS_MODULE_RAISING


def import_statement(main_source: str, module_path: str, known_files: Collection[str]) -> str:
    """Return the import line for the errors module, relative when the main module lives in a package."""
    module_name = posixpath.splitext(posixpath.basename(module_path))[0]
    directory = posixpath.dirname(module_path)
    in_package = bool(directory) and posixpath.join(directory, "__init__.py") in known_files
    if in_package or re.search(r"^from \.", main_source, re.MULTILINE):
        return f"from .{module_name} import {DECORATOR}"
    return f"from {module_name} import {DECORATOR}"


def import_edit(source: str, statement: str) -> Edit | None:
    """Insert `statement` among the module's top-level imports, in sorted position where possible."""
    tree = _parse(source)
    if tree is None:
        return None

    lines = source.splitlines()
    imports = [
        node
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom) and node.col_offset == 0 and not _is_future(node)
    ]
    new_key = _import_key_of_statement(statement)
    same_group = [node for node in imports if _import_key(node).startswith(".") == new_key.startswith(".")]

    candidates: list[Edit] = []
    for node in same_group:
        if _import_key(node) > new_key:
            line = lines[node.lineno - 1]
            candidates.append(Edit(old_string=line, new_string=f"{statement}\n{line}"))
            break
    for node in reversed(same_group or imports):
        if node.end_lineno == node.lineno:
            line = lines[node.lineno - 1]
            candidates.append(Edit(old_string=line, new_string=f"{line}\n{statement}"))
    first_definition = _first_definition_line(tree, lines)
    if first_definition is not None:
        candidates.append(Edit(old_string=first_definition, new_string=f"{statement}\n\n\n{first_definition}"))

    return _first_valid(source, candidates)


def decorator_edit(source: str) -> tuple[str, Edit] | None:
    """Put `@handle_errors` on the function likeliest to raise, returning its name and the edit."""
    tree = _parse(source)
    if tree is None:
        return None

    lines = source.splitlines()
    functions = _decoratable_functions(tree)
    functions.sort(key=_decoration_priority)
    for function in functions:
        line = lines[function.lineno - 1]
        indent = line[: len(line) - len(line.lstrip())]
        edit = Edit(old_string=line, new_string=f"{indent}@{DECORATOR}\n{line}")
        if _first_valid(source, [edit]) is not None:
            return function.name, edit
    return None


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def _is_future(node: ast.Import | ast.ImportFrom) -> bool:
    return isinstance(node, ast.ImportFrom) and node.module == "__future__"


def _import_key(node: ast.Import | ast.ImportFrom) -> str:
    if isinstance(node, ast.ImportFrom):
        return "." * node.level + (node.module or "")
    return node.names[0].name


def _import_key_of_statement(statement: str) -> str:
    return statement.split()[1]


def _first_definition_line(tree: ast.Module, lines: list[str]) -> str | None:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first_line = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            return lines[first_line - 1]
    return None


def _decoratable_functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.append(node)
        elif isinstance(node, ast.ClassDef):
            methods = [item for item in node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)]
            functions.extend(method for method in methods if not method.name.startswith("__"))
    return [function for function in functions if _can_decorate(function)]


def _can_decorate(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    if function.name.startswith("_") or function.name in _ENTRY_POINTS:
        return False
    decorator_names = {ast.unparse(decorator) for decorator in function.decorator_list}
    return DECORATOR not in decorator_names


def _decoration_priority(function: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int, int]:
    is_method = 1 if function.col_offset > 0 else 0
    if function.name in _LOOKUP_NAMES or function.name.startswith(_LOOKUP_PREFIXES):
        rank = 0
    elif function.name.startswith(_HANDLER_PREFIXES):
        rank = 1
    else:
        rank = 2
    return is_method, rank, function.lineno


def _first_valid(source: str, candidates: list[Edit]) -> Edit | None:
    for edit in candidates:
        if source.count(edit.old_string) != 1:
            continue
        if _parse(source.replace(edit.old_string, edit.new_string)) is not None:
            return edit
    return None
