#!/usr/bin/env python3
"""turnstile's own checks of its SAM templates, for what cfn-lint does not catch.

Usage: check.py TEMPLATE [TEMPLATE ...]   (exit 1 and one line per problem on failure)

Checks:
- every function runs on provided.al2023, arm64, built by cargo-lambda from a binary the
  workspace defines;
- SQS event sources: BatchSize 1..10 and ReportBatchItemFailures; the queue's visibility
  timeout is at least six times the function's timeout (Lambda's advice for SQS sources);
- schedule expressions are well-formed rate(...) or cron(...) expressions;
- no IAM `Resource: "*"` unless the line says why (`# justified: ...`);
- the DynamoDB table has the indexes and attributes the store code queries;
- own hooks only (docs/design.md "Own hooks only"): both functions get TURNSTILE_LAUNCH_HOOKS
  and TURNSTILE_TERMINATE_HOOKS, the launch rule filters on detail.LifecycleHookName with the
  same hooks, and in a stack that nests turnstile every launch hook carrying a plan is owned;
- fast redelivery (docs/design.md "Fast redelivery"): a function with an SQS event source may
  call sqs:ChangeMessageVisibility on that queue and on nothing else, and a function without
  one may not call it at all.
"""

import json
import re
import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
CRON = re.compile(r"^cron\((\S+ ){5}\S+\)$")


def binaries():
    names = set()
    for cargo in ROOT.glob("functions/*/Cargo.toml"):
        names.update(re.findall(r'^name = "([^"]+)"', cargo.read_text(), re.M))
    return names


def store_constants():
    src = (ROOT / "shared/aws/src/store/dynamo.rs").read_text()
    consts = dict(re.findall(r'const (\w+): &str = "([^"]+)";', src))
    return consts


def rate_ok(expr):
    m = RATE.match(expr)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return n >= 1 and (unit.endswith("s") == (n != 1))
    return bool(CRON.match(expr))


