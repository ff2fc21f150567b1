"""samconfig.toml and env.json agree with template.yaml."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from holdline_local.template import load_template, read_stack

REPO = Path(__file__).resolve().parents[2]


def test_samconfig_has_default_and_prod_environments() -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    parameters = set(load_template()["Parameters"])
    names = set()
    for environment in ("default", "prod"):
        deploy = config[environment]["deploy"]["parameters"]
        # Named IAM resources are never needed; the nested Connect integration needs AUTO_EXPAND (AWS Serverless
        # Application Repository guide: "Application Capabilities": nested applications).
        assert deploy["capabilities"] == "CAPABILITY_IAM CAPABILITY_AUTO_EXPAND"
        assert deploy["confirm_changeset"] is True
        overrides = {item.split("=", 1)[0] for item in deploy["parameter_overrides"].split()}
        assert overrides <= parameters, overrides - parameters
        names.add(config[environment]["global"]["parameters"]["stack_name"])
    assert len(names) == 2  # prod never overwrites the try-out stack


def test_env_json_names_real_functions_and_their_variables() -> None:
    functions = read_stack().functions
    for function, variables in json.loads((REPO / "env.json").read_text()).items():
        assert function in functions, function
        assert set(variables) <= set(functions[function].environment), (function, variables)
