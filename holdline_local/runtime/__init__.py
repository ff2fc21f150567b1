"""The local Lambda runtime: each function runs in execution environments of its own (worker processes
running AWS's runtime client), with only its own variables, its Timeout enforced and its concurrency capped.
See :mod:`holdline_local.runtime.service`."""

from holdline_local.runtime.service import (
    FunctionConfig,
    InvokeRefused,
    InvokeResult,
    LambdaRuntime,
    LogLine,
    Throttled,
)

__all__ = ["FunctionConfig", "InvokeRefused", "InvokeResult", "LambdaRuntime", "LogLine", "Throttled"]
