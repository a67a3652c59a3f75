#!/usr/bin/env python3
"""The SAM templates as CloudFormation would deploy them, offline, for the scanners.

Usage: transform.py OUT_DIR TEMPLATE [TEMPLATE ...]

For each template, writes OUT_DIR/<dir>-<name>.json: Fn::ForEach expanded (SAM CLI's own
AWS::LanguageExtensions processor, with the example parameter values below, as `make
sam-build` uses them), then the AWS::Serverless-2016-10-31 transform (samtranslator, the
library `sam validate` and `sam build` run). The managed-policy map is never needed: every
policy the templates name is a reference or an ARN, so the loader refuses to be asked.
Resource Metadata is passed through, so in-line scanner skips on a SAM function reach the
AWS::Lambda::Function it becomes.
"""

import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("SAM_CLI_TELEMETRY", "0")
# samtranslator needs a region for its pseudo-parameter defaults; nothing is called in it.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from cfnlint.decode import decode  # noqa: E402
from samcli.lib.cfn_language_extensions.sam_integration import (  # noqa: E402
    check_using_language_extension,
    process_template_for_sam_cli,
)
from samtranslator.translator.transform import transform  # noqa: E402

# samtranslator's metrics go to a local no-op publisher; it warns when nothing publishes them.
logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)

# What the Fn::ForEach loops iterate over: one Auto Scaling group and three applications, the
# values `make sam-build` deploys with. The scanners then see one of each per-group resource.
PARAMETERS = {
    "ManagedAutoScalingGroupNames": ["shared-fleet"],
    "ManagedApplications": ["web", "api", "worker"],
}
LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
SCANNER_KEYS = ("checkov", "guard")


class NoManagedPolicies:
    def load(self):
        raise RuntimeError("a template names a managed policy by name; name it by ARN instead")


def as_dict(value):
    """cfn-lint's decoded template (str_node, dict_node) as plain JSON values."""
    return json.loads(json.dumps(value))


def transformed(path):
    template, problems = decode(str(path))
    if template is None:
        raise SystemExit(f"{path}: cannot parse: {problems}")
    template = as_dict(template)
    if check_using_language_extension(template):
        params = {k: ",".join(v) for k, v in PARAMETERS.items()}
        template = process_template_for_sam_cli(template, parameter_values=params)
        t = template.get("Transform")
        rest = [x for x in (t if isinstance(t, list) else [t]) if x != LANGUAGE_EXTENSIONS]
        template["Transform"] = rest[0] if len(rest) == 1 else rest
    packaged(template)
    sam = {k: v.get("Metadata") for k, v in template.get("Resources", {}).items() if v.get("Metadata")}
    out = transform(template, {}, NoManagedPolicies(), passthrough_metadata=True)
    # samtranslator copies a SAM resource's Metadata to every resource it generates (role,
    # event source mapping, rule...); the scanner skips are about the resource of the same
    # name (the function), so the copies lose them.
    for name, res in out.get("Resources", {}).items():
        meta = res.get("Metadata")
        if name not in sam and meta and meta in sam.values():
            res["Metadata"] = {k: v for k, v in meta.items() if k not in SCANNER_KEYS}
            if not res["Metadata"]:
                del res["Metadata"]
    return out


def packaged(template):
    """Local code and nested templates as `sam package` leaves them: uploaded, named by URL."""
    for res in template.get("Resources", {}).values():
        props = res.get("Properties", {}) if isinstance(res, dict) else {}
        if res.get("Type") == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            props["CodeUri"] = "s3://packaged-by-sam/function.zip"
        if res.get("Type") == "AWS::Serverless::Application" and isinstance(props.get("Location"), str):
            props["Location"] = "https://s3.amazonaws.com/packaged-by-sam/template.yaml"


def main(out_dir, paths):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        path = Path(p)
        name = f"{path.parent.name}-{path.stem}.json"
        (out / name).write_text(json.dumps(transformed(path), indent=1, sort_keys=True))
        print(f"{p} -> {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
