"""Read template.yaml, the single source of truth, for the local stack and the tests.

Only what the local stack needs: the functions (handler, code, timeout, environment merged with Globals),
the state machines (definition file and substitutions) and the tables. Intrinsic functions are resolved
against the names the local stack gives each resource (its logical ID).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short tags (``!Ref X``) into their long form (``{"Ref": "X"}``)."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open() as handle:
        template: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return template


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    handler: str
    code_uri: Path
    timeout: int
    environment: Mapping[str, Any]  # unresolved: values may be {"Ref": ...}


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    definition_path: Path
    substitutions: Mapping[str, Any]  # unresolved
    type: str


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class QueueSpec:
    logical_id: str
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class Stack:
    """The parts of the template the local stack builds."""

    parameters: Mapping[str, Any]
    functions: Mapping[str, FunctionSpec]
    state_machines: Mapping[str, StateMachineSpec]
    tables: Mapping[str, TableSpec]
    queues: Mapping[str, QueueSpec]


def read_stack(path: Path = TEMPLATE_PATH) -> Stack:
    template = load_template(path)
    root = path.parent
    globals_fn = template.get("Globals", {}).get("Function", {})
    global_env = globals_fn.get("Environment", {}).get("Variables", {})
    functions: dict[str, FunctionSpec] = {}
    state_machines: dict[str, StateMachineSpec] = {}
    tables: dict[str, TableSpec] = {}
    queues: dict[str, QueueSpec] = {}
    for logical_id, resource in template["Resources"].items():
        kind = resource["Type"]
        props = resource.get("Properties", {})
        if kind == "AWS::Serverless::Function":
            env = {**global_env, **props.get("Environment", {}).get("Variables", {})}
            functions[logical_id] = FunctionSpec(
                logical_id=logical_id,
                handler=props.get("Handler", globals_fn.get("Handler")),
                code_uri=root / props.get("CodeUri", globals_fn.get("CodeUri", ".")),
                timeout=int(props.get("Timeout", globals_fn.get("Timeout", 3))),
                environment=env,
            )
        elif kind == "AWS::Serverless::StateMachine":
            state_machines[logical_id] = StateMachineSpec(
                logical_id=logical_id,
                definition_path=root / props["DefinitionUri"],
                substitutions=props.get("DefinitionSubstitutions", {}),
                type=props.get("Type", "STANDARD"),
            )
        elif kind == "AWS::DynamoDB::Table":
            tables[logical_id] = TableSpec(logical_id=logical_id, properties=props)
        elif kind == "AWS::SQS::Queue":
            queues[logical_id] = QueueSpec(logical_id=logical_id, properties=props)
    parameters = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
    return Stack(
        parameters=parameters, functions=functions, state_machines=state_machines, tables=tables, queues=queues
    )


class UnresolvableValue(ValueError):
    pass


def resolve(value: Any, refs: Mapping[str, str], attributes: Mapping[str, str]) -> Any:
    """Resolve ``Ref``, ``Fn::GetAtt`` and simple ``Fn::Sub`` against local names.

    ``refs`` maps a logical ID or parameter to what ``Ref`` returns; ``attributes`` maps ``"Id.Attr"``.
    """
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            if arg not in refs:
                raise UnresolvableValue(f"Ref {arg}")
            return refs[arg]
        if key == "Fn::GetAtt":
            name = ".".join(arg) if isinstance(arg, list) else str(arg)
            if name not in attributes:
                raise UnresolvableValue(f"GetAtt {name}")
            return attributes[name]
        if key == "Fn::Sub" and isinstance(arg, str):
            lookup = {**refs, **attributes}

            def _sub(match: re.Match[str]) -> str:
                if match.group(1) not in lookup:
                    raise UnresolvableValue(f"Sub ${{{match.group(1)}}}")
                return str(lookup[match.group(1)])

            return re.sub(r"\$\{([A-Za-z0-9_.:]+)\}", _sub, arg)
    if isinstance(value, dict):
        return {k: resolve(v, refs, attributes) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, refs, attributes) for v in value]
    return value


def substitute_definition(definition: str, substitutions: Mapping[str, str]) -> str:
    """Apply ``DefinitionSubstitutions`` the way CloudFormation does: ``${Name}`` becomes the value."""

    def _sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            raise UnresolvableValue(f"definition placeholder ${{{name}}} has no substitution")
        return substitutions[name]

    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", _sub, definition)
