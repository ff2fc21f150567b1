"""The benchmark harness's own logic (make bench relies on it): the cost model counts from a real execution
history, the outcome checks fail when a transfer is lost or wrong, the import-time parser reads CPython's
format. The benchmarks themselves run only under make bench."""

from __future__ import annotations

import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

from holdline_local.bench import coldstart, costmodel
from holdline_local.bench.outcomes import (
    INSUFFICIENT_FUNDS,
    SUCCESS,
    UNKNOWN_DESTINATION,
    CallResult,
    check_balances,
    check_calls,
    expected_balances,
    mix,
)
from holdline_local.cli import _lambda_invoker
from holdline_local.simulator import SimulatedCall
from holdline_local.stack import LocalStack
from tests.helpers import history


def _good_run() -> tuple[list[CallResult], dict[str, str], dict[str, Counter[str]]]:
    calls = [
        CallResult(SUCCESS, "SUCCEEDED", "", "t-1"),
        CallResult(INSUFFICIENT_FUNDS, "FAILED", "INSUFFICIENT_FUNDS", "t-2"),
        CallResult(UNKNOWN_DESTINATION, "FAILED", "ACCOUNT_NOT_FOUND", "t-3"),
    ]
    executions = {"t-1": "SUCCEEDED", "t-2": "SUCCEEDED", "t-3": "SUCCEEDED"}
    ledger = {"t-1": Counter(debit=1, credit=1)}  # t-2 and t-3 are refused before any money moves
    return calls, executions, ledger


def test_outcome_check_passes_a_correct_run() -> None:
    calls, executions, ledger = _good_run()
    assert check_calls(calls, executions=executions, ledger=ledger) == []


def test_outcome_check_fails_a_lost_transfer() -> None:
    calls, executions, ledger = _good_run()
    del executions["t-1"]  # the starter answered but no execution exists
    problems = check_calls(calls, executions=executions, ledger=ledger)
    assert any("transfer lost" in p for p in problems)
    calls[2].outcome = ""  # a call that never came back
    assert any("never came back" in p for p in check_calls(calls, executions=executions, ledger=ledger))


def test_outcome_check_fails_stuck_wrong_and_double_paid() -> None:
    calls, executions, ledger = _good_run()
    executions["t-3"] = "RUNNING"
    calls[1].error_code = "ACCOUNT_NOT_FOUND"
    ledger["t-1"] = Counter(debit=1, credit=2)
    executions["stray"] = "SUCCEEDED"
    problems = "\n".join(check_calls(calls, executions=executions, ledger=ledger))
    assert "stuck" in problems and "expected FAILED/INSUFFICIENT_FUNDS" in problems
    assert "'credit': 2" in problems and "belong to no call" in problems


def test_outcome_check_fails_a_call_the_flow_had_to_recover() -> None:
    """The starter timed out; the flow retried it, looked the transfer up and told the truth. Right for the
    caller, but a stack that makes callers take Error branches is past its capacity."""
    calls, executions, ledger = _good_run()
    calls[0].error_branches = ["Start transfer: timed out after 6.0 s"]
    problems = check_calls(calls, executions=executions, ledger=ledger)
    assert problems == ["call 0 (success): took an Error branch (Start transfer: timed out after 6.0 s)"]


def test_expected_balances_move_only_successful_transfers() -> None:
    opening = {"CHK-00012345": Decimal("10.00"), "SAV-00067890": Decimal("0.00"), "CHK-00000402": Decimal("5.00")}
    expected = expected_balances(opening, mix(6))
    assert expected["CHK-00012345"] == Decimal("8.00") and expected["SAV-00067890"] == Decimal("2.00")
    assert expected["CHK-00000402"] == Decimal("5.00")
    assert check_balances(expected, {**expected, "SAV-00067890": Decimal("3.00")}) != []
    assert check_balances(expected, expected) == []


