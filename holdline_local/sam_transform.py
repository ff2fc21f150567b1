"""Print a SAM template (template.yaml, or a nested one such as connect/template.yaml) as CloudFormation will
see it after the Serverless transform.

Run by .venv-sam's Python (aws-sam-cli's own aws-sam-translator, which pins a pydantic the functions'
package cannot share), never imported: ``python sam_transform.py TEMPLATE``. Offline: managed policies stay
ARNs, and local code and definition paths become the S3 locations ``sam package`` would upload them to
(``s3://packaged/<path>``), so a reader can map them back to the repository.

Transforms run in the order the template lists them: ``AWS::LanguageExtensions`` (Fn::ForEach, expanded by
:mod:`language_extensions`, this script's sibling) before ``AWS::Serverless-2016-10-31``.
"""

import json
import sys

from language_extensions import expand  # this directory is on sys.path: the script's own
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class _NoManagedPolicies:
    def load(self) -> dict:
        return {}


def main(path: str) -> None:
    with open(path) as handle:
        template = expand(yaml_parse(handle.read()))
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


if __name__ == "__main__":
    main(sys.argv[1])
