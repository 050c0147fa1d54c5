"""A config as text: bounded YAML reading and one-line messages about offending values.

Configs are bounded: a file over :data:`MAX_CONFIG_BYTES` is refused unread, a document whose
YAML aliases expand to more than :data:`MAX_CONFIG_VALUES` values is refused before anything
walks the expansion, and messages quote at most :data:`MAX_ECHO` characters of a value.
:mod:`dshift.config` holds the schema these messages describe, :mod:`dshift.config_load` reads
files with them.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel, ValidationError

from dshift.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_CONFIG_VALUES", "MAX_ECHO", "read_yaml_file", "check_expanded_size",
           "show_value", "excerpt", "kind_of", "format_validation_error"]

MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: a job config is a few hundred bytes
MAX_CONFIG_VALUES = 100_000  # values in the document with its aliases expanded
MAX_ECHO = 80  # characters of an offending value quoted in a message

_FLOATISH_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")  # "1e-3": YAML's text, meant as a number


def read_yaml_file(path: Union[str, os.PathLike]) -> Any:
    """A config file's YAML document, read with ``yaml.safe_load``'s rules and bounded.

    Raises
    ------
    ConfigError
        If the file is missing, not a regular file (a directory, named pipe or device) or
        larger than :data:`MAX_CONFIG_BYTES`, is not UTF-8 or valid YAML (the message names the
        file and line), uses Python object tags, repeats a key in a mapping (the message names
        the key and both lines), or its merge keys expand beyond :data:`MAX_CONFIG_VALUES` entries.
    """
    path = Path(path)
    try:
        # Non-blocking: opening a named pipe would otherwise wait for a writer, forever.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            mode = os.fstat(fd).st_mode  # of what was opened, not of what the path names by now
            if stat.S_ISREG(mode):
                with open(fd, "rb", closefd=False) as fh:
                    raw = fh.read(MAX_CONFIG_BYTES + 1)  # bounded, whatever its size was when opened
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file '{path}': {exc}") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else f"not a regular file ({_file_kind(mode)})"
        raise ConfigError(f"config file '{path}' is {kind}; give the path of a YAML file")
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: the file is larger than {MAX_CONFIG_BYTES >> 20} MiB; a job config is a few "
                          "hundred bytes (is this the right file?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config file '{path}': not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader
    except _Refused as exc:
        raise ConfigError(f"{path}{_where(exc)}: {exc.problem}") from None
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(f"{path}{_where(exc)}: {_constructor_problem(exc)}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{context}, {problem}" if context else problem
        raise ConfigError(f"{path}{_where(exc)}: invalid YAML: {excerpt(detail)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    return data


def _file_kind(mode: int) -> str:
    """What a file that is not a regular file or directory is, for a message."""
    kinds = {stat.S_ISFIFO: "a named pipe", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
             stat.S_ISSOCK: "a socket"}
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


class _Refused(yaml.YAMLError):
    """A document the loader refuses: ``problem`` at ``problem_mark`` (as PyYAML's errors)."""

    def __init__(self, mark: yaml.Mark, problem: str) -> None:
        super().__init__()
        self.problem_mark = mark
        self.problem = problem


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, with merge keys bounded while they are expanded and
    repeated keys refused.

    Plain aliases share one constructed object per anchor (cheap to load; their expansion is
    measured afterwards by :func:`_check_expanded_size`), but merge keys copy entries into each
    mapping as it is built, so nested merges could grow exponentially during loading.

    PyYAML keeps the last of a repeated key: a second ``model:`` section would silently replace
    the first. Keys a merge (``<<``) brings in may be overridden, as YAML means them to be.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._checked: set[yaml.MappingNode] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        if node not in self._checked:  # once, before merges mix other mappings' keys in
            self._checked.add(node)
            self._refuse_repeated_keys(node)
        super().flatten_mapping(node)
        if len(node.value) > MAX_CONFIG_VALUES:
            raise _Refused(node.start_mark, f"too large: merge keys ('<<') expand this mapping beyond "
                                            f"{MAX_CONFIG_VALUES:,} entries (at most {MAX_CONFIG_VALUES:,} "
                                            "values are accepted)")

    def _refuse_repeated_keys(self, node: yaml.MappingNode) -> None:
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a non-scalar key is refused as unhashable when the mapping is built
            key = self.construct_object(key_node)  # as the dict sees it: 'yes' and 'true' are one key
            seen = first.setdefault(key, key_node)
            if seen is not key_node:
                raise _Refused(key_node.start_mark, f"duplicate key {show_value(key)} (also on line "
                                                    f"{seen.start_mark.line + 1}); keep one of them")


def _expanded_sizes(data: Any) -> Optional[dict[int, int]]:
    """Scalars (and keys) in every list/mapping of ``data``, shared (aliased) parts counted each time.

    Linear in the number of distinct containers, however large the expansion. Returns
    ``{id(container): size}``, or None if a container contains itself (a recursive alias).
    """
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()  # containers on the current path
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        obj, finished = stack.pop()
        children = list(obj.values()) if isinstance(obj, dict) else obj
        key = id(obj)
        if finished:
            # scalars count 1, and so do the keys of a mapping
            own = len(obj) if isinstance(obj, dict) else 0
            sizes[key] = own + sum(sizes[id(c)] if isinstance(c, (list, dict)) else 1 for c in children)
            open_ids.discard(key)
        elif key in open_ids:
            return None
        elif key not in sizes:
            open_ids.add(key)
            stack.append((obj, True))
            stack.extend((c, False) for c in children if isinstance(c, (list, dict)))
    return sizes


def check_expanded_size(data: dict, source: str) -> None:
    """Refuse a document with more than MAX_CONFIG_VALUES values once its aliases are expanded,
    naming the deepest key whose value alone is too large."""
    sizes = _expanded_sizes(data)
    if sizes is not None and sizes[id(data)] <= MAX_CONFIG_VALUES:
        return
    loc: list[Any] = []
    node: Any = data
    seen: set[int] = set()
    while isinstance(node, dict) and id(node) not in seen:
        seen.add(id(node))
        # follow a value that is alone too large (or recursive) down to the key that holds it
        if sizes is None:
            big = [k for k, v in node.items() if isinstance(v, (list, dict)) and _expanded_sizes(v) is None]
        else:  # the largest (the last of equals: anchors tend to come before their use)
            big = sorted((sizes[id(v)], i, k) for i, (k, v) in enumerate(node.items())
                         if isinstance(v, (list, dict)) and sizes[id(v)] > MAX_CONFIG_VALUES)
            big = [k for *_, k in big[-1:]]
        if not big:
            break
        loc.append(big[0])
        node = node[big[0]]
    where = excerpt(_dotted(tuple(loc))) if loc else source
    if sizes is None:
        raise ConfigError(f"{where}: a YAML alias refers to the value that contains it (an endless value)")
    raise ConfigError(f"{where}: too large: {sizes[id(node)]:,} values once YAML aliases are expanded "
                      f"(at most {MAX_CONFIG_VALUES:,} are accepted)")


def _where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return ""
    return f": line {mark.line + 1}, column {mark.column + 1}"


def _constructor_problem(exc: yaml.constructor.ConstructorError) -> str:
    problem = exc.problem or str(exc)
    tag = re.search(r"tag '([^']+)'", problem)
    if tag:
        shown = excerpt(tag.group(1).replace("tag:yaml.org,2002:", "!!"))
        return f"YAML tag '{shown}' is not allowed (only plain YAML values are accepted)"
    return excerpt(problem)


# --------------------------------------------------------------------------------------------
# Error formatting


def show_value(value: Any) -> str:
    """Show a config value the way the user wrote it in YAML, at most MAX_ECHO characters."""
    return excerpt(_render(value, MAX_ECHO + 1))


def _render(value: Any, budget: int) -> str:
    """``value`` as YAML-ish text, stopping once ``budget`` characters are produced: a value may
    stand for billions of items (aliases), so it is never serialised whole."""
    if isinstance(value, str):
        return repr(value[:budget])
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e16 else repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    if isinstance(value, (list, dict)):
        items = value.items() if isinstance(value, dict) else value
        text = "{" if isinstance(value, dict) else "["
        for item in items:
            if len(text) > budget:
                break
            if isinstance(value, dict):
                key, item = item
                text += json.dumps(str(key)[:budget]) + ": "
            text += (json.dumps(item[:budget]) if isinstance(item, str) else _render(item, budget - len(text))) + ", "
        return text.removesuffix(", ") + ("}" if isinstance(value, dict) else "]")
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def excerpt(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters, with "..." when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _section_model(loc: tuple, root: type[BaseModel]) -> Optional[type[BaseModel]]:
    """The model class under ``root`` that holds the mapping at ``loc`` (for 'did you mean')."""
    model: type[BaseModel] = root
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if sub is None:
            return None
        model = sub
    return model


def _unknown_key_message(loc: tuple, root: type[BaseModel]) -> str:
    key = str(loc[-1])
    shown = excerpt(_dotted(loc))
    model = _section_model(loc[:-1], root)
    if model is None:
        return f"unknown key '{shown}'"
    known = list(model.model_fields)
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    prefix = _dotted(loc[:-1])
    if near:
        suggestion = f"{prefix}.{near[0]}" if prefix else near[0]
        return f"unknown key '{shown}' (did you mean '{suggestion}'?)"
    where = f"in {prefix}" if prefix else "at the top level"
    return f"unknown key '{shown}' (valid keys {where}: {', '.join(known)})"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _error_message(err: dict, root: type[BaseModel]) -> str:
    """One pydantic error → ``key: what is wrong (got X)``."""
    loc = tuple(err.get("loc", ()))
    kind = err["type"]
    if kind == "extra_forbidden":
        return _unknown_key_message(loc, root)
    where = _dotted(loc) or "config"
    ctx = err.get("ctx") or {}
    value = err.get("input")
    got = f" (got {show_value(value)})"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "value_error":
        msg = str(ctx.get("error", err.get("msg", "")))
        return f"{_dotted(loc)}: {msg}" if loc else msg
    if kind in ("float_type", "int_type", "bool_type", "string_type", "list_type", "dict_type", "model_type"):
        wanted = {
            "float_type": "a number",
            "int_type": "an integer",
            "bool_type": "true or false",
            "string_type": "a string",
            "list_type": "a list",
            "dict_type": "a mapping",
            "model_type": "a mapping",
        }[kind]
        hint = ""
        if kind == "float_type" and isinstance(value, str) and _FLOATISH_RE.match(value.strip()):
            hint = "; YAML reads numbers like 1e-3 as text, write 1.0e-3"
        elif kind == "bool_type" and isinstance(value, str):
            hint = "; write true or false without quotes"
        return f"{where}: must be {wanted}, not {kind_of(value)}{got[:-1]}{hint})"
    bounds = {
        "greater_than": (">", "gt"),
        "greater_than_equal": (">=", "ge"),
        "less_than": ("<", "lt"),
        "less_than_equal": ("<=", "le"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        return f"{where}: must be {op} {_number(ctx.get(key))}{got}"
    if kind == "finite_number":
        return f"{where}: must be a finite number{got}"
    if kind == "literal_error":
        return f"{where}: must be one of {ctx.get('expected', '')}{got}"
    if kind in ("too_short", "too_long"):
        return f"{where}: {err.get('msg', kind).lower()}{got}"
    return f"{where}: {err.get('msg', kind)}{got}"


def format_validation_error(exc: ValidationError, root: type[BaseModel]) -> str:
    """One line for a pydantic ValidationError of the model ``root``: up to three
    ``key: problem`` messages."""
    messages: list[str] = []
    for err in exc.errors(include_url=False):
        msg = _error_message(err, root)
        if msg not in messages:
            messages.append(msg)
    shown = "; ".join(messages[:3])
    if len(messages) > 3:
        shown += f"; and {len(messages) - 3} more"
    return shown