def test_transitions_count_states_and_retries() -> None:
    events: list[dict[str, Any]] = [
        {"type": "ExecutionStarted"},
        {"type": "TaskStateEntered"},
        {"type": "TaskScheduled"},
        {"type": "TaskFailed"},
        {"type": "TaskScheduled"},  # a retry: billed again
        {"type": "TaskSucceeded"},
        {"type": "TaskStateExited"},
        {"type": "ChoiceStateEntered"},
        {"type": "ChoiceStateExited"},
        {"type": "ExecutionSucceeded"},
    ]
    assert costmodel.count_transitions(events) == 3


def test_cost_model_counts_a_real_execution(stack: LocalStack, connect_event: Any) -> None:
    """From a real run of today's ASL, whatever it is: every state entered is counted, the tracker updates
    are the DynamoDB tasks, and the priced total adds up."""
    before = dict(stack.invocations())
    event = connect_event(SUCCESS.parameters(), contact_id=str(uuid.uuid4()))
    report = SimulatedCall(_lambda_invoker(stack.client("lambda")), event, time_scale=0.01).run()
    assert report.outcome == "SUCCEEDED"
    events = history(stack, report.tracker_id)
    entered = [e for e in events if e["type"].endswith("StateEntered")]
    transitions = costmodel.count_transitions(events)
    assert transitions >= len(entered) > 0
    tracker = costmodel.dynamodb_task_transitions(events)
    assert 0 < tracker < transitions
    durations = costmodel.task_durations_ms(events)
    legs = {name for name, count in stack.invocations().items() if count > before.get(name, 0)}
    assert set(durations) <= legs and "DebitFunction" in durations
    cost = costmodel.TransferCost(
        "success",
        transitions,
        {"StarterFunction": 1},
        {"StarterFunction": 100.0},
        ddb_reads=2,
        ddb_writes=1,
        memory_mb={"StarterFunction": 1024},
    )
    lines = cost.per_million()
    assert lines["Step Functions"] == Decimal("25.00") * transitions
    assert lines["Lambda duration"] == Decimal("1.67")  # 0.1 s x 1 GB x $0.0000166667 x 1M
    assert lines["total"] == sum(v for k, v in lines.items() if k != "total")


def test_describe_polling_ceiling_follows_the_quota() -> None:
    assert costmodel.max_concurrent_calls_describe_polling(3) == 45
    assert costmodel.max_concurrent_calls_describe_polling(10) == 150
    assert costmodel.item_units(1025) == (2, 1)


def test_importtime_parser_groups_by_package() -> None:
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       100 |        100 |     botocore.utils\n"
        "import time:       300 |        400 |   botocore\n"
        "import time:        50 |        450 | boto3\n"
    )
    lines = coldstart.parse_importtime(stderr)
    assert [(line.name, line.depth) for line in lines] == [("botocore.utils", 2), ("botocore", 1), ("boto3", 0)]
    assert coldstart.biggest_imports(lines) == [("botocore", 400), ("boto3", 50)]


def test_report_says_when_a_target_is_missed_and_when_a_run_failed() -> None:
    from holdline_local.bench.report import render

    floor = {"name": "StatusFunction", "floor": "GetItem", "rounds": 3, "ours_median_ms": 2.0}
    scale = {
        "n": 10, "arrivals_per_s": 2.0, "ok": False, "problem_count": 1, "problems": ["call 0 (success): lost"],
        "finished": 9, "max_calls_on_hold": 5, "throughput_per_s": 1.0, "cpu_ms_per_call": 100.0,
        "polls_per_call": 1.0, "lambda_invocations_per_call": 6.0, "latency": {}, "wall_s": 10.0,
    }  # fmt: skip
    results = {
        "machine": {"cores": "2", "memory": "1 GiB", "cpu": "x", "os": "linux", "python": "3.11", "moto": "5"},
        "errors": {"coldstart": "killed after 600 s"},
        "elapsed": {"floor": 1.0},
        "total_s": 1.0,
        "command": "make bench",
        "floor": [{**floor, "floor_median_ms": 1.0, "ratio": 2.0, "parts": {"logic only": 1.1}}],
        "scale-10": scale,
    }
    text = render(results)
    assert "**2.00x** | **NOT met**" in text
    assert "coldstart did not complete" in text
    assert "**FAIL (1 problems)**" in text and "call 0 (success): lost" in text


