"""Holdline's Lambda code: Connect-facing handlers (starter, status, results) and the saga's bank legs.

Layout, by concern: ``handlers/`` parse an event, call ``logic/`` and shape the answer; ``logic/`` holds the
rules; ``dal/`` talks to DynamoDB and the bank; ``models/`` are the pydantic shapes; ``workflows`` registers
each long-running operation. Nothing here imports the local tooling (``holdline_local``).
"""
