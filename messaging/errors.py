"""The service's one error hierarchy; driver errors are converted to it at the edges."""

from __future__ import annotations


class MessagingError(Exception):
    """Something went wrong in the messaging service."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class SettingsError(MessagingError):
    """A setting is invalid."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable} {problem}")


class DependencyUnavailable(MessagingError):
    """A service the call needs is unreachable."""

    def __init__(self, dependency: str, reason: str = "") -> None:
        self.dependency = dependency
        detail = f": {reason}" if reason else ""
        super().__init__(f"{dependency} is unavailable{detail}")


class DatabaseUnavailable(DependencyUnavailable):
    def __init__(self, reason: str = "") -> None:
        super().__init__("postgresql", reason)


class CacheUnavailable(DependencyUnavailable):
    def __init__(self, reason: str = "") -> None:
        super().__init__("redis", reason)


class StopNotReplicated(MessagingError):
    """Sending is stopped, but no Redis replica acknowledged the stop in time: a failover now could undo it. Stop again."""


class BrokerUnavailable(DependencyUnavailable):
    def __init__(self, reason: str = "") -> None:
        super().__init__("broker", reason)


class MessageNotFound(MessagingError):
    """No message has that id."""


class MessageNotRetryable(MessagingError):
    """Only a failed message can be retried."""


class MigrationFailed(MessagingError):
    """A migration could not be applied."""


class MessageFailed(MessagingError):
    """The message failed for good: GET /messaging/failed lists it."""


class AttemptFailed(MessagingError):
    """The webhook did not take the message this time; a later batch tries again."""


class MessageNotCancelable(MessagingError):
    """Only a pending message can be canceled."""


class InvalidMessage(MessagingError):
    """The message breaks a rule of the service; `fields` says which, per field."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{name}: {' '.join(problems)}" for name, problems in fields.items()))


class HostNotAllowed(MessagingError):
    """The Host header names no host in ALLOWED_HOSTS."""


class CrossSiteRequest(MessagingError):
    """A page of another site cannot call /messaging/*: only its own pages, and clients that are not browsers."""


class ReceiptsOff(MessagingError):
    """Delivery receipts are off: RECEIPT_SIGNING_SECRET is not set."""


class ReceiptNotSigned(MessagingError):
    """No valid Standard Webhooks signature made with RECEIPT_SIGNING_SECRET within 5 minutes of webhook-timestamp."""
