"""The Blueprint every resource of this API is declared on."""

from __future__ import annotations

import flask_smorest

from api.parser import JsonBodyParser


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint reading bodies with JsonBodyParser (strict JSON, a 422 saying what is wrong)."""

    ARGUMENTS_PARSER = JsonBodyParser()
