"""Run by .venv-sam's Python (aws-sam-cli's own aws-sam-translator): print a template (template.yaml, or the
nested connect/template.yaml) as CloudFormation will see it after the Serverless transform. No AWS call:
managed policies are left as ARNs."""

import json
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class _NoManagedPolicies:
    def load(self) -> dict:
        return {}


with open(sys.argv[1]) as handle:
    template = yaml_parse(handle.read())
# What `sam package` does first: local code and definition paths become S3 locations.
for section in [
    template.get("Globals", {}).get("Function", {}),
    *[r.get("Properties", {}) for r in template["Resources"].values()],
]:
    for key in ("CodeUri", "DefinitionUri"):
        if isinstance(section.get(key), str) and not section[key].startswith("s3://"):
            section[key] = f"s3://packaged/{section[key]}"
    # A nested application's local template is uploaded too, and named by its URL.
    if isinstance(section.get("Location"), str) and not section["Location"].startswith("https://"):
        section["Location"] = f"https://s3.amazonaws.com/packaged/{section['Location']}"
print(json.dumps(transform(template, {}, _NoManagedPolicies())))
