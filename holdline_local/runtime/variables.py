"""What an execution environment's variables are, and nothing else.

On AWS an environment sees the variables the Lambda runtime defines ("Defined runtime environment
variables", https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime)
plus the function's own configuration (``Environment.Variables``, which SAM merges from ``Globals`` and the
function). A variable that only another function has is absent. The local runtime builds exactly that,
plus a short, named list of local-only variables that point the SDK at the local stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

#: The runtime identifier for python3.11 (AWS_EXECUTION_ENV).
EXECUTION_ENV = "AWS_Lambda_python3.11"

#: Reserved keys: Lambda refuses a function configuration that sets them.
RESERVED = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "TZ",
    }
)

#: Local-only variables, each with its reason. Nothing else of the local machine reaches a function.
LOCAL_ONLY = {
    # The SDK's endpoint override (boto3 reads it for every service): the local stack instead of AWS.
    "AWS_ENDPOINT_URL": "every AWS call goes to the local endpoint",
    # moto has no Amazon Connect StartTaskContact: the local stand-in serves it.
    "AWS_ENDPOINT_URL_CONNECT": "Connect's task API is served by the local stand-in",
    # No X-Ray daemon runs locally; on AWS the Lambda service provides one (AWS_XRAY_DAEMON_ADDRESS). Left out
    # while the local stack runs its X-Ray daemon stand-in (LocalStack.tracing(), holdline_local/xray.py): an
    # Active function then gets what Lambda sets for tracing instead (``tracing`` below).
    "POWERTOOLS_TRACE_DISABLED": "no X-Ray daemon locally",
}

#: What Lambda sets for a function with active tracing, when the local stack has an X-Ray daemon stand-in.
TRACING = frozenset({"AWS_XRAY_DAEMON_ADDRESS", "AWS_XRAY_CONTEXT_MISSING"})


class ReservedVariable(ValueError):
    """A function configuration sets a key the Lambda runtime reserves (AWS refuses the configuration)."""


def environment_variables(
    *,
    function_name: str,
    handler: str,
    memory_mb: int,
    region: str,
    task_root: Path,
    python: Path,
    configured: Mapping[str, str],
    credentials: Mapping[str, str],
    local: Mapping[str, str],
    log_stream: str,
    tracing: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """An environment's variables: the runtime's, the function's configured ones, the local-only ones."""
    reserved = sorted(set(configured) & RESERVED)
    if reserved:
        raise ReservedVariable(f"{function_name} sets reserved variables {reserved}")
    unknown = sorted(set(local) - set(LOCAL_ONLY)) + sorted(set(tracing or {}) - TRACING)
    if unknown:
        raise ValueError(f"{unknown} are not local-only or tracing variables the runtime knows")
    runtime = {
        "_HANDLER": handler,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": EXECUTION_ENV,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(python.parent.parent),
        "TZ": ":UTC",
        # Unreserved ones the runtime sets (a function may extend them).
        "LANG": "en_US.UTF-8",
        "PATH": f"{python.parent}:/usr/local/bin:/usr/bin:/bin",
        **{
            k: credentials[k]
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
            if k in credentials
        },
        **(tracing or {}),
    }
    return {**runtime, **configured, **local}
