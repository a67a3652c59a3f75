#!/usr/bin/env python3
"""IAM against the code: the template allows exactly the AWS calls turnstile makes.

Usage: iam.py TRANSFORMED_TEMPLATE   (infra/transform.py's output for infra/template.yaml)

1. The calls, from the code. Every production source file (shared/aws/src, cli/src,
   functions/*/src) that calls an operation of an AWS SDK client lists its operations in
   `pub const ..._CALLS: &[&str]` constants ("service:Operation"). An SDK call is a method
   named after one of the SDK's operations (read from the locked SDK crate's own
   `src/operation/*.rs`) called with no arguments, as every fluent builder is:
   `.create_deployment()`. A call missing from the file's lists, or a listed operation the
   file no longer calls, fails the check.
2. Who makes them. PRINCIPALS says which lists each function's role and each operator policy
   serves (below, with why); a list no principal uses fails unless NOT_DEPLOYED names it. A
   list only some functions make is tied to the entry point that reaches it (REACHED_BY): a
   function has it exactly when its main.rs calls that entry point.
3. What they need. An operation becomes the IAM actions AWS checks for it: the same name
   unless IMPLIED says otherwise (DynamoDB transactions, SQS batches, what CreateDeployment
   needs beyond itself), each with the AWS page that says so; each action on the narrowest
   resource the service supports (RESOURCES, FILE_RESOURCES), and with the conditions
   CONDITIONS requires. Lambda's own needs on the functions' roles (logs, the SQS poller, the
   timer's dead-letter queue) are SERVICE_NEEDS.
4. The template. Every statement of the principal (inline, managed policies it references,
   AWS::IAM::Policy resources attached to its role) is expanded to (action, resource) pairs.
   Every need must be allowed on exactly its resource, and every pair allowed must be needed.
   A resource knowingly broader than the narrowest is in BROADER, printed on every run.

Exit 1 with one line per problem.
"""

import glob
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["shared/aws/src/**/*.rs", "cli/src/**/*.rs", "functions/*/src/**/*.rs"]
# The values infra/transform.py expands the Fn::ForEach loops with.
GROUPS = ["shared-fleet"]
APPLICATIONS = ["web", "api", "worker"]

ARN = "arn:${AWS::Partition}"
REGION_ACCOUNT = "${AWS::Region}:${AWS::AccountId}"
CODEDEPLOY = f"{ARN}:codedeploy:{REGION_ACCOUNT}"

DYNAMO_TXN = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html"
SQS_BATCH = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-batch-api-actions.html"
CODEDEPLOY_PERMS = "https://docs.aws.amazon.com/codedeploy/latest/userguide/auth-and-access-control-permissions-reference.html"
LAMBDA_ROLE = "https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html"
LAMBDA_SQS = "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html"
LAMBDA_DLQ = "https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html"
SAM_DLQ = "https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/sam-property-function-deadletterqueue.html"

# Lists of calls (file, constant) that no deployed principal makes.
NOT_DEPLOYED = {
    ("shared/aws/src/store/dynamo.rs", "SETUP_AWS_CALLS"): "the template creates the table; create_table serves tests and the local cloud",
}

RUNNER = [
    ("shared/aws/src/store/dynamo.rs", "READ_AWS_CALLS"),
    ("shared/aws/src/store/dynamo.rs", "RUNNER_AWS_CALLS"),
    ("shared/aws/src/autoscaling.rs", "AWS_CALLS"),
    ("shared/aws/src/codedeploy.rs", "AWS_CALLS"),
    ("shared/aws/src/tags.rs", "AWS_CALLS"),
    ("shared/aws/src/sqs.rs", "AWS_CALLS"),
]
OPERATOR_READ = [
    # status and show read records (DynamoStore::load, in_flight); doctor describes.
    ("shared/aws/src/store/dynamo.rs", "READ_AWS_CALLS"),
    ("cli/src/cmd/doctor.rs", "AWS_CALLS"),
    # doctor reads the in-service instances' gate tags with the functions' Tags::read.
    ("shared/aws/src/tags.rs", "READINESS_AWS_CALLS"),
]

