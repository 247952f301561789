"""The message as a status callback carries it: the API's own rendering (api/schemas.py), never a second one.

Imported with the tasks, at start: Celery puts the working directory on the path only while it loads the
app, so a module first imported later, inside a task, is not found.
"""

from __future__ import annotations

from typing import Any

from api.schemas import MessageSchema
from messaging.domain.message import Message

_SCHEMA = MessageSchema()


def render(message: Message) -> dict[str, Any]:
    """The message object exactly as GET /messaging/messages/<id> answers it."""
    return _SCHEMA.dump(message)
