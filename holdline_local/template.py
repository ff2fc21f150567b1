"""Read template.yaml, the single source of truth, for the local stack and the tests.

The local stack builds what CloudFormation would create: the template **after the Serverless transform**,
run by AWS's own translator (aws-sam-translator, in .venv-sam: see :mod:`holdline_local.sam_transform`). So
each function's variables are SAM's merge of ``Globals`` with its own, its role is the one SAM makes from its
``Policies`` (plus what SAM adds, such as an async destination's ``sqs:SendMessage``), and resources SAM
generates (EventInvokeConfig, roles, permissions, the rules and permissions of a function's ``Events``) are
there as on AWS. The SAM template stays readable with :func:`load_template` for tests of the source itself:
after ``AWS::LanguageExtensions`` (its ``Fn::ForEach`` loops expanded by
:mod:`holdline_local.language_extensions`, as CloudFormation does before the Serverless transform), or as
written with ``expanded=False``.

A nested application with a local ``Location`` (the Connect integration, connect/template.yaml) becomes, after
the transform, an ``AWS::CloudFormation::Stack`` whose ``TemplateURL`` names the uploaded file: its resources
whose conditions hold join ``others`` as ``<Application>.<LogicalId>``, and :class:`NestedStackSpec` keeps what
the parent passes it, so the local stack can resolve them in the nested stack's own scope.

Intrinsic functions are resolved against the names the local stack gives each resource (its logical ID).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from holdline_local import language_extensions

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
SAM_PYTHON = REPO_ROOT / ".venv-sam" / "bin" / "python"
CACHE_DIR = REPO_ROOT / ".holdline" / "cache"
#: Where sam_transform.py puts local code (``CodeUri``/``DefinitionUri``): ``s3://packaged/<path>``.
PACKAGED_BUCKET = "packaged"
#: Where sam_transform.py puts a nested application's local template (``Location``).
PACKAGED_URL = f"https://s3.amazonaws.com/{PACKAGED_BUCKET}/"


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


def load_template(path: Path = TEMPLATE_PATH, *, expanded: bool = True) -> dict[str, Any]:
    """The SAM template with its ``Fn::ForEach`` loops expanded (what the Serverless transform receives), or
    as written (``expanded=False``)."""
    with path.open() as handle:
        template: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return language_extensions.expand(template) if expanded else template


class TransformFailed(RuntimeError):
    pass


#: What runs in .venv-sam to transform the template (the cache is keyed by them and the template's text).
_TRANSFORM_SCRIPTS = ("sam_transform.py", "language_extensions.py")


def transform(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template after the Serverless transform (CloudFormation's view), cached by the template's text."""
    return json.loads(_transformed_text(path.resolve(), path.read_bytes()))