# Who makes which calls: each function's role and each operator managed policy.
PRINCIPALS = {
    # handler::handle_batch: the runner, and fast redelivery on its own queue.
    "QueueFunction": {"role": "QueueFunctionRole", "main": "functions/queue/src/main.rs", "lists": RUNNER + [("shared/aws/src/sqs.rs", "VISIBILITY_AWS_CALLS")]},
    # handler::sweep: the runner, the adoption of lost launches (adopt.rs) and the readiness
    # pass's read of the readiness tags (readiness.rs).
    "TimerFunction": {
        "role": "TimerFunctionRole",
        "main": "functions/timer/src/main.rs",
        "lists": RUNNER + [("shared/aws/src/autoscaling.rs", "ADOPTION_AWS_CALLS"), ("shared/aws/src/tags.rs", "READINESS_AWS_CALLS")],
    },
    # turnstile status | show | doctor | plan check (plan check makes no AWS call).
    "OperatorReadOnlyPolicy": {"policy": "OperatorReadOnlyPolicy", "lists": OPERATOR_READ},
    # Every command: the reads, the actions (act.rs, pause.rs) and dlq.
    "OperatorPolicy": {
        "policy": "OperatorPolicy",
        "lists": OPERATOR_READ + [("cli/src/cmd/act.rs", "AWS_CALLS"), ("cli/src/cmd/pause.rs", "AWS_CALLS"), ("cli/src/cmd/dlq.rs", "AWS_CALLS")],
    },
}

# Lists only some functions make, and what in a function's main.rs reaches them: a function has
# the list exactly when its main calls that entry point, so rewiring a main fails the check.
REACHED_BY = {
    ("shared/aws/src/sqs.rs", "VISIBILITY_AWS_CALLS"): "bootstrap::redelivery",
    ("shared/aws/src/autoscaling.rs", "ADOPTION_AWS_CALLS"): "handler::sweep",
    ("shared/aws/src/tags.rs", "READINESS_AWS_CALLS"): "handler::sweep",
}

# An operation whose IAM actions are not its own name: (actions, why, source). TransactWriteItems
# is filled in from the kinds of item the store's transactions write (see transaction_actions).
IMPLIED = {
    "sqs:ChangeMessageVisibilityBatch": (["sqs:ChangeMessageVisibility"], "a batch action is allowed by its single action's permission", SQS_BATCH),
    "codedeploy:CreateDeployment": (
        ["codedeploy:CreateDeployment", "codedeploy:GetDeploymentConfig", "codedeploy:GetApplicationRevision"],
        "CreateDeployment also needs GetDeploymentConfig on the deployment configuration and GetApplicationRevision (or RegisterApplicationRevision) on the revision's application",
        CODEDEPLOY_PERMS,
    ),
}
TRANSACTION_ITEMS = {"put": "dynamodb:PutItem", "delete": "dynamodb:DeleteItem", "update": "dynamodb:UpdateItem", "condition_check": "dynamodb:ConditionCheckItem"}

