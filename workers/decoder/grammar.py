"""Structured output: a reply's JSON grammar (GBNF) from what the request asks for.

`json_object` is any JSON object (llama.cpp's own JSON grammar); `json_schema`
goes through llama-cpp-python's JSON-schema-to-GBNF converter. A schema the converter refuses, or whose
grammar llama.cpp cannot parse, is the client's mistake: `BadFormat` names the parameter.
"""

from __future__ import annotations

import json

from shared.messages import OutputFormat

PARAM_SCHEMA = "response_format.json_schema.schema"


class BadFormat(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def grammar_for(output: OutputFormat) -> str:
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if output.type == "json_object":
        return str(JSON_GBNF)  # llama.cpp's JSON grammar: rooted at an object, whitespace bounded
    if not output.json_schema:
        raise BadFormat("A json_schema response_format needs its 'schema'.", PARAM_SCHEMA)
    try:
        return str(json_schema_to_gbnf(json.dumps(output.json_schema)))
    except Exception as exc:  # the converter raises bare exceptions for what it does not support
        raise BadFormat(f"The schema cannot be turned into a grammar: {exc}.", PARAM_SCHEMA) from exc