def test_a_minute_on_hold_prices_the_waiter_held_against_the_polls_it_replaces() -> None:
    waiter = costmodel.waiter_per_minute(128).per_million()
    assert waiter["Lambda duration"] == Decimal("125.00")  # 60 s x 0.125 GB x $0.0000166667 x 1M
    assert waiter["DynamoDB reads"] == Decimal("50.00")  # a read every 0.3 s: 200 x $0.25 per 1M
    polling = costmodel.polling_per_minute(15.0, 512).per_million()
    assert polling["Lambda requests"] == Decimal("1.71")  # 60 / 7 s = 8.57 polls x $0.20 per 1M
    assert polling["DynamoDB reads"] == Decimal("2.25")  # 9 reads
    assert polling["Lambda duration"] == Decimal("1.07")  # 8.57 x 15 ms x 0.5 GB
    assert waiter["total"] > 20 * polling["total"]


def test_the_latency_designs_differ_only_in_how_the_caller_holds() -> None:
    from holdline_local.bench.latency import design_flow
    from holdline_local.simulator import check_flow

    shipped, polling = design_flow(polling=False), design_flow(polling=True)
    assert check_flow(shipped) == [] and check_flow(polling) == []
    names = {a["Identifier"] for a in polling["Actions"]}
    assert "Wait for outcome" not in names and "Hold loop" in names
    assert {a["Identifier"] for a in shipped["Actions"]} == names | {
        "Outcome rounds",
        "Wait for outcome",
        "Hold for outcome",
        "Play hold prompt while waiting",
        "Pause while waiting",
        "Pause a second while waiting",
        "Load outcome",
        "Outcome known",
        "Fall back to polling",
    }
    short = design_flow(polling=False, from_starter_to_outcome=True)
    assert short["StartAction"] == "Start transfer"
    announce = next(a for a in short["Actions"] if a["Identifier"] == "Announce result")
    assert announce["Transitions"]["NextAction"] == "Hang up"


def test_report_judges_the_outcome_waiters_p95_against_its_goal() -> None:
    from holdline_local.bench.report import render

    def results(p95: float) -> dict[str, Any]:
        design = {"n": 3, "p50_s": 0.2, "p95_s": p95, "max_s": p95, "waiter_held_s": 4.0, "waiter_reads": 14.0}
        latency = {
            "first_settlement_s": 1.0, "hold_prompt_s": 7.0, "offsets": 3, "workers": 2, "problems": [],
            "designs": {"polling": {**design, "p95_s": 6.9}, "async": design},
        }  # fmt: skip
        machine = {"cores": "2", "memory": "1 GiB", "cpu": "x", "os": "linux", "python": "3.11", "moto": "5"}
        return {"machine": machine, "errors": {}, "elapsed": {}, "total_s": 1.0, "command": "x", "latency": latency}

    assert "| async | 3 | 0.20 s | **0.40 s** | 0.40 s | met |" in render(results(0.4))
    assert "| async | 3 | 0.20 s | **1.20 s** | 1.20 s | **NOT met** |" in render(results(1.2))


def test_a_scale_run_passes_through_the_strict_stack_and_reads_the_template_once(
    stack: LocalStack, monkeypatch: Any
) -> None:
    """The scale harness signs as the local administrator (the stack enforces IAM), reads the flow and the
    template once per run (not once per call: a sixth of the CPU it used to charge each call), and reports
    the stack's CPU apart from its own."""
    from holdline_local import flows
    from holdline_local.bench import scale

    reads = Counter[str]()
    real_load = flows.load_template

    def counting_load(*args: Any, **kwargs: Any) -> Any:
        reads["template"] += 1
        return real_load(*args, **kwargs)

    monkeypatch.setattr(flows, "load_template", counting_load)
    result = scale.run(stack, 3, workers=3, caller_time_scale=0.01, arrivals_per_s=20.0, deadline_s=120)
    assert result["ok"], result["problems"]
    assert result["outcomes"] == {"insufficient_funds": 1, "success": 1, "unknown_destination": 1}
    assert reads["template"] == 1
    assert result["functions_cpu_s"] > 0 and result["harness_cpu_s"] > 0
    assert result["cpu_s"] > result["functions_cpu_s"]  # moto and the bank run in this process
    assert result["cpu_ms_per_call"] == result["cpu_s"] * 1000 / 3