STAR = "*"
TABLE = "${Table.Arn}"
RESOURCES = {
    "dynamodb:BatchGetItem": [TABLE],
    "dynamodb:GetItem": [TABLE],
    "dynamodb:PutItem": [TABLE],
    "dynamodb:DeleteItem": [TABLE],
    "dynamodb:UpdateItem": [TABLE],
    "dynamodb:ConditionCheckItem": [TABLE],
    # Every query of the store is on an index (query_keys); infra/check.py checks that the
    # table's indexes are exactly the store's, so index/* names no index the code leaves alone.
    "dynamodb:Query": [TABLE + "/index/*"],
    "sqs:SendMessage": ["${Queue.Arn}"],
    "sqs:ChangeMessageVisibility": ["${Queue.Arn}"],
    "ec2:CreateTags": [f"{ARN}:ec2:{REGION_ACCOUNT}:instance/*"],
    "ec2:DeleteTags": [f"{ARN}:ec2:{REGION_ACCOUNT}:instance/*"],
    # Auto Scaling's and EC2's Describe* actions support no resource-level permissions.
    "autoscaling:DescribeLifecycleHooks": [STAR],
    "autoscaling:DescribeAutoScalingGroups": [STAR],
    "autoscaling:DescribeWarmPool": [STAR],
    "ec2:DescribeTags": [STAR],
    "autoscaling:CompleteLifecycleAction": [f"{ARN}:autoscaling:{REGION_ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/{{group}}"],
    "autoscaling:RecordLifecycleActionHeartbeat": [f"{ARN}:autoscaling:{REGION_ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/{{group}}"],
    # A plan names any deployment group of a managed application, and any configuration.
    **{f"codedeploy:{op}": [f"{CODEDEPLOY}:deploymentgroup:{{application}}/*"] for op in [
        "CreateDeployment", "GetDeploymentGroup", "ListDeployments", "GetDeployment", "StopDeployment",
        "ListDeploymentTargets", "BatchGetDeploymentTargets"]},
    "codedeploy:GetApplicationRevision": [f"{CODEDEPLOY}:application:{{application}}"],
    "codedeploy:GetDeploymentConfig": [f"{CODEDEPLOY}:deploymentconfig:*"],
}
# Where a file's call targets another resource than RESOURCES says.
FILE_RESOURCES = {
    "cli/src/cmd/dlq.rs": {
        "sqs:ReceiveMessage": ["${DeadLetterQueue.Arn}"],
        "sqs:ChangeMessageVisibility": ["${DeadLetterQueue.Arn}"],
        "sqs:DeleteMessage": ["${DeadLetterQueue.Arn}"],
        "sqs:SendMessage": ["${Queue.Arn}"],
    },
    # Broader than the narrowest (see BROADER).
    "cli/src/cmd/doctor.rs": {"codedeploy:GetDeploymentGroup": [f"{CODEDEPLOY}:deploymentgroup:*"]},
}
# Resources knowingly broader than the service allows, printed on every run: (file, action): why.
BROADER = {
    ("cli/src/cmd/doctor.rs", "codedeploy:GetDeploymentGroup"): (
        "every deployment group of the account and region, not only the managed applications' "
        "(deploymentgroup:<application>/*, as the functions have): each operator policy is one "
        "managed policy, and the template builds per-application statements only as separate "
        "resources (Fn::ForEach), which operators would have to attach one by one. A read."
    ),
}
# Condition keys a statement allowing the action must constrain.
CONDITIONS = {
    "ec2:CreateTags": {"aws:TagKeys", "aws:ResourceTag/aws:autoscaling:groupName"},
    "ec2:DeleteTags": {"aws:TagKeys", "aws:ResourceTag/aws:autoscaling:groupName"},
}
BASIC = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
SQS_POLLER = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
# What Lambda itself does with a function's role: (AWS managed policies SAM attaches, extra
# (action, resource) pairs SAM adds, why, source).
SERVICE_NEEDS = {
    "QueueFunction": ([BASIC, SQS_POLLER], [], "logs; the SQS event source mapping receives and deletes with the function's role", f"{LAMBDA_ROLE} {LAMBDA_SQS}"),
    "TimerFunction": ([BASIC], [("sqs:SendMessage", "${TimerDeadLetterQueue.Arn}")], "logs; Lambda sends a failed sweep's event to the dead-letter queue with the function's role (SAM adds sqs:SendMessage)", f"{LAMBDA_ROLE} {LAMBDA_DLQ} {SAM_DLQ}"),
}


def sdk_operations():
    """{service: {snake_name: OperationName}} from the SDK crates Cargo.lock pins."""
    lock = (ROOT / "Cargo.lock").read_text()
    versions = dict(re.findall(r'name = "aws-sdk-([a-z0-9]+)"\nversion = "([^"]+)"', lock))
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    ops, problems = {}, []
    for svc, ver in versions.items():
        dirs = glob.glob(str(home / f"registry/src/*/aws-sdk-{svc}-{ver}/src/operation"))
        if not dirs:
            problems.append(f"aws-sdk-{svc} {ver} is not in {home}/registry/src: run `cargo fetch --locked` first")
            continue
        names = {}
        for f in Path(dirs[0]).glob("*.rs"):
            m = re.search(r'Metadata::new\(\s*"(\w+)",', f.read_text())
            if m:
                names[f.stem] = m.group(1)
        ops[svc] = names
    return ops, problems


def production_code(path):
    """The file without its unit tests (`#[cfg(test)] mod ...` to the end) and comments."""
    src = re.split(r"\n#\[cfg\(test\)\]\s*\nmod ", path.read_text())[0]
    return re.sub(r"//[^\n]*", "", src)


def declared_lists(src):
    out = {}
    for name, body in re.findall(r"pub const (\w*AWS_CALLS): &\[&str\] = &\[(.*?)\];", src, re.S):
        out[name] = re.findall(r'"([^"]+)"', body)
    return out


