"""Liveness, readiness and Prometheus metrics; open even when API_TOKEN is set."""

from __future__ import annotations

from flask import Response, request
from marshmallow import Schema, fields

from api import auth, runtime
from api.blueprint import Blueprint
from messaging.errors import DependencyUnavailable
from messaging.ops import metrics
from messaging.postgres import pool as postgres_pool
from messaging.redis import client as redis_client

blp = Blueprint("health", __name__, description="Health and metrics.")


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


class ReadySchema(Schema):
    status = fields.String(required=True, metadata={"example": "ready"})
    checks = fields.Dict(
        required=True,
        keys=fields.String(),
        values=fields.String(),
        metadata={
            "example": {"postgresql": "ok", "redis": "ok"},
            "description": '"ok" or "down" each; "down: <reason>" for a caller with the API_TOKEN bearer token.',
        },
    )


@blp.route("/health", methods=["GET"])
@blp.response(200, HealthSchema, description="The process is alive.")
def health():
    """Liveness: 200 while the process serves requests."""
    return {"status": "ok"}


@blp.route("/ready", methods=["GET"])
@blp.response(200, ReadySchema, description="PostgreSQL and Redis answer.")
@blp.alt_response(
    503,
    schema=ReadySchema,
    description="A dependency is down; `checks` names it.",
    example={
        "status": "unavailable: redis",
        "checks": {"postgresql": "ok", "redis": "down"},
    },
)
def ready():
    """Readiness: 200 when PostgreSQL and Redis answer, else 503 naming what is down.

    With the API_TOKEN bearer token, each check that is down also gives the reason.
    """
    checks = {
        "postgresql": _check(lambda: postgres_pool.ping(runtime().pool)),
        "redis": _check(lambda: redis_client.ping(runtime().redis)),
    }
    down = [name for name, result in checks.items() if result != "ok"]
    if down:
        return {"status": f"unavailable: {', '.join(down)}", "checks": checks}, 503
    return {"status": "ready", "checks": checks}


@blp.route("/metrics", methods=["GET"])
@blp.doc(responses={200: {"description": "Prometheus text format.", "content": {"text/plain": {}}}})
def prometheus_metrics():
    """Prometheus metrics: messages by status (counted at most a few seconds ago), deliveries by outcome,
    webhook latency, batch claims."""
    opened = runtime()
    body, content_type = metrics.render(
        opened.pool, opened.redis, opened.counts, opened.settings, request.headers.get("Accept")
    )
    return Response(body, content_type=content_type)


def _check(probe) -> str:
    try:
        probe()
        return "ok"
    except DependencyUnavailable as error:
        # The driver's words name hosts, ports and users: only for a caller holding the token.
        return f"down: {error}" if auth.has_the_token() else "down"
