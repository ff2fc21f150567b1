"""``Fn::ForEach`` expanded as CloudFormation's ``AWS::LanguageExtensions`` transform expands it.

CloudFormation runs a template's transforms in the order its ``Transform`` section lists them: with
``[AWS::LanguageExtensions, AWS::Serverless-2016-10-31]`` every ``Fn::ForEach::<Loop>`` is expanded first,
then the Serverless transform sees plain resources ("AWS::LanguageExtensions transform",
https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/transform-aws-languageextensions.html;
"Fn::ForEach", https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/intrinsic-function-reference-foreach.html):

- ``"Fn::ForEach::LoopName": [Identifier, Collection, {OutputKey: OutputValue}]`` is replaced by one
  ``OutputKey: OutputValue`` per item of ``Collection``, in the ``Conditions``, ``Resources`` (and resource
  properties) and ``Outputs`` sections; loops nest.
- Every ``${Identifier}`` in the key and the fragment becomes the item, every ``&{Identifier}`` the item
  without its non-alphanumeric characters, and ``{"Ref": Identifier}`` the item itself.
- ``Collection`` is a list, or a ``Ref`` to a ``CommaDelimitedList`` parameter.

aws-sam-translator does not know ``Fn::ForEach``. SAM CLI expands it itself (when told to: ``language_extensions``
in samconfig.toml), but its expansion also resolves parameters to their defaults and conditions to their
outcome, which is not CloudFormation's view of the template: the local stack must still see ``!Ref BankApiUrl``.
So the local template reader expands the loops here, and leaves every other intrinsic function as written.
tests/unit/test_language_extensions.py checks that SAM CLI's expansion makes the same resources.

Standard library only: imported by the dev tooling and run by ``sam_transform.py`` in .venv-sam.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

TRANSFORM = "AWS::LanguageExtensions"
FOREACH_PREFIX = "Fn::ForEach::"
#: The sections Fn::ForEach may be used in (it is refused in every other one).
SECTIONS = ("Conditions", "Resources", "Outputs")


class InvalidForEach(ValueError):
    """A loop CloudFormation would refuse: malformed, an unknown collection, or a key made twice."""


def uses_language_extensions(template: Mapping[str, Any]) -> bool:
    transform = template.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform]
    return TRANSFORM in transforms


def expand(template: Mapping[str, Any], parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The template after the AWS::LanguageExtensions transform: loops expanded, the transform itself removed
    from ``Transform`` (the next transform runs on the result). A template without the transform is returned
    as a copy, unchanged; one with a loop but without the transform is refused, as CloudFormation does."""
    result = copy.deepcopy(dict(template))
    if not uses_language_extensions(result):
        for section in SECTIONS:
            if _has_loop(result.get(section)):
                raise InvalidForEach(f"Fn::ForEach in {section} needs the {TRANSFORM} transform")
        return result
    values = _parameter_values(result.get("Parameters", {}), parameters or {})
    for section in SECTIONS:
        if isinstance(result.get(section), dict):
            result[section] = _expand_mapping(result[section], values, section)
    transform = result["Transform"]
    rest = [t for t in transform if t != TRANSFORM] if isinstance(transform, list) else []
    if not rest:
        result.pop("Transform")
    else:
        result["Transform"] = rest[0] if len(rest) == 1 else rest
    return result


def _parameter_values(declared: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    return {name: given.get(name, spec.get("Default")) for name, spec in declared.items() if isinstance(spec, dict)}


def _has_loop(node: Any) -> bool:
    if isinstance(node, dict):
        return any(str(k).startswith(FOREACH_PREFIX) or _has_loop(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_has_loop(item) for item in node)
    return False


def _expand_mapping(mapping: Mapping[str, Any], parameters: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        if key in out:
            raise InvalidForEach(f"{where}: {key} is made twice")
        out[key] = value

    for key, value in mapping.items():
        if not str(key).startswith(FOREACH_PREFIX):
            put(key, _expand_value(value, parameters, f"{where}.{key}"))
            continue
        identifier, items, fragment = _loop(key, value, parameters)
        for item in items:
            replaced = _replace(fragment, identifier, item)
            for output_key, output_value in _expand_mapping(replaced, parameters, f"{where}.{key}").items():
                put(output_key, output_value)
    return out


def _expand_value(value: Any, parameters: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, dict):
        return _expand_mapping(value, parameters, where)
    if isinstance(value, list):
        return [_expand_value(item, parameters, where) for item in value]
    return value


def _loop(key: str, value: Any, parameters: Mapping[str, Any]) -> tuple[str, list[str], dict[str, Any]]:
    if not (isinstance(value, list) and len(value) == 3):
        raise InvalidForEach(f"{key} must be [Identifier, Collection, {{OutputKey: OutputValue}}]")
    identifier, collection, fragment = value
    if not isinstance(identifier, str) or not re.fullmatch(r"[A-Za-z0-9]+", identifier):
        raise InvalidForEach(f"{key}: the identifier must be alphanumeric, not {identifier!r}")
    if not isinstance(fragment, dict) or not fragment:
        raise InvalidForEach(f"{key}: the fragment must be a mapping {{OutputKey: OutputValue}}")
    for output_key in fragment:
        if not str(output_key).startswith(FOREACH_PREFIX) and not re.search(
            r"[$&]\{" + re.escape(identifier) + r"\}", str(output_key)
        ):
            raise InvalidForEach(f"{key}: the output key {output_key} must contain the identifier {identifier}")
    if isinstance(collection, dict) and set(collection) == {"Ref"}:
        raw = parameters.get(collection["Ref"])
        if raw is None:
            raise InvalidForEach(f"{key}: the collection Ref {collection['Ref']} is no parameter with a value")
        collection = raw if isinstance(raw, list) else [part.strip() for part in str(raw).split(",")]
    if not isinstance(collection, list) or not all(isinstance(item, str) for item in collection):
        raise InvalidForEach(f"{key}: the collection must be a list of strings or a Ref to a CommaDelimitedList")
    return identifier, collection, fragment


def _replace(node: Any, identifier: str, item: str) -> Any:
    if isinstance(node, str):
        alphanumeric = re.sub(r"[^A-Za-z0-9]", "", item)
        return node.replace("${" + identifier + "}", item).replace("&{" + identifier + "}", alphanumeric)
    if isinstance(node, list):
        return [_replace(element, identifier, item) for element in node]
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] == identifier:
            return item
        return {_replace(key, identifier, item): _replace(value, identifier, item) for key, value in node.items()}
    return node