def transaction_actions(src):
    kinds = set(re.findall(r"TransactWriteItem::builder\(\)\s*\.(\w+)\(", src))
    return [TRANSACTION_ITEMS[k] for k in sorted(kinds) if k in TRANSACTION_ITEMS]


def code_calls(ops):
    """{file: {const: [ops]}}, and the problems found checking the lists against the calls."""
    problems, lists, txn = [], {}, {}
    files = sorted({p for pattern in SOURCES for p in ROOT.glob(pattern)})
    for path in files:
        rel = str(path.relative_to(ROOT))
        src = production_code(path)
        declared = declared_lists(path.read_text())
        services = set(re.findall(r"aws_sdk_([a-z0-9]+)", src))
        # Every SDK operation called here, as the set of services it could belong to.
        called = {}
        for svc in services:
            for snake, op in ops.get(svc, {}).items():
                if re.search(r"\." + snake + r"\s*\(\s*\)", src):
                    called.setdefault(snake, set()).add(f"{svc}:{op}")
        listed = [op for ops_ in declared.values() for op in ops_]
        for snake, candidates in sorted(called.items()):
            hits = [c for c in candidates if c in listed]
            if not hits:
                problems.append(f"{rel}: calls {' or '.join(sorted(candidates))} (.{snake}()) but no *_AWS_CALLS list of the file names it")
        for op in listed:
            if listed.count(op) > 1:
                problems.append(f"{rel}: {op} is in more than one list of the file")
            if not any(op in c for c in called.values()):
                problems.append(f"{rel}: lists {op}, which the file does not call")
        if declared:
            lists[rel] = declared
        if "TransactWriteItem::builder" in src:
            txn[rel] = transaction_actions(src)
    return lists, txn, problems


def expand(patterns):
    out = []
    for p in patterns:
        if "{group}" in p:
            out += [p.replace("{group}", g) for g in GROUPS]
        elif "{application}" in p:
            out += [p.replace("{application}", a) for a in APPLICATIONS]
        else:
            out.append(p)
    return out


def needs_of(principal, lists, txn):
    """{(action, resource): why} the principal's calls need."""
    needs = {}
    for rel, const in PRINCIPALS[principal]["lists"]:
        for op in lists.get(rel, {}).get(const, []):
            if op == "dynamodb:TransactWriteItems":
                actions, why = txn.get(rel, []), f"TransactWriteItems writes {', '.join(txn.get(rel, []))} ({DYNAMO_TXN})"
            elif op in IMPLIED:
                actions, why, src = IMPLIED[op]
                why = f"{op}: {why} ({src})"
            else:
                actions, why = [op], op
            for action in actions:
                patterns = FILE_RESOURCES.get(rel, {}).get(action) or RESOURCES.get(action)
                if patterns is None:
                    needs[(action, None)] = f"{rel} {const}"
                    continue
                for r in expand(patterns):
                    needs.setdefault((action, r), f"{rel} {const}: {why}")
    if principal in SERVICE_NEEDS:
        _, extra, why, src = SERVICE_NEEDS[principal]
        for pair in extra:
            needs[pair] = f"Lambda: {why} ({src})"
    return needs


