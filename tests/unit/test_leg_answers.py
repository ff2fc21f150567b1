"""Every leg's answer carries every field its Task's ResultSelector reads (statemachines/transfer.asl.json).

A ResultSelector path that does not resolve is ``States.Runtime``: no Catch takes it (``States.ALL``
included), so a Debit whose answer lacked ``status`` would fail the execution with the money moved, and no
refund (Step Functions developer guide, "Handling errors in Step Functions workflows"). The list is derived:
each Task's ``$.Payload.<field>`` paths from the ASL, the function from its ``FunctionName`` placeholder, the
handler from template.yaml, the logic function from the handler module, and every ``return`` of that logic
function (following the helpers it returns through) from functions/holdline/logic/bank_legs.py.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from holdline_local.template import load_template

REPO = Path(__file__).resolve().parents[2]
ASL = REPO / "statemachines" / "transfer.asl.json"
FUNCTIONS = REPO / "functions"
PAYLOAD_FIELD = re.compile(r"\$\.Payload\.([A-Za-z0-9_]+)")
PLACEHOLDER = re.compile(r"^\$\{(\w+)Arn\}$")

Shape = frozenset[str]


# ---- what the ASL reads -----------------------------------------------------------------------------------
def _tasks(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from _tasks(branch["States"])
        if "ItemProcessor" in state:
            yield from _tasks(state["ItemProcessor"]["States"])


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key.endswith(".$") or isinstance(item, dict | list):  # a static string is not a path
                yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def fields_read(definition: dict[str, Any]) -> dict[str, tuple[str, set[str]]]:
    """Task state -> (logical id of its function, the Payload fields its ResultSelector reads)."""
    found: dict[str, tuple[str, set[str]]] = {}
    for name, state in _tasks(definition["States"]):
        selector = state.get("ResultSelector")
        if state.get("Type") != "Task" or not selector or state.get("Resource") != "arn:aws:states:::lambda:invoke":
            continue
        function = PLACEHOLDER.match(str(state["Parameters"]["FunctionName"]))
        assert function, f"{name}: FunctionName is not a ${{...Arn}} placeholder"
        read = {m for text in _strings(selector) for m in PAYLOAD_FIELD.findall(text)}
        found[name] = (function.group(1), read)
    return found


# ---- what the legs answer ---------------------------------------------------------------------------------
class Shapes:
    """The key sets a module's functions can return, read from their ``return`` statements: dict literals
    (``**helper(...)`` unpacked) and calls of the module's own functions. Anything else is unreadable, and
    the test says so rather than guess."""

    def __init__(self, source: str) -> None:
        tree = ast.parse(source)
        self.functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        self._memo: dict[str, list[Shape]] = {}

    def of(self, function: str) -> list[Shape]:
        if function not in self._memo:
            self._memo[function] = []  # a recursive return adds nothing new
            shapes: list[Shape] = []
            for returned in _returns(self.functions[function]):
                shapes.extend(self._value(returned, function))
            self._memo[function] = shapes
        return self._memo[function]

    def _value(self, node: ast.expr | None, where: str) -> list[Shape]:
        if isinstance(node, ast.Dict):
            shapes: list[Shape] = [frozenset()]
            for key, value in zip(node.keys, node.values, strict=True):
                if key is None:  # **value
                    shapes = [s | extra for s in shapes for extra in self._value(value, where)]
                elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                    shapes = [s | {key.value} for s in shapes]
                else:
                    raise AssertionError(f"{where}: a computed key at line {key.lineno}")
            return shapes
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.functions:
            return self.of(node.func.id)
        line = getattr(node, "lineno", "?")
        raise AssertionError(f"{where}: cannot read the shape of the return at line {line}")


def _returns(function: ast.FunctionDef) -> Iterator[ast.expr | None]:
    """The function's own returns, not those of functions or lambdas defined inside it."""
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Return):
            yield node.value
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            pending.extend(ast.iter_child_nodes(node))


def logic_function(handler: str) -> tuple[Path, str]:
    """``holdline.handlers.bank_legs.debit`` -> (the logic module's file, ``debit``): the handler module binds
    each handler to ``_leg(name, lambda t, e: <logic module>.<function>(...))``."""
    module, _, name = handler.rpartition(".")
    source = (FUNCTIONS / (module.replace(".", "/") + ".py")).read_text()
    tree = ast.parse(source)
    imports = {
        alias.asname or alias.name: f"{node.module}.{alias.name}"
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    (assigned,) = [
        n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == name for t in n.targets)
    ]
    assert isinstance(assigned, ast.Call)
    calls = [
        n
        for n in ast.walk(assigned)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id in imports  # ``bank_legs.debit(...)``, not ``e.get(...)``
    ]
    assert len(calls) == 1, f"{handler}: expected one call of a logic function"
    call = calls[0]
    assert isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name)
    logic_module = imports[call.func.value.id]
    return FUNCTIONS / (logic_module.replace(".", "/") + ".py"), call.func.attr


def _handlers() -> dict[str, str]:
    resources = load_template()["Resources"]
    return {
        logical_id: str(resource["Properties"]["Handler"])
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::Serverless::Function" and "Handler" in resource.get("Properties", {})
    }


READS = fields_read(json.loads(ASL.read_text()))


def test_the_asl_has_result_selectors_to_check() -> None:
    # Debit, the two settlement checks, Credit, Confirm, Refund at the time of writing; at least the money legs.
    assert {"Debit", "Credit", "Refund"} <= set(READS)
    assert all(fields for _, fields in READS.values())


@pytest.mark.parametrize("state", sorted(READS))
def test_every_answer_of_the_leg_carries_what_its_result_selector_reads(state: str) -> None:
    function, read = READS[state]
    path, name = logic_function(_handlers()[function])
    shapes = Shapes(path.read_text()).of(name)
    assert shapes, f"{name} returns nothing readable"
    for shape in shapes:
        missing = read - shape
        assert not missing, f"{state}: {name} can answer {sorted(shape)}, without {sorted(missing)}"


# ---- the checker itself -----------------------------------------------------------------------------------
def test_the_checker_sees_a_return_path_that_lacks_a_field() -> None:
    source = """
def _answer(p):
    return {"paymentId": p, "status": "SETTLED"}

def settle(p, late):
    if late:
        return {**_answer(p), "checks": 1}
    return {"paymentId": p}

def nested(p):
    def inner():
        return 42
    return _answer(p)
"""
    shapes = Shapes(source)
    assert sorted(map(sorted, shapes.of("settle"))) == [["checks", "paymentId", "status"], ["paymentId"]]
    assert shapes.of("nested") == [frozenset({"paymentId", "status"})]
    with pytest.raises(AssertionError, match="cannot read"):
        Shapes("def f(x):\n    return x\n").of("f")


def test_the_checker_reads_payload_fields_inside_intrinsic_functions() -> None:
    definition = {
        "States": {
            "T": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "${DebitFunctionArn}"},
                "ResultSelector": {"n.$": "States.StringToJson($.Payload.count)", "fixed": "$.Payload.notRead"},
            }
        }
    }
    assert fields_read(definition) == {"T": ("DebitFunction", {"count"})}
