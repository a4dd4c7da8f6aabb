"""Structured output and tool calls: a reply's grammar (GBNF) from what the request asks for.

`json_object` is any JSON object (llama.cpp's own JSON grammar); `json_schema`
goes through llama-cpp-python's JSON-schema-to-GBNF converter. A schema the converter refuses, or whose
grammar llama.cpp cannot parse, is the client's mistake: `BadFormat` names the parameter.
Tools make a grammar of their calls from each function's parameters (`tool_grammar`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from shared.messages import FunctionTool, GenerateRequest, OutputFormat, ToolChoice

PARAM_SCHEMA = "response_format.json_schema.schema"


class BadFormat(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Grammar:
    """GBNF a reply must follow; with `triggers`, only from where one of them matches."""

    text: str
    triggers: tuple[str, ...] = ()


def reply_grammar(request: GenerateRequest, *, tools: bool = True) -> Grammar | None:
    """What the reply must follow: its tool calls' (unless not `tools`) and response_format's grammar, if any."""
    if offered := request.offered_tools():
        if not tools:
            return None
        return tool_grammar(
            offered, request.tool_choice, parallel=request.parallel_tool_calls, answer=request.output_format
        )
    return None if request.output_format is None else grammar_for(request.output_format)


def grammar_for(output: OutputFormat) -> Grammar:
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if output.type == "json_object":
        return Grammar(str(JSON_GBNF))  # llama.cpp's JSON grammar: rooted at an object, whitespace bounded
    if not output.json_schema:
        raise BadFormat("A json_schema response_format needs its 'schema'.", PARAM_SCHEMA)
    try:
        return Grammar(str(json_schema_to_gbnf(json.dumps(output.json_schema))))
    except Exception as exc:  # the converter raises bare exceptions for what it does not support
        raise BadFormat(f"The schema cannot be turned into a grammar: {exc}.", PARAM_SCHEMA) from exc


PARAM_TOOLS = "tools"

# Where a waiting grammar starts (each is matched against the whole reply so far; the grammar takes over
# from group 1, see `llama.Sampler`). Qwen2.5 and Hermes-tuned models write calls in <tool_call> tags;
# small models also answer with the bare call object, or fence it as JSON, at the start of the reply.
TOOL_TRIGGERS = (
    r"[\s\S]*?(<tool_call>[\s\S]*)",
    r"\s*(?:```(?:json)?\s*)?(\{[\s\S]*)",
)


def tool_grammar(
    tools: Sequence[FunctionTool], choice: ToolChoice, *, parallel: bool, answer: OutputFormat | None = None
) -> Grammar | None:
    """The grammar of a reply that may (or must) call `tools`: each call's arguments follow its schema.

    `auto`: free text until a call starts, then the calls, then the end. `required` or a named function:
    the reply is the calls alone, in the model's own tags. With `answer` (a response_format), the reply
    is either calls or that answer.
    """
    from llama_cpp.llama_grammar import SchemaConverter

    if choice == "none" or not tools:
        return None
    chosen = [t for t in tools if choice in ("auto", "required") or t.name == choice]
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    calls = []
    for i, tool in enumerate(chosen):
        try:
            schema = converter.resolve_refs(tool.parameters or {"type": "object"}, f"tool{i}")
            args = converter.visit(schema, f"mm-args{i}")
        except Exception as exc:  # the converter raises bare exceptions for what it does not support
            raise BadFormat(
                f"The parameters of tool '{tool.name}' cannot be turned into a grammar: {exc}.", PARAM_TOOLS
            ) from exc
        name = json.dumps(json.dumps(tool.name))  # the JSON string, as a GBNF literal
        key = rf'mm-ws "\"name\"" mm-ws ":" mm-ws {name} mm-ws "," mm-ws "\"arguments\"" mm-ws ":" mm-ws'
        calls.append(f'"{{" {key} {args} mm-ws "}}"')
    answer_rule = None
    if answer is not None:
        schema = answer.json_schema if answer.type == "json_schema" and answer.json_schema else {"type": "object"}
        answer_rule = converter.visit(converter.resolve_refs(schema, "answer"), "mm-answer")
    more = " (mm-ws mm-tagged)*" if parallel else ""
    rules = [
        "mm-one ::= " + " | ".join(f"( {c} )" for c in calls),
        # Qwen2.5's template shows calls in double braces, and its models may copy that: allowed, read alike.
        'mm-call ::= mm-one | "{" mm-ws mm-one mm-ws "}"',
        "mm-ws ::= [ \\t\\n]{0,8}",
        'mm-tagged ::= "<tool_call>" mm-ws mm-call mm-ws "</tool_call>"',
    ]
    if choice == "auto" and answer_rule is None:
        rules.append(f'root ::= mm-tagged{more} mm-ws | mm-call mm-ws ("```" mm-ws)?')
        return Grammar("\n".join([converter.format_grammar(), *rules]), TOOL_TRIGGERS)
    root = f"root ::= mm-tagged{more} mm-ws"
    if choice == "auto":
        root += f" | {answer_rule}"
    return Grammar("\n".join([converter.format_grammar(), *rules, root]))
