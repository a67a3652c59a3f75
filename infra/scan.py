#!/usr/bin/env python3
"""cfn-guard with the AWS Control Tower proactive rules, and every scanner skip accounted for.

Usage: scan.py --guard PACKAGE_DIR --readme README.md [--source TEMPLATE ...] DATA [DATA ...]

- Runs PACKAGE_DIR's cfn-guard binary (npm `@cdklabs/cdk-validator-cfnguard`, which ships it)
  with every rule in PACKAGE_DIR/rules/control-tower/cfn-guard over each DATA template
  (CloudFormation, after the SAM transform). cfn-guard has no suppression of its own: a finding
  is accepted only where the resource's Metadata says so, with a reason,
      Metadata: { guard: { SuppressedRules: [{ rule: <rule name>, reason: <why> }] } }
  and a suppression no finding needs any more fails too, so none outlives its cause.
- Every skip in the --source templates (checkov's `Metadata.checkov.skip` and the guard
  suppressions above) must carry a reason and have a row in the README's table of skipped
  checks naming the check and the resource. A CDK-synthesized resource is named by its logical
  id or by its construct path below the stack (`aws:cdk:path` without the stack and a final
  `Resource`): the whole path (`Fleet/ASG`) or its last part (`QueueFunction` for
  `Turnstile/QueueFunction`, the SAM template's name for the same resource).

Exit 1 with one line per problem.
"""

import argparse
import json
import platform
import re
import subprocess
import sys
from pathlib import Path


def guard_binary(package):
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[platform.machine().lower()]
    system = {"Linux": "ubuntu", "Darwin": "macos"}[platform.system()]
    return package / "bin" / system / arch / "cfn-guard"


def resources_named(value, out):
    """Resource names in a cfn-guard result (every path /Resources/<name>/...)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "path" and isinstance(v, str):
                m = re.match(r"/Resources/([^/]+)", v)
                if m:
                    out.add(m.group(1))
            else:
                resources_named(v, out)
    elif isinstance(value, list):
        for v in value:
            resources_named(v, out)
    return out


def suppressions(resource):
    meta = resource.get("Metadata", {}) if isinstance(resource, dict) else {}
    rules = ((meta.get("guard") or {}).get("SuppressedRules")) or []
    return {r.get("rule"): r.get("reason") for r in rules if isinstance(r, dict)}


def run_guard(package, data):
    binary = guard_binary(package)
    rules = package / "rules" / "control-tower" / "cfn-guard"
    cmd = [str(binary), "validate", "--rules", str(rules), "--output-format", "json", "--show-summary", "none", "--structured"]
    for d in data:
        cmd += ["--data", str(d)]
    # Exit 19 means a rule failed; anything but 0 and 19 is guard's own failure.
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode not in (0, 19):
        raise SystemExit(f"cfn-guard failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout[:2000]}")
    return json.loads(proc.stdout)


def check_guard(package, data):
    problems, lines = [], []
    results = run_guard(package, data)
    for result in results:
        path = Path(result["name"])
        template = json.loads(path.read_text())
        resources = template.get("Resources", {})
        found = set()
        for nc in result.get("not_compliant", []):
            rule = nc["Rule"]["name"]
            ct = sorted(set(re.findall(r"\[(CT\.[A-Z0-9]+\.PR\.\d+)\]", json.dumps(nc))))
            for name in sorted(resources_named(nc, set())) or ["(template)"]:
                found.add((rule, name))
                reason = suppressions(resources.get(name, {})).get(rule)
                if not reason:
                    problems.append(f"{path.name}: {name}: cfn-guard {rule} {' '.join(ct)} fails (fix it, or suppress it in the resource's Metadata.guard with a reason)")
        suppressed = 0
        for name, res in resources.items():
            for rule in suppressions(res):
                if (rule, name) in found:
                    suppressed += 1
                else:
                    problems.append(f"{path.name}: {name}: suppresses cfn-guard {rule}, which no longer fails there: remove the suppression")
        lines.append(
            f"cfn-guard {path.name}: {len(result.get('compliant', []))} rules pass, "
            f"{len(result.get('not_applicable', []))} not applicable, {len(result.get('not_compliant', []))} fail "
            f"with {len(found)} findings, {suppressed} of them suppressed with a reason"
        )
    return problems, lines


def resource_names(name, res):
    """The names a README row may use for a resource: its logical id, and for a CDK-synthesized
    one its construct path below the stack and that path's last part."""
    names = [name]
    cdk_path = ((res.get("Metadata") or {}).get("aws:cdk:path") if isinstance(res, dict) else None) or ""
    parts = cdk_path.split("/")[1:]
    if parts and parts[-1] == "Resource":
        parts = parts[:-1]
    if parts:
        names += ["/".join(parts), parts[-1]]
    return names


def source_skips(path):
    from cfnlint.decode import decode

    template, errors = decode(str(path))
    if template is None:
        raise SystemExit(f"{path}: cannot parse: {errors}")
    out = []
    for name, res in (template.get("Resources") or {}).items():
        meta = res.get("Metadata", {}) if isinstance(res, dict) else {}
        names = resource_names(name, res)
        for skip in ((meta.get("checkov") or {}).get("skip")) or []:
            out.append((path, names, "checkov", skip.get("id"), skip.get("comment")))
        for rule, reason in suppressions(res).items():
            out.append((path, names, "cfn-guard", rule, reason))
    return out


def check_readme(readme, sources):
    problems = []
    text = Path(readme).read_text()
    rows = [line for line in text.splitlines() if line.startswith("|")]
    skips = [s for src in sources for s in source_skips(Path(src))]
    for path, names, tool, check, reason in skips:
        name = names[0]
        if not check or not isinstance(reason, str) or len(reason.strip()) < 40:
            problems.append(f"{path}: {name}: {tool} skip {check!r} needs a reason (a sentence a reviewer can judge)")
        if not any(check in row and re.search(rf"\b{re.escape(n)}\b", row) for row in rows for n in names):
            problems.append(f"{readme}: no row of the skipped-checks table names {tool} {check} and {' or '.join(dict.fromkeys(names))} ({path})")
    return problems, len(skips)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guard", type=Path, required=True)
    ap.add_argument("--readme", required=True)
    ap.add_argument("--source", action="append", default=[])
    ap.add_argument("data", nargs="+", type=Path)
    args = ap.parse_args(argv)
    problems, lines = check_guard(args.guard, args.data)
    readme_problems, n = check_readme(args.readme, args.source)
    problems += readme_problems
    for line in lines:
        print(line)
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"infra/scan.py: no unaccepted cfn-guard finding; {n} skips in {len(args.source)} template(s), each with its reason and README row")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
