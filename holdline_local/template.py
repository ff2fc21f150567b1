"""Read template.yaml, the single source of truth, for the local stack and the tests.

Only what the local stack needs: the functions (handler, code, timeout, environment merged with Globals),
the state machines (definition file and substitutions) and the tables. Intrinsic functions are resolved
against the names the local stack gives each resource (its logical ID). A nested application with a local
``Location`` (the Connect integration, connect/template.yaml) is read too: its resources whose conditions
hold join ``others`` as ``<Application>.<LogicalId>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short tags (``!Ref X``) into their long form (``{"Ref": "X"}``)."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    # !Ref and !Condition have no Fn:: prefix in their long form.
    name = tag_suffix if tag_suffix in {"Ref", "Condition"} else f"Fn::{tag_suffix}"
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
    event_invoke_config: Mapping[str, Any] = field(default_factory=dict)  # unresolved


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
class NestedStackSpec:
    """An ``AWS::Serverless::Application`` whose ``Location`` is a template in this repository."""

    logical_id: str
    template_path: Path
    parameters: Mapping[str, Any]  # what the parent passes, unresolved


@dataclass(frozen=True)
class Stack:
    """The parts of the template the local stack builds."""

    parameters: Mapping[str, Any]
    functions: Mapping[str, FunctionSpec]
    state_machines: Mapping[str, StateMachineSpec]
    tables: Mapping[str, TableSpec]
    #: Every other resource whose Condition holds, by logical ID: (Type, Properties), unresolved. The local
    #: stack builds the kinds it knows (queues, buses, rules, event source mappings) and ignores the rest.
    others: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)
    nested: Mapping[str, NestedStackSpec] = field(default_factory=dict)

    def of_type(self, kind: str) -> dict[str, Mapping[str, Any]]:
        return {logical_id: props for logical_id, (k, props) in self.others.items() if k == kind}


def read_stack(path: Path = TEMPLATE_PATH, parameter_overrides: Mapping[str, str] | None = None) -> Stack:
    template = load_template(path)
    defaults = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
    parameters = {**defaults, **(parameter_overrides or {})}
    conditions = evaluate_conditions(template, parameters)
    others: dict[str, tuple[str, Mapping[str, Any]]] = {}
    nested: dict[str, NestedStackSpec] = {}
    root = path.parent
    globals_fn = template.get("Globals", {}).get("Function", {})
    global_env = globals_fn.get("Environment", {}).get("Variables", {})
    functions: dict[str, FunctionSpec] = {}
    state_machines: dict[str, StateMachineSpec] = {}
    tables: dict[str, TableSpec] = {}
    for logical_id, resource in template["Resources"].items():
        kind = resource["Type"]
        props = resource.get("Properties", {})
        if "Condition" in resource and not conditions[resource["Condition"]]:
            continue
        if kind == "AWS::Serverless::Function":
            env = {**global_env, **props.get("Environment", {}).get("Variables", {})}
            functions[logical_id] = FunctionSpec(
                logical_id=logical_id,
                handler=props.get("Handler", globals_fn.get("Handler")),
                code_uri=root / props.get("CodeUri", globals_fn.get("CodeUri", ".")),
                timeout=int(props.get("Timeout", globals_fn.get("Timeout", 3))),
                environment=env,
                event_invoke_config=props.get("EventInvokeConfig", {}),
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
        elif kind == "AWS::Serverless::Application" and isinstance(props.get("Location"), str):
            spec = NestedStackSpec(logical_id, root / props["Location"], props.get("Parameters", {}))
            nested[logical_id] = spec
            others.update(_nested_resources(spec, parameters))
        else:
            others[logical_id] = (kind, props)
    return Stack(
        parameters=defaults,
        functions=functions,
        state_machines=state_machines,
        tables=tables,
        others=others,
        nested=nested,
    )


def _nested_resources(
    spec: NestedStackSpec, parent_parameters: Mapping[str, Any]
) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """The nested template's resources whose conditions hold, keyed ``<Application>.<LogicalId>``. A value the
    parent passes by ``Ref`` to one of its parameters is that parameter's; anything else (an ARN from GetAtt)
    only exists once deployed, and counts as set."""
    template = load_template(spec.template_path)
    values = {name: p.get("Default") for name, p in template.get("Parameters", {}).items()}
    for name, value in spec.parameters.items():
        if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in parent_parameters:
            values[name] = parent_parameters[value["Ref"]]
        else:
            values[name] = f"<{name} from {spec.logical_id}'s parent>"
    conditions = evaluate_conditions(template, values)
    return {
        f"{spec.logical_id}.{logical_id}": (resource["Type"], resource.get("Properties", {}))
        for logical_id, resource in template.get("Resources", {}).items()
        if "Condition" not in resource or conditions[resource["Condition"]]
    }


def evaluate_conditions(template: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, bool]:
    """The template's Conditions (Fn::Equals/Not/And/Or over parameters and other conditions)."""
    raw = template.get("Conditions", {})
    done: dict[str, bool] = {}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return "" if parameters.get(node["Ref"]) is None else str(parameters[node["Ref"]])
        if isinstance(node, dict) and set(node) == {"Condition"}:
            return condition(node["Condition"])
        if isinstance(node, dict) and len(node) == 1:
            ((key, args),) = node.items()
            if key == "Fn::Equals":
                return value(args[0]) == value(args[1])
            if key == "Fn::Not":
                return not value(args[0])
            if key == "Fn::And":
                return all(value(a) for a in args)
            if key == "Fn::Or":
                return any(value(a) for a in args)
            raise UnresolvableValue(f"condition function {key}")
        return node

    def condition(name: str) -> bool:
        if name not in done:
            done[name] = bool(value(raw[name]))
        return done[name]

    for name in raw:
        condition(name)
    return done


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
