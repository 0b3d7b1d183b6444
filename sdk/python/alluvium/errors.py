"""Typed exceptions for the Alluvium Python client.

Every failed call raises an :class:`AlluviumError` subclass chosen from the
proxy's ``statusCode`` (the gRPC code names Alluxio's REST API uses), so
callers can write ``except alluvium.NotFoundError:``.
"""


class AlluviumError(Exception):
    """A call the cluster refused or could not serve.

    Attributes:
        status_code: the proxy's code name, e.g. ``"NOT_FOUND"``.
        http_status: the HTTP status of the answer (0 when none came).
        message: the server's message, naming the path or id at fault.
    """

    status_code = "UNKNOWN"

    def __init__(self, message, status_code=None, http_status=0):
        super().__init__(message)
        self.message = message
        if status_code:
            self.status_code = status_code
        self.http_status = http_status

    def __str__(self):
        return "%s: %s" % (self.status_code, self.message)


class NotFoundError(AlluviumError):
    status_code = "NOT_FOUND"


class AlreadyExistsError(AlluviumError):
    status_code = "ALREADY_EXISTS"


class InvalidArgumentError(AlluviumError):
    status_code = "INVALID_ARGUMENT"


class FailedPreconditionError(AlluviumError):
    status_code = "FAILED_PRECONDITION"


class PermissionDeniedError(AlluviumError):
    status_code = "PERMISSION_DENIED"


class UnauthenticatedError(AlluviumError):
    status_code = "UNAUTHENTICATED"


class ResourceExhaustedError(AlluviumError):
    status_code = "RESOURCE_EXHAUSTED"


class UnavailableError(AlluviumError):
    """The proxy (or the cluster behind it) could not be reached."""

    status_code = "UNAVAILABLE"


class DeadlineExceededError(AlluviumError):
    status_code = "DEADLINE_EXCEEDED"


class InternalError(AlluviumError):
    status_code = "INTERNAL"


class JobError(AlluviumError):
    """A job that ended without completing; ``job`` is its final state."""

    def __init__(self, job):
        msg = "job %d (%s) %s" % (job.id, job.plan, job.status)
        if job.error:
            msg += ": " + job.error
        super().__init__(msg, status_code=self.status_code)
        self.job = job


class JobFailedError(JobError):
    status_code = "FAILED"


class JobCanceledError(JobError):
    status_code = "CANCELED"


_BY_CODE = {
    cls.status_code: cls
    for cls in (
        NotFoundError,
        AlreadyExistsError,
        InvalidArgumentError,
        FailedPreconditionError,
        PermissionDeniedError,
        UnauthenticatedError,
        ResourceExhaustedError,
        UnavailableError,
        DeadlineExceededError,
        InternalError,
    )
}
_BY_CODE["OUT_OF_RANGE"] = InvalidArgumentError
_BY_CODE["ABORTED"] = FailedPreconditionError


def error_for(status_code, message, http_status=0):
    """Returns the exception for a proxy error body."""
    cls = _BY_CODE.get(status_code, AlluviumError)
    return cls(message, status_code=status_code, http_status=http_status)
