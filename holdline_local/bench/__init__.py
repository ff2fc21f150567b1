"""Holdline's benchmarks (``make bench``): every figure is a ratio measured side by side in one run, or a
count; absolute times are context only. Each benchmark checks its outcome before it reports a time.

- :mod:`.floor`: Connect-facing handlers against the raw AWS calls they must make (same endpoint, same client).
- :mod:`.coldstart`: importing each Connect-facing handler in a fresh interpreter against a bare ``import boto3``.
- :mod:`.scale`: N simulated calls at once through the whole local stack, every outcome checked.
- :mod:`.costmodel`: state transitions, Lambda invocations and DynamoDB units per transfer, priced.

Each part runs in a subprocess of its own (one local stack per process, a hard time limit per part):
see :mod:`.__main__`.
"""
