"""The tools a request offers, checked before anything is stored or queued.

The decoder turns each function's parameters into a grammar (a schema it cannot compile is refused
there, naming `tools`); what could make that grammar huge is refused here first: a list too long, a
name OpenAI would refuse, bounds that llama.cpp would unroll into millions of rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from shared.errors import InvalidRequest, TooLarge
from shared.messages import FunctionTool, RealtimeTool, ToolChoice

MAX_TOOLS = 128  # OpenAI's limit
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
# A schema's repetition bounds become that many grammar rules: 1000 items or characters is plenty for a call.
_MAX_BOUND = 1000
_BOUNDS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")


def check_tools(tools: Sequence[FunctionTool], choice: ToolChoice, *, max_chars: int, param: str) -> None:
    """Raise InvalidRequest for tools (at `param`, e.g. "tools") or a `tool_choice` the service cannot use."""
    if len(tools) > MAX_TOOLS:
        raise InvalidRequest(f"At most {MAX_TOOLS} tools.", param=param)
    if len(json.dumps([t.model_dump() for t in tools])) > max_chars:
        raise TooLarge(f"The tools take more than {max_chars} characters of JSON.", param=param)
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if not _NAME.fullmatch(tool.name):
            raise InvalidRequest(
                "A function's name is 1 to 64 letters, digits, underscores or dashes.", param=f"{param}[{i}].name"
            )
        if tool.name in names:
            raise InvalidRequest(f"Two tools are named '{tool.name}'.", param=f"{param}[{i}].name")
        names.add(tool.name)
        if tool.parameters and tool.parameters.get("type", "object") != "object":
            raise InvalidRequest(
                "A function's parameters are a JSON schema of an object.", param=f"{param}[{i}].parameters"
            )
        if (where := _unbounded(tool.parameters)) is not None:
            raise InvalidRequest(
                f"'{where}' is above {_MAX_BOUND}: too large a bound for a call's grammar.",
                param=f"{param}[{i}].parameters",
            )
    if choice in ("auto", "none"):
        return
    if not tools:
        raise InvalidRequest(f"tool_choice '{choice}' needs tools.", param="tool_choice")
    if choice != "required" and choice not in names:
        raise InvalidRequest(f"tool_choice names '{choice}', which is not among the tools.", param="tool_choice")


def _unbounded(schema: Any) -> str | None:
    """The first repetition bound in the schema that is too large, or None."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in _BOUNDS and isinstance(value, int) and value > _MAX_BOUND:
                return key
            if (found := _unbounded(value)) is not None:
                return found
    elif isinstance(schema, list):
        for value in schema:
            if (found := _unbounded(value)) is not None:
                return found
    return None


def realtime_tools(tools: Sequence[RealtimeTool]) -> list[FunctionTool]:
    return [FunctionTool(name=t.name, description=t.description, parameters=t.parameters) for t in tools]
