"""Reading request bodies: strict JSON (UTF-8, no NaN, bounded depth) or a 422 saying what is wrong."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import flask
import marshmallow as ma
from webargs import core
from webargs.flaskparser import FlaskParser, abort

BODY = "_body"
NEEDS_JSON = "Send a JSON object with Content-Type: application/json."


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, stricter about what counts as a JSON body and never failing with a 500.

    The stock parser ignores a body whose Content-Type is not JSON (answering "missing field"),
    and lets `json.loads` errors other than JSONDecodeError through: RecursionError on deep
    nesting, ValueError on integers of more than 4300 digits.
    """

    def load_json(self, req: flask.Request, schema: ma.Schema) -> Any:
        body = req.get_data(cache=True)
        if not body.strip():
            return core.missing  # no body: each required field reports itself missing
        if not core.is_json(req.mimetype):
            invalid_body(NEEDS_JSON)
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            invalid_body("The body is not UTF-8 text.")
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            invalid_body("The body is not valid JSON.")
        if not isinstance(data, dict):
            invalid_body("Must be a JSON object.")
        return data


def invalid_body(message: str) -> NoReturn:
    abort(422, messages={"json": {BODY: [message]}})


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")