@cache
def _transformed_text(path: Path, text: bytes) -> str:
    tools = b"".join((REPO_ROOT / "holdline_local" / name).read_bytes() for name in _TRANSFORM_SCRIPTS)
    digest = hashlib.sha256(text + tools).hexdigest()
    cached = CACHE_DIR / f"sam-transform-{digest[:24]}.json"
    if cached.exists():
        return cached.read_text()
    if not SAM_PYTHON.exists():
        raise TransformFailed(
            f"no {SAM_PYTHON}: run `make install` (aws-sam-cli lives in a virtual environment of its own)"
        )
    result = subprocess.run(  # noqa: S603 - our own script, our own interpreter
        [str(SAM_PYTHON), str(REPO_ROOT / "holdline_local" / "sam_transform.py"), str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")},
        timeout=120,
    )
    if result.returncode != 0:
        raise TransformFailed(f"the Serverless transform of {path.name} failed:\n{result.stderr[-3000:]}")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(result.stdout)
    partial.replace(cached)
    return result.stdout


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    handler: str
    code_uri: Path
    timeout: int
    environment: Mapping[str, Any]  # unresolved: values may be {"Ref": ...}; SAM merged Globals in
    event_invoke_config: Mapping[str, Any] = field(default_factory=dict)  # unresolved
    memory_mb: int = 128
    role: str | None = None  # logical ID of its AWS::IAM::Role
    reserved_concurrency: int | None = None
    tracing: str = "PassThrough"  # TracingConfig.Mode


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    definition_path: Path
    substitutions: Mapping[str, Any]  # unresolved
    type: str
    role: str | None = None


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    properties: Mapping[str, Any]


@dataclass(frozen=True)
class NestedStackSpec:
    """A nested stack whose template is in this repository (an ``AWS::Serverless::Application`` with a local
    ``Location``)."""

    logical_id: str
    template_path: Path
    parameters: Mapping[str, Any]  # what the parent passes, unresolved (parent scope)
    template: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Stack:
    """The parts of the (transformed) template the local stack builds."""

    parameters: Mapping[str, Any]
    functions: Mapping[str, FunctionSpec]
    state_machines: Mapping[str, StateMachineSpec]
    tables: Mapping[str, TableSpec]
    #: Every other resource whose Condition holds, by logical ID: (Type, Properties), unresolved. The local
    #: stack builds the kinds it knows (roles, queues, buses, rules, permissions, event source mappings).
    others: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)
    conditions: Mapping[str, bool] = field(default_factory=dict)
    nested: Mapping[str, NestedStackSpec] = field(default_factory=dict)

    def of_type(self, kind: str) -> dict[str, Mapping[str, Any]]:
        return {logical_id: props for logical_id, (k, props) in self.others.items() if k == kind}


def _getatt_target(value: Any) -> str | None:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


def _local_path(root: Path, bucket: Any, key: Any) -> Path:
    if bucket != PACKAGED_BUCKET or not isinstance(key, str):
        raise UnresolvableValue(f"code at s3://{bucket}/{key} is not in this repository")
    return root / key


def read_stack(path: Path = TEMPLATE_PATH, parameter_overrides: Mapping[str, str] | None = None) -> Stack:
    template = transform(path)
    defaults = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
    parameters = {**defaults, **(parameter_overrides or {})}
    conditions = evaluate_conditions(template, parameters)
    root = path.parent
    resources = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if "Condition" not in resource or conditions[resource["Condition"]]
    }
    invoke_configs = {
        str(props["Properties"]["FunctionName"].get("Ref")): props["Properties"]
        for props in resources.values()
        if props["Type"] == "AWS::Lambda::EventInvokeConfig" and isinstance(props["Properties"]["FunctionName"], dict)
    }
    functions: dict[str, FunctionSpec] = {}
    state_machines: dict[str, StateMachineSpec] = {}
    tables: dict[str, TableSpec] = {}
    others: dict[str, tuple[str, Mapping[str, Any]]] = {}
    nested: dict[str, NestedStackSpec] = {}
    for logical_id, resource in resources.items():
        kind = resource["Type"]
        props = resource.get("Properties", {})
        if kind == "AWS::Lambda::Function":
            code = props["Code"]
            reserved = props.get("ReservedConcurrentExecutions")
            functions[logical_id] = FunctionSpec(
                logical_id=logical_id,
                handler=props["Handler"],
                code_uri=_local_path(root, code.get("S3Bucket"), code.get("S3Key")).resolve(),
                timeout=int(props.get("Timeout", 3)),
                environment=props.get("Environment", {}).get("Variables", {}),
                event_invoke_config=invoke_configs.get(logical_id, {}),
                memory_mb=int(props.get("MemorySize", 128)),
                role=_getatt_target(props.get("Role")),
                reserved_concurrency=None if reserved is None else int(reserved),
                tracing=str(props.get("TracingConfig", {}).get("Mode", "PassThrough")),
            )
        elif kind == "AWS::StepFunctions::StateMachine":
            location = props["DefinitionS3Location"]
            state_machines[logical_id] = StateMachineSpec(
                logical_id=logical_id,
                definition_path=_local_path(root, location.get("Bucket"), location.get("Key")),
                substitutions=props.get("DefinitionSubstitutions", {}),
                type=props.get("StateMachineType", "STANDARD"),
                role=_getatt_target(props.get("RoleArn")),
            )
        elif kind == "AWS::DynamoDB::Table":
            tables[logical_id] = TableSpec(logical_id=logical_id, properties=props)
        elif kind == "AWS::CloudFormation::Stack" and str(props.get("TemplateURL", "")).startswith(PACKAGED_URL):
            nested_path = root / str(props["TemplateURL"]).removeprefix(PACKAGED_URL)
            spec = NestedStackSpec(logical_id, nested_path, props.get("Parameters", {}), transform(nested_path))
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
        conditions=conditions,
        nested=nested,
    )