def check(path):
    problems = []
    template, matches = decode(str(path))
    if template is None:
        return [f"{path}: cannot parse: {matches}"]
    resources = template.get("Resources", {})
    glob_fn = template.get("Globals", {}).get("Function", {})
    bins = binaries()

    def fn_prop(props, name):
        return props.get(name, glob_fn.get(name))

    queues = {k: v.get("Properties", {}) for k, v in resources.items() if isinstance(v, dict) and v.get("Type") == "AWS::SQS::Queue"}
    for name, res in resources.items():
        if not isinstance(res, dict):
            continue
        if res.get("Type") == "AWS::Serverless::Function":
            props = res.get("Properties", {})
            if fn_prop(props, "Runtime") != "provided.al2023":
                problems.append(f"{path}: {name}: Runtime must be provided.al2023, is {fn_prop(props, 'Runtime')!r}")
            if fn_prop(props, "Architectures") != ["arm64"]:
                problems.append(f"{path}: {name}: Architectures must be [arm64], is {fn_prop(props, 'Architectures')!r}")
            meta = res.get("Metadata", {})
            if meta.get("BuildMethod") != "rust-cargolambda":
                problems.append(f"{path}: {name}: Metadata.BuildMethod must be rust-cargolambda")
            binary = meta.get("BuildProperties", {}).get("Binary")
            if binary not in bins:
                problems.append(f"{path}: {name}: BuildProperties.Binary {binary!r} is not a binary of functions/ ({sorted(bins)})")
            timeout = fn_prop(props, "Timeout") or 3
            for ev_name, ev in (props.get("Events") or {}).items():
                kind, ep = ev.get("Type"), ev.get("Properties", {})
                if kind == "SQS":
                    size = ep.get("BatchSize", 10)
                    if not (isinstance(size, int) and 1 <= size <= 10):
                        problems.append(f"{path}: {name}.{ev_name}: BatchSize must be 1..10, is {size!r}")
                    if "ReportBatchItemFailures" not in (ep.get("FunctionResponseTypes") or []):
                        problems.append(f"{path}: {name}.{ev_name}: FunctionResponseTypes must include ReportBatchItemFailures")
                    q = ep.get("Queue")
                    qname = q.get("Fn::GetAtt", [None])[0] if isinstance(q, dict) else None
                    vis = queues.get(qname, {}).get("VisibilityTimeout", 30)
                    if isinstance(vis, int) and isinstance(timeout, int) and vis < 6 * timeout:
                        problems.append(f"{path}: {name}.{ev_name}: queue {qname} VisibilityTimeout {vis} < 6 x function Timeout {timeout}")
                if kind == "Schedule":
                    expr = ep.get("Schedule")
                    if not (isinstance(expr, str) and rate_ok(expr)):
                        problems.append(f"{path}: {name}.{ev_name}: malformed schedule expression {expr!r}")
        if res.get("Type") == "AWS::Events::Rule":
            expr = res.get("Properties", {}).get("ScheduleExpression")
            if expr is not None and not (isinstance(expr, str) and rate_ok(expr)):
                problems.append(f"{path}: {name}: malformed ScheduleExpression {expr!r}")
        if res.get("Type") == "AWS::CloudWatch::Dashboard":
            body = res.get("Properties", {}).get("DashboardBody")
            text = body.get("Fn::Sub") if isinstance(body, dict) else body
            text = text[0] if isinstance(text, list) else text
            try:
                widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", text or "")).get("widgets", [])
                if not widgets:
                    problems.append(f"{path}: {name}: the dashboard has no widgets")
            except (TypeError, ValueError) as e:
                problems.append(f"{path}: {name}: DashboardBody is not JSON once substituted: {e}")
        if res.get("Type") == "AWS::CloudWatch::Alarm":
            desc = res.get("Properties", {}).get("AlarmDescription", "")
            if not (isinstance(desc, str) and len(desc) > 60):
                problems.append(f"{path}: {name}: an alarm says what happened, why it matters and what to run (AlarmDescription)")
        if res.get("Type") == "AWS::DynamoDB::Table" and path.parent.name == "infra":
            consts = store_constants()
            props = res.get("Properties", {})
            idx = {g["IndexName"]: [k["AttributeName"] for k in g["KeySchema"]] for g in props.get("GlobalSecondaryIndexes", [])}
            want = {
                consts["INFLIGHT_INDEX"]: [consts["INFLIGHT"], consts["PK"]],
                consts["DUE_INDEX"]: [consts["SHARD"], consts["WAKE"]],
                consts["OVERFLOW_INDEX"]: [consts["OVERFLOW"], consts["OVERFLOW_SINCE"]],
                consts["READY_INDEX"]: [consts["READY_SHARD"], consts["PK"]],
            }
            if idx != want:
                problems.append(f"{path}: {name}: indexes {idx} differ from what the store queries {want}")
            ttl = props.get("TimeToLiveSpecification", {}).get("AttributeName")
            if ttl != consts["TTL"]:
                problems.append(f"{path}: {name}: TTL attribute {ttl!r} is not the store's {consts['TTL']!r}")

    problems += check_owned_hooks(path, template, resources, glob_fn)
    problems += check_visibility_grants(path, resources)

    for n, line in enumerate(path.read_text().splitlines(), 1):
        if re.search(r"Resource:\s*[\"']\*[\"']", line) and "# justified:" not in line:
            problems.append(f"{path}:{n}: Resource \"*\" without a `# justified:` comment")
    return problems


HOOK_VARS = ("TURNSTILE_LAUNCH_HOOKS", "TURNSTILE_TERMINATE_HOOKS")


def refs(value):
    """Every parameter or resource name a (possibly nested) intrinsic refers to."""
    out = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::Sub" and isinstance(v, str):
                out.update(re.findall(r"\$\{([A-Za-z0-9]+)\}", v))
            else:
                out |= refs(v)
    elif isinstance(value, list):
        for v in value:
            out |= refs(v)
    return out