def test_the_capacity_search_climbs_until_a_probe_fails_then_steps_down_if_the_full_run_fails(
    monkeypatch: Any,
) -> None:
    from holdline_local.bench import __main__ as bench
    from holdline_local.bench.report import render

    passes = {"probe-2.4": True, "probe-3": True, "probe-3.6": False, "capacity-3": False, "capacity-2.4": True}
    ran: list[str] = []

    def fake_run(results: dict[str, Any], name: str, part_args: list[str], limit: float) -> dict[str, Any]:
        ran.append(name)
        n, rate = int(part_args[part_args.index("--n") + 1]), float(part_args[part_args.index("--rate") + 1])
        value = {
            "n": n, "arrivals_per_s": rate, "ok": passes[name], "problem_count": 0 if passes[name] else 1,
            "problems": [] if passes[name] else ["call 7 (success): ended ERROR_BRANCH/-, expected SUCCEEDED/-"],
            "finished": n, "max_calls_on_hold": 5, "throughput_per_s": rate, "cpu_ms_per_call": 300.0,
            "functions_cpu_s": 0.2 * n, "harness_cpu_ms_per_call": 7.0, "polls_per_call": 0.0,
            "lambda_invocations_per_call": 8.0, "latency": {}, "wall_s": n / rate,
        }  # fmt: skip
        results[name] = value
        return value

    monkeypatch.setattr(bench, "_run_into", fake_run)
    results: dict[str, Any] = {"errors": {}, "elapsed": {}}
    capacity = bench.capacity_search(results, [3.6, 2.4, 3.0, 4.2])
    # 4.2 is never probed (3.6 failed first); the full run fails at 3.0 and passes one step down.
    assert ran == ["probe-2.4", "probe-3", "probe-3.6", "capacity-3", "capacity-2.4"]
    assert capacity["passed_probes"] == [2.4, 3.0] and capacity["rate"] == 2.4
    text = render(
        {
            "machine": {"cores": "2", "memory": "1 GiB", "cpu": "x", "os": "linux", "python": "3.11", "moto": "5"},
            "total_s": 1.0,
            "command": "make bench",
            **results,
            "capacity": capacity,
        }
    )
    assert "**2.4 calls/s** (2.0x the one-process stack's 1.2 calls/s; goal 2x: met)" in text
    assert "Problems at capacity-3" in text

    passes.update({"capacity-2.4": False})
    ran.clear()
    assert bench.capacity_search({"errors": {}, "elapsed": {}}, [2.4, 3.0, 3.6])["rate"] is None
    assert "no rate passed" in render(
        {
            "machine": {"cores": "2", "memory": "1 GiB", "cpu": "x", "os": "linux", "python": "3.11", "moto": "5"},
            "total_s": 1.0,
            "command": "make bench",
            "errors": {},
            "elapsed": {},
            "capacity": {"probe_n": 150, "n": 1000, "rates": [2.4], "passed_probes": [], "rate": None},
        }
    )


def _told(outcome: str) -> CallResult:
    return CallResult(SUCCESS, outcome=outcome)


