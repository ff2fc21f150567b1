"""`holdline local up` as a newcomer uses it: started as a process, reached with exactly what it prints (and
what the README shows), on a machine with no AWS credentials of its own."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from holdline_local.iam import ADMIN_ACCESS_KEY_ID, ADMIN_SECRET_ACCESS_KEY

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("home")  # no ~/.aws: nothing but what local up prints
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "MOTO_PORT"}
    process = subprocess.Popen(
        [sys.executable, "-m", "holdline_local.cli", "local", "up", "--port", "0", "--time-scale", "0.01"],
        cwd=REPO,
        env={**clean, "HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    printed: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        printed.append(line)
        if line.startswith("Ctrl-C stops it."):
            break
    text = "".join(printed)
    try:
        endpoint = re.search(r"AWS endpoint : (http://\S+)", text)
        exports = re.search(r"export (AWS_ACCESS_KEY_ID=\S+ AWS_SECRET_ACCESS_KEY=\S+ AWS_DEFAULT_REGION=\S+)", text)
        assert endpoint and exports, text
        variables = dict(pair.split("=", 1) for pair in exports.group(1).split())
        yield {"endpoint": endpoint.group(1), "printed": text, "home": str(home), **variables}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_what_local_up_prints_reaches_the_stack(local_up: dict[str, str]) -> None:
    environment = {k: local_up[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    assert environment["AWS_ACCESS_KEY_ID"] == ADMIN_ACCESS_KEY_ID
    session = boto3.session.Session(
        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
        region_name=environment["AWS_DEFAULT_REGION"],
    )
    lam = session.client("lambda", endpoint_url=local_up["endpoint"])
    event = json.loads((REPO / "events" / "starter.json").read_text())
    event["Details"]["ContactData"]["ContactId"] = event["Details"]["ContactData"]["InitialContactId"] = "local-up-1"
    answer = json.loads(
        lam.invoke(FunctionName="StarterFunction", Payload=json.dumps(event).encode())["Payload"].read()
    )
    assert answer["status"] == "STARTED", answer

    # What the function printed is in CloudWatch Logs, as `aws logs tail /aws/lambda/StarterFunction` reads it.
    logs = session.client("logs", endpoint_url=local_up["endpoint"])
    deadline = time.monotonic() + 10
    messages: list[str] = []
    while not any(m.startswith("REPORT") for m in messages) and time.monotonic() < deadline:
        time.sleep(0.3)
        found = logs.filter_log_events(logGroupName="/aws/lambda/StarterFunction").get("events", [])
        messages = [e["message"] for e in found]
    assert any(m.startswith("START RequestId") for m in messages), messages
    assert any("request started" in m for m in messages), messages

    # Any other key is refused: the local stack enforces IAM.
    stranger = boto3.client(
        "lambda",
        endpoint_url=local_up["endpoint"],
        region_name="us-east-1",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    )
    with pytest.raises(Exception, match=r"InvalidClientTokenId|security token"):
        stranger.list_functions()


def test_the_readme_example_is_what_local_up_prints(local_up: dict[str, str]) -> None:
    readme = (REPO / "README.md").read_text()
    assert (
        f"export AWS_ACCESS_KEY_ID={ADMIN_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY={ADMIN_SECRET_ACCESS_KEY} "
        "AWS_DEFAULT_REGION=us-east-1"
    ) in readme
    assert f"export AWS_ACCESS_KEY_ID={local_up['AWS_ACCESS_KEY_ID']} " in local_up["printed"]
    assert "lambda invoke --function-name StarterFunction --payload fileb://events/starter.json" in readme