def text(value):
    """A resource as one string: ${X.Arn} for Fn::GetAtt, the Fn::Sub text, or the string."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "Fn::GetAtt" in value:
            a = value["Fn::GetAtt"]
            return "${" + (".".join(a) if isinstance(a, list) else a) + "}"
        if "Fn::Sub" in value:
            s = value["Fn::Sub"]
            return s if isinstance(s, str) else s[0]
        if "Ref" in value:
            return "${" + value["Ref"] + "}"
    return json.dumps(value, sort_keys=True)


def as_list(v):
    return v if isinstance(v, list) else [v]


def statements(principal, resources):
    spec = PRINCIPALS[principal]
    out, managed = [], []
    if "policy" in spec:
        doc = resources[spec["policy"]]["Properties"]["PolicyDocument"]
        return [(spec["policy"], s) for s in as_list(doc["Statement"])], managed
    role = spec["role"]
    props = resources[role]["Properties"]
    for arn in props.get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and "Ref" in arn:
            doc = resources[arn["Ref"]]["Properties"]["PolicyDocument"]
            out += [(arn["Ref"], s) for s in as_list(doc["Statement"])]
        else:
            managed.append(text(arn))
    for p in props.get("Policies", []):
        out += [(f"{role}.{p['PolicyName']}", s) for s in as_list(p["PolicyDocument"]["Statement"])]
    for name, res in resources.items():
        if res.get("Type") == "AWS::IAM::Policy" and {"Ref": role} in as_list(res["Properties"].get("Roles", [])):
            out += [(name, s) for s in as_list(res["Properties"]["PolicyDocument"]["Statement"])]
    return out, managed


def check_principal(principal, resources, lists, txn):
    problems = []
    needs = needs_of(principal, lists, txn)
    stmts, managed = statements(principal, resources)
    granted = {}
    for where, s in stmts:
        if s.get("Effect") != "Allow":
            continue
        if "NotAction" in s or "NotResource" in s:
            problems.append(f"{principal}: {where}: NotAction / NotResource is not allowed")
            continue
        conds = {k for op in (s.get("Condition") or {}).values() for k in op}
        for a in as_list(s["Action"]):
            if "*" in a:
                problems.append(f"{principal}: {where}: wildcard action {a!r}")
            for r in as_list(s["Resource"]):
                granted[(a, text(r))] = (where, conds)
    for (action, resource), why in sorted(needs.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        if resource is None:
            problems.append(f"{principal}: {action} ({why}) has no resource in RESOURCES: say which resource it acts on")
            continue
        if (action, resource) not in granted:
            others = sorted(r for (a, r) in granted if a == action)
            if others:
                problems.append(f"{principal}: needs {action} on {resource} ({why}), the template allows it on {others}")
            else:
                problems.append(f"{principal}: needs {action} on {resource} ({why}), the template does not allow it")
            continue
        where, conds = granted[(action, resource)]
        missing = CONDITIONS.get(action, set()) - conds
        if missing:
            problems.append(f"{principal}: {where}: {action} must be conditioned on {sorted(missing)}")
    for (action, resource), (where, _) in sorted(granted.items()):
        if (action, resource) not in needs:
            problems.append(f"{principal}: {where} allows {action} on {resource}, which no call needs")
    want = SERVICE_NEEDS.get(principal, ([], [], "", ""))[0]
    if sorted(managed) != sorted(want):
        problems.append(f"{principal}: AWS managed policies {sorted(managed)}, expected {sorted(want)} (Lambda's own needs)")
    return problems, len(needs)


def main(argv):
    if len(argv) != 1:
        print(__doc__)
        return 2
    resources = json.loads(Path(argv[0]).read_text())["Resources"]
    ops, problems = sdk_operations()
    lists, txn, found = code_calls(ops)
    problems += found
    used = {pair for p in PRINCIPALS.values() for pair in p["lists"]}
    for rel, consts in lists.items():
        for const in consts:
            if (rel, const) not in used and (rel, const) not in NOT_DEPLOYED:
                problems.append(f"{rel}: {const} is used by no principal in infra/iam.py PRINCIPALS (and not NOT_DEPLOYED)")
    for rel, const in sorted(used | set(NOT_DEPLOYED)):
        if const not in lists.get(rel, {}):
            problems.append(f"infra/iam.py names {rel} {const}, which does not exist")
    for principal, spec in PRINCIPALS.items():
        if "main" not in spec:
            continue
        main_src = production_code(ROOT / spec["main"])
        for pair, entry in REACHED_BY.items():
            if (entry in main_src) != (pair in spec["lists"]):
                has = "calls" if entry in main_src else "does not call"
                problems.append(f"{principal}: {spec['main']} {has} {entry}, so it {'needs' if entry in main_src else 'must not have'} {pair[0]} {pair[1]} in infra/iam.py PRINCIPALS")
    counts = []
    for principal in PRINCIPALS:
        p, n = check_principal(principal, resources, lists, txn)
        problems += p
        counts.append(f"{principal} {n}")
    for p in problems:
        print(p)
    if problems:
        return 1
    calls = sum(len(v) for c in lists.values() for v in c.values())
    for (rel, action), why in BROADER.items():
        print(f"infra/iam.py: accepted broader than the narrowest: {action} for {rel}: {why}")
    print(f"infra/iam.py: {calls} listed calls in {len(lists)} files match the code; needs allowed exactly ({', '.join(counts)} action-resource pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