def test_the_soak_judges_what_each_caller_was_told_against_the_money() -> None:
    from holdline_local.bench.soak import judge

    done = {"status": "SUCCEEDED"}
    both = Counter(debit=1, credit=1)
    assert not judge(0, _told("SUCCEEDED"), done, both, "SUCCEEDED").problem
    # An apology while the money went through: the caller will try again and pay twice.
    assert judge(0, _told("ERROR"), done, both, "SUCCEEDED").problem == "told ERROR, but the transfer SUCCEEDED"
    assert judge(0, _told("FAILED"), done, both, "SUCCEEDED").problem.startswith("told FAILED")
    # "We will call you back" is true whatever happens next.
    assert not judge(0, _told("HOLD_EXCEEDED"), done, both, "SUCCEEDED").problem
    # Nothing started: an apology is the truth.
    assert not judge(0, _told("ERROR_BRANCH"), None, Counter(), None).problem
    assert judge(0, _told("SUCCEEDED"), None, Counter(), None).problem == "told SUCCEEDED, but nothing was started"
    assert "no tracker row" in judge(0, _told("ERROR"), None, Counter(debit=1), None).problem
    failed = {"status": "FAILED", "errorCode": "BANK_UNAVAILABLE"}
    assert not judge(0, _told("FAILED"), failed, Counter(debit=1, refund=1), "SUCCEEDED").problem
    assert not judge(0, _told("ERROR"), failed, Counter(), "FAILED").problem
    assert judge(0, _told("SUCCEEDED"), failed, Counter(), "SUCCEEDED").problem.startswith("told SUCCEEDED")
    forgotten = judge(0, _told("FAILED"), failed, Counter(debit=1), "SUCCEEDED")
    assert forgotten.problem.startswith("debited and forgotten") and not forgotten.flagged
    pending = judge(0, _told("FAILED"), _failed_row("RefundPending"), Counter(debit=1), "X")
    assert not pending.problem and pending.flagged and pending.error_code == "REFUND_PENDING"
    assert judge(0, _told("ERROR"), {"status": "RUNNING"}, Counter(debit=1), "RUNNING").problem.endswith("drain")
    assert "SUCCEEDED with ledger" in judge(0, _told("SUCCEEDED"), done, Counter(debit=2, credit=1), "S").problem


def _failed_row(failure_error: str, **more: Any) -> dict[str, Any]:
    """A FAILED tracker row as the saga writes it: the row carries failureError, never an errorCode."""
    return {"trackerId": "t-1", "status": "FAILED", "step": "DONE", "failureError": failure_error, **more}


def test_the_soak_reads_a_person_flag_from_the_row_as_the_failure_event_does() -> None:
    """Real rows have no errorCode: the judge used to read one, so a REFUND_PENDING row (failureError RefundPending,
    the debit kept) was judged "debited and forgotten", and an OUTCOME_UNCONFIRMED one too."""
    from holdline_local.bench.soak import judge

    for failure_error, code in (("RefundPending", "REFUND_PENDING"), ("OutcomeUnconfirmed", "OUTCOME_UNCONFIRMED")):
        verdict = judge(0, _told("UNCONFIRMED"), _failed_row(failure_error), Counter(debit=1), "FAILED")
        assert verdict.flagged and verdict.error_code == code and not verdict.problem, verdict
    # An execution ended from outside (the reconciler) after money may have moved: its event asks a person too.
    outside = _failed_row("ExecutionFailed", failureSource="RECONCILER")
    by_outside = judge(0, _told("ERROR_BRANCH"), outside, Counter(debit=1), "FAILED")
    assert by_outside.flagged and by_outside.flagged_by_assumption and not by_outside.problem
    assert not judge(0, _told("FAILED"), _failed_row("RefundPending"), Counter(debit=1), "F").flagged_by_assumption
    # A business refusal recorded by the saga does not: a debit kept there is forgotten.
    forgotten = judge(0, _told("FAILED"), _failed_row("BankUnavailable"), Counter(debit=1), "FAILED")
    assert not forgotten.flagged and forgotten.problem.startswith("debited and forgotten")


def test_the_soak_hears_unconfirmed_as_an_honest_we_do_not_know() -> None:
    """ "Please do not repeat it: we will call you back" is true whatever the ledger holds, like HOLD_EXCEEDED; the
    old judge counted it as a wrong outcome when the transfer had gone through."""
    from holdline_local.bench.soak import judge

    done = {"trackerId": "t-1", "status": "SUCCEEDED"}
    assert not judge(0, _told("UNCONFIRMED"), done, Counter(debit=1, credit=1), "SUCCEEDED").problem
    unconfirmed = _failed_row("OutcomeUnconfirmed")
    for ledger in (Counter(), Counter(debit=1), Counter(debit=1, credit=1), Counter(debit=1, refund=1)):
        verdict = judge(0, _told("UNCONFIRMED"), unconfirmed, ledger, "FAILED")
        assert not verdict.problem and verdict.flagged, (ledger, verdict)


