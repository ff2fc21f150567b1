"""boto3 clients, created once per container and only when first used (cold start stays small).

The Connect-facing path has 8 s at most (usually 3-5 s configured in the flow): botocore's defaults
(60 s timeouts, several retries) would blow it, so these clients get short timeouts and a small retry budget.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

CONNECT_PATH_CONFIG = Config(
    connect_timeout=1,
    read_timeout=2,
    retries={"total_max_attempts": 3, "mode": "standard"},
)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=CONNECT_PATH_CONFIG)
