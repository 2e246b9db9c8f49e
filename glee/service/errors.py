"""Service errors, one class per documented outcome; each knows its HTTP status and gRPC status code.

The engine raises these; the REST and gRPC adapters translate them mechanically, so both protocols
always agree on what a failure means. Anything else reaching an adapter is a bug (HTTP 500 / INTERNAL).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: ``code`` is the machine-readable ``error.code`` of the JSON error body."""

    http_status = 500
    grpc_code = "INTERNAL"
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInputError(ServiceError):
    """Undecodable or empty image, bad prompt, or an input the model cannot take."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"
    code = "invalid_input"


class UnauthenticatedError(ServiceError):
    http_status = 401
    grpc_code = "UNAUTHENTICATED"
    code = "unauthenticated"


class NotFoundError(ServiceError):
    http_status = 404
    grpc_code = "NOT_FOUND"
    code = "not_found"


class SessionConflictError(ServiceError):
    """Another request (possibly on another replica) advanced the same video session first."""

    http_status = 409
    grpc_code = "ABORTED"
    code = "session_conflict"


class PayloadTooLargeError(ServiceError):
    """Request body or image pixel count over the configured limits. Not retryable, so not
    RESOURCE_EXHAUSTED (which gRPC clients read as "try again later")."""

    http_status = 413
    grpc_code = "INVALID_ARGUMENT"
    code = "payload_too_large"


class SchemaValidationError(ServiceError):
    """The request does not match the schema (missing field, wrong type, value out of range)."""

    http_status = 422
    grpc_code = "INVALID_ARGUMENT"
    code = "validation_error"

    def __init__(self, message: str, *, details: list[dict] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class QueueFullError(ServiceError):
    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnavailableError(ServiceError):
    """Model not loaded yet, shutting down, or the session store cannot be reached."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    code = "unavailable"