def test_the_soak_judges_it_failed_against_the_ledger_not_only_the_row() -> None:
    """A row FAILED (flagged) while the bank holds the debit and the credit: the money went through, and a caller
    told "it failed" repeats the transfer and pays twice. The old judge let it pass because the row was flagged."""
    from holdline_local.bench.soak import judge

    moved = Counter(debit=1, credit=1)
    verdict = judge(0, _told("FAILED"), _failed_row("OutcomeUnconfirmed"), moved, "FAILED")
    assert verdict.problem.startswith("told FAILED, but the money moved"), verdict
    # Refunded, or the debit kept with no credit: "it failed" is the truth.
    assert not judge(0, _told("FAILED"), _failed_row("RefundPending"), Counter(debit=1), "FAILED").problem
    assert not judge(0, _told("FAILED"), _failed_row("BankUnavailable"), Counter(debit=1, refund=1), "F").problem


def test_the_tracker_throttle_refuses_only_the_tracker_tables_writes_while_on(stack: LocalStack) -> None:
    """The soak's fault, through the moto server as every writer reaches it: while on, PutItem and UpdateItem on
    TrackerTable answer ProvisionedThroughputExceededException and write nothing; reads, and the other tables'
    writes, go through; once off, the writes land again."""

    from holdline_local import throttle

    ddb = stack.client("dynamodb", attempts=1)  # one attempt: botocore retries this error by default
    tracker_id, config_key = f"throttle-{uuid.uuid4()}", f"throttle-test-{uuid.uuid4()}"
    put = {"TableName": "TrackerTable", "Item": {"trackerId": {"S": tracker_id}, "status": {"S": "RUNNING"}}}
    update = {
        "TableName": "TrackerTable",
        "Key": {"trackerId": {"S": tracker_id}},
        "UpdateExpression": "SET #s = :s",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": {"S": "FAILED"}},
    }
    key = {"trackerId": {"S": tracker_id}}
    before = throttle.refused[("TrackerTable", "put_item")], throttle.refused[("TrackerTable", "update_item")]
    assert stack.scheduler is not None
    # The scheduled sweeper writes its cursor to TrackerTable: paused, so the refusals counted are this test's own.
    with stack.scheduler.paused():
        stack.settle()
        _throttle_round_trip(ddb, put, update, key, config_key, before)


def _throttle_round_trip(
    ddb: Any, put: dict[str, Any], update: dict[str, Any], key: dict[str, Any], config_key: str, before: tuple[int, int]
) -> None:
    from botocore.exceptions import ClientError

    from holdline_local import throttle

    try:
        with throttle.throttled("TrackerTable"):
            assert throttle.is_throttled("TrackerTable") and not throttle.is_throttled("ConfigTable")
            for write, request in ((ddb.put_item, put), (ddb.update_item, update)):
                try:
                    write(**request)
                except ClientError as exc:
                    assert exc.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
                    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
                else:
                    raise AssertionError(f"{write.__name__} went through a throttled table")
            # Nothing was written, reads are not throttled, and the other tables take writes.
            assert "Item" not in ddb.get_item(TableName="TrackerTable", Key=key, ConsistentRead=True)
            ddb.put_item(TableName="ConfigTable", Item={"configKey": {"S": config_key}})
        assert (throttle.refused[("TrackerTable", "put_item")], throttle.refused[("TrackerTable", "update_item")]) == (
            before[0] + 1,
            before[1] + 1,
        )
        assert not throttle.is_throttled("TrackerTable")
        ddb.put_item(**put)
        ddb.update_item(**update)
        assert ddb.get_item(TableName="TrackerTable", Key=key, ConsistentRead=True)["Item"]["status"]["S"] == "FAILED"
        # A table named by its ARN is the same table.
        throttle.throttle("TrackerTable")
        assert throttle.is_throttled("arn:aws:dynamodb:us-east-1:123456789012:table/TrackerTable")
    finally:
        throttle.release()
        ddb.delete_item(TableName="TrackerTable", Key=key)
        ddb.delete_item(TableName="ConfigTable", Key={"configKey": {"S": config_key}})