def _nested_resources(
    spec: NestedStackSpec, parent_parameters: Mapping[str, Any]
) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """The nested template's resources whose conditions hold, keyed ``<Application>.<LogicalId>``. A value the
    parent passes by ``Ref`` to one of its parameters is that parameter's; anything else (an ARN from GetAtt)
    only exists once deployed, and counts as set."""
    values = {name: p.get("Default") for name, p in spec.template.get("Parameters", {}).items()}
    for name, value in spec.parameters.items():
        if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in parent_parameters:
            values[name] = parent_parameters[value["Ref"]]
        else:
            values[name] = f"<{name} from {spec.logical_id}'s parent>"
    conditions = evaluate_conditions(spec.template, values)
    return {
        f"{spec.logical_id}.{logical_id}": (resource["Type"], resource.get("Properties", {}))
        for logical_id, resource in spec.template.get("Resources", {}).items()
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


class _NoValue:
    """``Ref: AWS::NoValue``: the property (or list item) is removed, as CloudFormation does."""


NO_VALUE = _NoValue()


def resolve(
    value: Any, refs: Mapping[str, str], attributes: Mapping[str, str], conditions: Mapping[str, bool] | None = None
) -> Any:
    """Resolve ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::If``, ``Fn::Join``, ``Fn::Select`` and ``AWS::NoValue``
    against local names. ``refs`` maps a logical ID or parameter to what ``Ref`` returns; ``attributes`` maps
    ``"Id.Attr"``; ``conditions`` are the template's evaluated Conditions."""
    result = _resolve(value, refs, attributes, conditions or {})
    return None if result is NO_VALUE else result


def _resolve(value: Any, refs: Mapping[str, str], attributes: Mapping[str, str], conditions: Mapping[str, bool]) -> Any:
    def again(node: Any) -> Any:
        return _resolve(node, refs, attributes, conditions)

    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            if arg == "AWS::NoValue":
                return NO_VALUE
            if arg not in refs:
                raise UnresolvableValue(f"Ref {arg}")
            return refs[arg]
        if key == "Fn::GetAtt":
            name = ".".join(arg) if isinstance(arg, list) else str(arg)
            if name not in attributes:
                raise UnresolvableValue(f"GetAtt {name}")
            return attributes[name]
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], {k: again(v) for k, v in arg[1].items()})
            lookup = {**refs, **attributes, **variables}

            def _sub(match: re.Match[str]) -> str:
                if match.group(1) not in lookup:
                    raise UnresolvableValue(f"Sub ${{{match.group(1)}}}")
                return str(lookup[match.group(1)])

            return re.sub(r"\$\{([A-Za-z0-9_.:]+)\}", _sub, text)
        if key == "Fn::If":
            name, when_true, when_false = arg
            if name not in conditions:
                raise UnresolvableValue(f"condition {name}")
            return again(when_true if conditions[name] else when_false)
        if key == "Fn::Join":
            separator, items = arg
            return separator.join(str(again(item)) for item in again(items))
        if key == "Fn::Select":
            index, items = arg
            return again(items)[int(again(index))]
    if isinstance(value, dict):
        resolved = {k: again(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}
    if isinstance(value, list):
        return [item for item in (again(v) for v in value) if item is not NO_VALUE]
    return value


def substitute_definition(definition: str, substitutions: Mapping[str, str]) -> str:
    """Apply ``DefinitionSubstitutions`` the way CloudFormation does: ``${Name}`` becomes the value."""

    def _sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            raise UnresolvableValue(f"definition placeholder ${{{name}}} has no substitution")
        return substitutions[name]

    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", _sub, definition)
