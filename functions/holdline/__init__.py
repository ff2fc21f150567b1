"""Holdline's Lambda code: Connect-facing handlers (config lookup, starter, outcome waiter, status, results) and
the saga's bank legs.

Layout, by concern: ``handlers/`` parse an event, call ``logic/`` and shape the answer; ``logic/`` holds the
rules; ``dal/`` talks to DynamoDB and the bank; ``models/`` are the request shapes (the transfer request plain
code, the follow-up request pydantic: only its own path imports pydantic); ``workflows`` registers each
long-running operation. Nothing here imports the local tooling (``holdline_local``).
"""

import time as _time

#: When this execution environment's Init reached our code: a handler's import starts with this package, before
#: boto3, botocore and Powertools (the bulk of a cold start). The Connect adapter measures a cold start's Init from
#: here (holdline/connect.py, ColdStart): Connect's clock was already running.
IMPORTED_AT = _time.monotonic()
