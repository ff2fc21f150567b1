"""No account number in a trace: what X-Ray would record of whole calls, read from the local stack's X-Ray daemon
stand-in (holdline_local/xray.py) while the functions run traced, as Lambda runs functions with active tracing
(the daemon's address in AWS_XRAY_DAEMON_ADDRESS, a sampled trace header per invocation).

The bank's API names the account in its paths (``GET /v1/accounts/<number>``: validation and the daily limit
check). The X-Ray SDK's ``http.client`` patch records each request's full URL; Holdline's Tracer patches the AWS
SDK only (holdline/observability.py, TRACED_MODULES). The last test shows that the inspection would see a leak:
a traced function that does patch ``http.client`` puts the number in X-Ray.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from decimal import Decimal
from typing import Any

from holdline_local.stack import LocalStack
from holdline_local.xray import XRayDaemon
from tests.e2e.test_privacy import _leaks
from tests.helpers import wait_for_execution

SOURCE = "CHK-TRCXZ7391"
DESTINATION = "SAV-TRCKJ5820"
UNKNOWN = "SAV-TRCNF4040"  # no such account: refused at validation
DOWN = "SAV-TRCDN5030"  # every credit refused with a 503: the debit is refunded


def transfer(stack: LocalStack, connect_event: Any, to_account: str) -> str:
    event = connect_event({"fromAccount": SOURCE, "toAccount": to_account, "amount": "3.50", "currency": "USD"})
    answer = stack.invoke("StarterFunction", event)
    assert answer["status"] == "STARTED", answer
    wait_for_execution(stack, answer["trackerId"])
    return str(answer["trackerId"])


def subsegments(daemon: XRayDaemon, name: str) -> list[dict[str, Any]]:
    return [d for d in daemon.documents() if d.get("name") == name]


def test_no_account_number_reaches_x_ray(stack: LocalStack, connect_event: Any) -> None:
    assert stack.bank is not None
    for account in (SOURCE, DESTINATION, DOWN):
        stack.bank.open_account(account, Decimal("100.00"))
    credit_down = stack.bank.inject("5xx", leg="credit", account=DOWN)
    try:
        with stack.tracing() as daemon:
            for to_account in (DESTINATION, UNKNOWN, DOWN):  # settled; refused at validation; refunded
                transfer(stack, connect_event, to_account)
            stack.settle()  # the notifier and the follow-up trigger ran for the failures too
    finally:
        stack.bank.clear_faults(credit_down)
    recorded = daemon.raw().decode()
    # Traced for real: every leg's handler and its AWS SDK calls are there.
    handlers = subsegments(daemon, "## handler")
    responses = [json.dumps(h.get("metadata", {})) for h in handlers]
    assert any('"valid": true' in r for r in responses) and any("paymentId" in r for r in responses)
    assert subsegments(daemon, "dynamodb") and subsegments(daemon, "## notifier")
    for secret in (SOURCE, DESTINATION, UNKNOWN, DOWN):
        assert _leaks(recorded, secret) == [], secret
    assert not [d for d in daemon.documents() if d.get("namespace") == "remote"]  # no HTTP client subsegment


#: A traced function whose Tracer patches http.client, as the X-Ray SDK does when asked to.
LEAKY = """
import urllib.request
from aws_lambda_powertools import Tracer

tracer = Tracer(service="probe", patch_modules=["httplib"])

@tracer.capture_lambda_handler
def handler(event, context):
    with urllib.request.urlopen(event["url"], timeout=5) as response:
        return {"status": response.status}
"""

TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def test_the_inspection_sees_an_account_number_in_a_traced_url(stack: LocalStack) -> None:
    assert stack.bank is not None and stack.runtime is not None
    account = "CHK-TRCLK6161"
    stack.bank.open_account(account, Decimal("100.00"))
    name = f"Leaky{uuid.uuid4().hex[:8]}"
    lam, iam = stack.client("lambda"), stack.client("iam")
    role = iam.create_role(RoleName=f"{name}Role", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("leaky.py", LEAKY)
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role,
        Handler="leaky.handler",
        Code={"ZipFile": package.getvalue()},
        Timeout=10,
        TracingConfig={"Mode": "Active"},
    )
    try:
        with stack.tracing() as daemon:
            answer = stack.invoke(name, {"url": f"{stack.bank.url}/v1/accounts/{account}"})
            assert answer == {"status": 200}
        remote = [d for d in daemon.documents() if d.get("namespace") == "remote"]
        assert remote and account in json.dumps(remote)  # the full URL, account and all
        assert _leaks(daemon.raw().decode(), account)
    finally:
        lam.delete_function(FunctionName=name)
        stack.runtime.discard_environments(name)
