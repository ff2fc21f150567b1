"""Holdline's Lambda code: Connect-facing handlers (config lookup, starter, outcome waiter, status, results) and
the saga's bank legs.

Layout, by concern: ``handlers/`` parse an event, call ``logic/`` and shape the answer; ``logic/`` holds the
rules; ``dal/`` talks to DynamoDB and the bank; ``models/`` are the request shapes (the transfer request plain
code, the follow-up request pydantic: only its own path imports pydantic); ``workflows`` registers each
long-running operation. Nothing here imports the local tooling (``holdline_local``).
"""
