"""One-line messages for syntax errors in YAML and JSON files, in the
`file:line:column: problem` form editors and terminals link to. Used by the
CLI's definition files and the server's configuration file."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import yaml


def json_error(path: str | os.PathLike[str], exc: json.JSONDecodeError) -> str:
    """`path:line:column: invalid JSON: problem` for a JSON syntax error."""
    return f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"


def yaml_error(path: str | os.PathLike[str], exc: yaml.YAMLError) -> str:
    """`path:line:column: invalid YAML: problem` (with the context's line when
    PyYAML gives one) for a YAML error; needs PyYAML, as the caller does."""
    import yaml  # only here: PyYAML is not a dependency of the SDK

    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        message = f"{path}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {exc.problem}"
        if exc.context and exc.context_mark is not None:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        return message
    return f"{path}: invalid YAML: {' '.join(str(exc).split())}"