def check_owned_hooks(path, template, resources, glob_fn):
    problems = []
    functions = {k: v for k, v in resources.items() if isinstance(v, dict) and v.get("Type") == "AWS::Serverless::Function"}
    if functions:
        glob_env = glob_fn.get("Environment", {}).get("Variables", {})
        for name, res in functions.items():
            env = {**glob_env, **res.get("Properties", {}).get("Environment", {}).get("Variables", {})}
            for var in HOOK_VARS:
                if var not in env:
                    problems.append(f"{path}: {name}: environment lacks {var} (the hooks turnstile owns)")
            launch_env = refs(env.get(HOOK_VARS[0]))
        launch_rules = [
            (k, v.get("Properties", {}).get("EventPattern", {}))
            for k, v in resources.items()
            if isinstance(v, dict)
            and v.get("Type") == "AWS::Events::Rule"
            and "EC2 Instance-launch Lifecycle Action" in (v.get("Properties", {}).get("EventPattern", {}).get("detail-type") or [])
        ]
        if not launch_rules:
            problems.append(f"{path}: no EventBridge rule forwards launch lifecycle actions")
        for rule, pattern in launch_rules:
            hooks = pattern.get("detail", {}).get("LifecycleHookName")
            if hooks is None:
                problems.append(f"{path}: {rule}: launch lifecycle rule does not filter on detail.LifecycleHookName (other tools' hooks would reach turnstile)")
            elif refs(hooks) != launch_env:
                problems.append(f"{path}: {rule}: LifecycleHookName filters on {sorted(refs(hooks))}, but TURNSTILE_LAUNCH_HOOKS is built from {sorted(launch_env)}")
    # A stack that nests turnstile: every launch hook its managed groups carry is one turnstile owns.
    for name, res in resources.items():
        if not (isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Application"):
            continue
        params = res.get("Properties", {}).get("Parameters", {})
        groups = refs(params.get("ManagedAutoScalingGroupNames"))
        owned = params.get("LaunchHookName")
        location = res.get("Properties", {}).get("Location")
        if owned is None and isinstance(location, str):
            nested, _ = decode(str(path.parent / location))
            owned = ((nested or {}).get("Parameters", {}).get("LaunchHookName") or {}).get("Default")
        prefix = params.get("OwnedHookPrefix")
        for g in groups:
            specs = resources.get(g, {}).get("Properties", {}).get("LifecycleHookSpecificationList", [])
            for spec in specs:
                # Only a hook that carries a plan is meant for turnstile; others are other tools'.
                if spec.get("LifecycleTransition") != "autoscaling:EC2_INSTANCE_LAUNCHING" or "NotificationMetadata" not in spec:
                    continue
                hook = spec.get("LifecycleHookName")
                if hook != owned and not (isinstance(prefix, str) and prefix and isinstance(hook, str) and hook.startswith(prefix)):
                    problems.append(f"{path}: {g}: launch hook {hook!r} carries a plan but is not the LaunchHookName {owned!r} (or OwnedHookPrefix) given to {name}: turnstile would leave it alone")
    return problems


VISIBILITY = "sqs:ChangeMessageVisibility"


def as_list(value):
    return value if isinstance(value, list) else [value]


def statements_of(name, props, resources):
    """Every IAM statement a SAM function's role gets: inline statements in Policies, managed
    policies it references, and AWS::IAM::Policy resources attached to its role."""
    out = []
    for p in props.get("Policies") or []:
        if isinstance(p, dict) and "Statement" in p:
            out += as_list(p["Statement"])
        elif isinstance(p, dict) and isinstance(p.get("Ref"), str):
            doc = resources.get(p["Ref"], {}).get("Properties", {}).get("PolicyDocument", {})
            out += as_list(doc.get("Statement", []))
    role = f"{name}Role"
    for res in resources.values():
        if isinstance(res, dict) and res.get("Type") == "AWS::IAM::Policy":
            if {"Ref": role} in as_list(res.get("Properties", {}).get("Roles", [])):
                out += as_list(res["Properties"].get("PolicyDocument", {}).get("Statement", []))
    return [s for s in out if isinstance(s, dict)]


def check_visibility_grants(path, resources):
    problems = []
    for name, res in resources.items():
        if not (isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Function"):
            continue
        props = res.get("Properties", {})
        queues = [
            ev.get("Properties", {}).get("Queue")
            for ev in (props.get("Events") or {}).values()
            if isinstance(ev, dict) and ev.get("Type") == "SQS"
        ]
        grants = [
            s
            for s in statements_of(name, props, resources)
            if s.get("Effect") == "Allow"
            and any(a in (VISIBILITY, "sqs:*", "*") for a in as_list(s.get("Action")))
        ]
        if not queues:
            for g in grants:
                problems.append(f"{path}: {name}: has no SQS event source but may call {VISIBILITY} ({g.get('Sid', 'unnamed statement')})")
            continue
        if not grants:
            problems.append(f"{path}: {name}: may not call {VISIBILITY} on its queue (failed records would wait for the visibility timeout)")
        for g in grants:
            for r in as_list(g.get("Resource")):
                if r not in queues:
                    problems.append(f"{path}: {name}: {VISIBILITY} on {r!r}, not only on its own queue {queues}")
    return problems


def main(paths):
    problems = [p for path in paths for p in check(Path(path).resolve())]
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"infra/check.py: {len(paths)} template(s) pass turnstile's checks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
