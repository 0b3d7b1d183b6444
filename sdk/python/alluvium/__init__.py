"""Alluvium's Python client: file-system and job calls over the REST proxy.

    import alluvium

    c = alluvium.Client()                 # $ALLUVIUM_PROXY, $ALLUVIUM_TOKEN
    c.write("/data/hello.txt", b"hello")
    print(c.read("/data/hello.txt"))
    job = c.load("/data")
    c.wait(job, progress=lambda j: print(j.status, j.tasks_done, "/", j.tasks_total))

Standard library only; Python 3.9 or newer.
"""

from .client import Client, FileStatus, Job, Reader, Writer
from .errors import (
    AlluviumError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    JobCanceledError,
    JobError,
    JobFailedError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)

__version__ = "0.1.0"

__all__ = [
    "Client", "FileStatus", "Job", "Reader", "Writer",
    "AlluviumError", "AlreadyExistsError", "DeadlineExceededError", "FailedPreconditionError",
    "InternalError", "InvalidArgumentError", "JobCanceledError", "JobError", "JobFailedError",
    "NotFoundError", "PermissionDeniedError", "ResourceExhaustedError", "UnauthenticatedError",
    "UnavailableError",
]