def test_the_tracker_throttle_reaches_the_functions_in_their_own_processes(stack: LocalStack) -> None:
    """A Lambda function (its own worker process, its own boto3 and retries) meets the same throttle: the starter
    cannot write the row, so it starts nothing and says so; once the throttle is off the same request starts."""
    from holdline_local import throttle

    call = SUCCESS.event()
    with throttle.throttled("TrackerTable"):
        try:
            refused = stack.invoke("StarterFunction", call)
        except RuntimeError as exc:  # an unhandled error is the Error branch Connect takes: not started either
            refused = {"status": "ERROR", "error": str(exc)}
    assert refused.get("status") != "STARTED", refused
    assert throttle.refused[("TrackerTable", "put_item")] >= 1
    started = stack.invoke("StarterFunction", call)
    assert started["status"] == "STARTED", started


def test_a_small_soak_runs_through_the_strict_stack(stack: LocalStack) -> None:
    from holdline_local.bench import soak

    result = soak.run(stack, 3, workers=3, caller_time_scale=0.01, arrivals_per_s=20.0, deadline_s=120, drain_s=30)
    assert result["ok"], result["problems"]
    assert result["told"] == {"SUCCEEDED": 1, "FAILED": 2}
    assert result["truth"] == {"SUCCEEDED": 1, "FAILED": 2}
    assert result["sweeps"] and result["wrong_outcome"] == result["debited_not_flagged"] == 0
    assert result["took_error_branch"] == 0 and result["error_branches"] == {}


def test_a_small_soak_with_the_tracker_throttled_after_the_first_debit(stack: LocalStack) -> None:
    """The throttled variant end to end at a tiny size: the throttle starts at the first debit, refuses tracker
    writes for its seconds, and the drain still leaves every row final with no wrong outcome."""
    from holdline_local import throttle
    from holdline_local.bench import soak

    result = soak.run(
        stack, 3, workers=3, caller_time_scale=0.01, arrivals_per_s=20.0, deadline_s=120, drain_s=60, throttle_s=3
    )
    assert result["throttle"]["started_after_s"] is not None and result["throttle"]["lasted_s"] >= 3
    assert sum(result["throttle"]["refused"].values()) > 0, result["throttle"]
    assert not throttle.is_throttled("TrackerTable")
    assert result["wrong_outcome"] == result["debited_not_flagged"] == result["not_final"] == 0, result["problems"]


def test_report_renders_both_soaks_with_the_factor_and_the_throttle() -> None:
    from holdline_local.bench.report import _soak

    soak = {
        "n": 240, "arrivals_per_s": 7.2, "ok": True, "problem_count": 0, "problems": [], "told": {"FAILED": 2},
        "truth": {"FAILED": 2}, "wrong_outcome": 0, "debited_not_flagged": 0, "not_final": 0, "flagged": 1,
        "flagged_announced": 1, "apologised_while_started": 0, "took_error_branch": 0, "wall_s": 1.0,
        "drain_s": 1.0, "sweeps": [{}], "error_codes": {"REFUND_PENDING": 1}, "throttle": None,
    }  # fmt: skip
    plain = "\n".join(_soak(soak, 2.4))
    assert "3.0x the capacity above" in plain and "REFUND_PENDING 1" in plain and "1 of the 1 flagged" in plain
    throttle = {"seconds": 30.0, "table": "TrackerTable", "started_after_s": 1.5, "lasted_s": 30.0}
    throttled = "\n".join(_soak({**soak, "throttle": {**throttle, "refused": {"update_item": 7}}}, 2.4))
    assert (
        throttled.startswith("## 3d.") and "update_item 7" in throttled and "1.5 s after the calls began" in throttled
    )
    never = "\n".join(_soak({**soak, "throttle": {**throttle, "started_after_s": None, "refused": {}}}, 2.4))
    assert "the throttle never started" in never
