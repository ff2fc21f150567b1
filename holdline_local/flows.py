"""The shipped Connect flow (flows/transfer-flow.json) and its copy inside template.yaml.

CloudFormation cannot read a file into ``AWS::Connect::ContactFlow``'s ``Content``, so the template carries
the flow's text in a ``Fn::Sub`` block. The file is the source; ``python -m holdline_local.flows sync``
(``make flow-sync``) rewrites the block, and tests fail while the two differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from holdline_local.template import REPO_ROOT, TEMPLATE_PATH, load_template

FLOW_PATH = REPO_ROOT / "flows" / "transfer-flow.json"
FLOW_RESOURCE = "TransferContactFlow"
_BLOCK_START = "        - |"
_INDENT = " " * 10


def load_flow(path: Path = FLOW_PATH) -> dict[str, Any]:
    flow: dict[str, Any] = json.loads(path.read_text())
    return flow


def template_flow(template: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The flow inside the template and its ``Fn::Sub`` variables (placeholder -> intrinsic)."""
    template = template or load_template()
    content = template["Resources"][FLOW_RESOURCE]["Properties"]["Content"]["Fn::Sub"]
    text, variables = content
    flow: dict[str, Any] = json.loads(text)
    return flow, dict(variables)


def function_placeholders(template: dict[str, Any] | None = None) -> dict[str, str]:
    """Placeholder (``StarterFunctionArn``) -> function logical ID, from the template's substitutions."""
    _, variables = template_flow(template)
    mapping: dict[str, str] = {}
    for name, value in variables.items():
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            if attribute == "Arn":
                mapping[name] = logical_id
    return mapping


def sync_template(flow_path: Path = FLOW_PATH, template_path: Path = TEMPLATE_PATH) -> bool:
    """Copy the flow file into the template's Content block; True if the template changed."""
    lines = template_path.read_text().splitlines(keepends=True)
    resource = next(i for i, line in enumerate(lines) if line.startswith(f"  {FLOW_RESOURCE}:"))
    start = next(i for i in range(resource, len(lines)) if lines[i].rstrip() == _BLOCK_START) + 1
    end = start
    while end < len(lines) and (lines[end].startswith(_INDENT) or not lines[end].strip()):
        end += 1
    body = json.dumps(load_flow(flow_path), indent=2, ensure_ascii=False).splitlines()
    new = [f"{_INDENT}{line}\n" for line in body]
    if lines[start:end] == new:
        return False
    template_path.write_text("".join(lines[:start] + new + lines[end:]))
    return True


def main(argv: list[str]) -> int:
    if argv[1:] != ["sync"]:
        print("usage: python -m holdline_local.flows sync", file=sys.stderr)
        return 2
    changed = sync_template()
    print(f"template.yaml {'updated from' if changed else 'already matches'} {FLOW_PATH.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
