"""Run cfn-lint with failoverd's rules, and prove the rules can fail.

    python deploy/lint/check.py --templates DIR [--fixtures DIR] [--rules DIR]

Run by deploy/lint.sh with deploy/.tools/venv's Python (cfn-lint pinned in
deploy/requirements.txt). Three parts, all must pass:

1. Every template in --templates (the rendered deploy/cloudformation) is
   clean: no cfn-lint match at any level, built-in or failoverd's own.
2. Every fixture in --fixtures (a template broken on purpose, first lines
   say `# expect: E9xxx`) gives exactly the expected rule ids: the rule
   fires, and nothing else in the fixture is wrong.
3. Mutants: each real template with one thing broken (encryption removed,
   a wildcard added, deletion protection off, the region rule dropped,
   IMDSv1 allowed, a load balancer checking /active)
   gives the rule that guards it, and none of failoverd's other rules. This shows the rules look at the
   templates we ship, not only at fixtures written for them.
"""

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile

from cfnlint.decode import decode


def _statement(tpl, role, sid):
    for pol in tpl["Resources"][role]["Properties"]["Policies"]:
        for st in pol["PolicyDocument"]["Statement"]:
            if st.get("Sid") == sid:
                return st
    raise KeyError(f"{role} has no statement {sid}")


def _del(path):
    def mutate(tpl):
        obj = tpl
        for key in path[:-1]:
            obj = obj[key]
        del obj[path[-1]]
    return mutate


def _set(path, value):
    def mutate(tpl):
        obj = tpl
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return mutate


def _add_action(role, sid, action):
    def mutate(tpl):
        st = _statement(tpl, role, sid)
        st["Action"] = list(st["Action"]) + [action]
    return mutate


def _set_resource(role, sid, resource):
    def mutate(tpl):
        _statement(tpl, role, sid)["Resource"] = resource
    return mutate


# (name, template file, mutation, the rule that must catch it)
MUTANTS = [
    ("batch bucket without encryption", "region.yaml",
     _del(["Resources", "BatchBucket", "Properties", "BucketEncryption"]), "E9101"),
    ("control table SSE off", "tables.yaml",
     _set(["Resources", "ControlTable", "Properties", "SSESpecification", "SSEEnabled"], False), "E9101"),
    ("alarm topic without KMS", "billing.yaml",
     _del(["Resources", "AlarmTopic", "Properties", "KmsMasterKeyId"]), "E9101"),
    ("daemon gets dynamodb:*", "iam.yaml",
     _add_action("DaemonRole", "ControlTable", "dynamodb:*"), "E9102"),
    ("daemon control-table statement on *", "iam.yaml",
     _set_resource("DaemonRole", "ControlTable", "*"), "E9102"),
    ("daemon on every table", "iam.yaml",
     _set_resource("DaemonRole", "RoutingTable",
                   {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${Region1}:${AWS::AccountId}:table/*"}), "E9102"),
    ("daemon inverts health checks", "iam.yaml",
     _add_action("DaemonRole", "ReadHealthChecks", "route53:UpdateHealthCheck"), "E9102"),
    ("daemon deletes any endpoint config (a write on the readiness wildcard)", "iam.yaml",
     _add_action("DaemonRole", "StandbyReadinessConfigs", "sagemaker:DeleteEndpointConfig"), "E9102"),
    ("daemon describes every endpoint (the readiness wildcard on another type)", "iam.yaml",
     _set_resource("DaemonRole", "StandbyReadinessModels",
                   {"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${Region1}:${AWS::AccountId}:endpoint/*"}), "E9102"),
    ("daemon gives copies to every inference component", "iam.yaml",
     _set(["Resources", "DaemonInferenceComponents", "Properties", "PolicyDocument", "Statement", 0, "Resource"],
          {"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${Region1}:${AWS::AccountId}:inference-component/*"}), "E9102"),
    ("daemon gets a managed policy", "iam.yaml",
     _set(["Resources", "DaemonRole", "Properties", "ManagedPolicyArns"],
          [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonDynamoDBFullAccess"}]), "E9102"),
    ("control table replica unprotected", "tables.yaml",
     _set(["Resources", "ControlTable", "Properties", "Replicas", 1, "DeletionProtectionEnabled"], False), "E9103"),
    ("routing table deletable by the stack", "tables.yaml",
     _set(["Resources", "RoutingTable", "DeletionPolicy"], "Delete"), "E9103"),
    ("billing template without its region rule", "billing.yaml",
     _del(["Rules", "BillingMetricsLiveInUsEast1"]), "E9104"),
    ("state machine deployed in every region", "region.yaml",
     _del(["Resources", "StateMachine", "Condition"]), "E9105"),
    ("workflow role outside the workflow's condition", "region.yaml",
     _del(["Resources", "StateMachineRole", "Condition"]), "E9105"),
    ("batch bucket left out with the workflow", "region.yaml",
     _set(["Resources", "BatchBucket", "Condition"], "HasWorkflow"), "E9105"),
    ("billing template pinned to eu-west-1", "billing.yaml",
     _set(["Rules", "BillingMetricsLiveInUsEast1", "Assertions", 0, "Assert"],
          {"Fn::Equals": [{"Ref": "AWS::Region"}, "eu-west-1"]}), "E9104"),
    ("daemon hosts' root volume unencrypted", "hosts.yaml",
     _set(["Resources", "LaunchTemplate", "Properties", "LaunchTemplateData", "BlockDeviceMappings", 0,
           "Ebs", "Encrypted"], False), "E9101"),
    ("daemon hosts allow IMDSv1", "hosts.yaml",
     _set(["Resources", "LaunchTemplate", "Properties", "LaunchTemplateData", "MetadataOptions",
           "HttpTokens"], "optional"), "E9106"),
    ("load balancer health-checks /active", "hosts.yaml",
     _set(["Resources", "RouterTargetGroup", "Properties", "HealthCheckPath"], "/active"), "E9106"),
]


def lint(cfn_lint, rules, files):
    """{file: sorted rule ids} for every file (one cfn-lint run for all)."""
    out = subprocess.run(
        [cfn_lint, "--format", "json", "--append-rules", rules, "--", *files],
        capture_output=True, text=True, check=False,
    )
    if out.returncode not in (0, 2, 4, 6, 8, 10, 12, 14):
        sys.exit(f"cfn-lint failed to run (exit {out.returncode}):\n{out.stderr}")
    found = {f: [] for f in files}
    for m in json.loads(out.stdout or "[]"):
        found.setdefault(m["Filename"], []).append(
            (m["Rule"]["Id"], m["Message"], m["Location"]["Start"]["LineNumber"])
        )
    return found


def expected_ids(path):
    with open(path, encoding="utf-8") as f:
        head = f.read(2000)
    m = re.search(r"^# expect: (.+)$", head, re.M)
    if not m:
        sys.exit(f"{path}: fixture without a '# expect: E9xxx' line")
    return sorted(x.strip() for x in m.group(1).split(","))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates", required=True)
    ap.add_argument("--fixtures", default=os.path.join(here, "fixtures"))
    ap.add_argument("--rules", default=os.path.join(here, "rules"))
    ap.add_argument("--cfn-lint", default=os.path.join(os.path.dirname(sys.executable), "cfn-lint"))
    args = ap.parse_args()

    templates = sorted(
        os.path.join(args.templates, f) for f in os.listdir(args.templates) if f.endswith(".yaml")
    )
    fixtures = sorted(
        os.path.join(args.fixtures, f) for f in os.listdir(args.fixtures) if f.endswith(".yaml")
    )
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        mutants = {}
        for i, (name, file, mutate, want) in enumerate(MUTANTS):
            tpl, errs = decode(os.path.join(args.templates, file))
            if errs:
                sys.exit(f"{file}: cannot parse: {errs}")
            tpl = copy.deepcopy(tpl)
            mutate(tpl)
            path = os.path.join(tmp, f"mutant-{i:02d}-{file.replace('.yaml', '')}.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(tpl, f, indent=1)
            mutants[path] = (name, file, want)

        found = lint(args.cfn_lint, args.rules, templates + fixtures + list(mutants))

        for t in templates:
            if found[t]:
                for rid, msg, line in found[t]:
                    failures.append(f"{t}:{line}: {rid} {msg}")
            else:
                print(f"ok   {os.path.basename(t)}: clean")
        for fx in fixtures:
            want = expected_ids(fx)
            got = sorted({rid for rid, _, _ in found[fx]})
            if got == want:
                print(f"ok   fixture {os.path.basename(fx)}: fails with {', '.join(got)} as it must")
            else:
                detail = "; ".join(f"{rid} line {line}: {msg}" for rid, msg, line in found[fx]) or "no match at all"
                failures.append(f"fixture {fx}: expected exactly {want}, got {got} ({detail})")
        for path, (name, file, want) in mutants.items():
            got = sorted({rid for rid, _, _ in found[path]})
            # The mutation may leave a built-in warning behind (a parameter no
            # longer used); among failoverd's own rules only `want` may fire.
            ours = [rid for rid in got if rid.startswith("E91")]
            if ours == [want]:
                print(f"ok   mutant {file}: {name}: caught by {want}")
            else:
                detail = "; ".join(f"{rid}: {msg}" for rid, msg, _ in found[path]) or "no match at all"
                failures.append(f"mutant {file} ({name}): expected {want} and no other E91xx, got {got} ({detail})")

    if failures:
        print("\npolicy-as-code check FAILED:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        sys.exit(1)
    print(f"policy-as-code: {len(templates)} templates clean, {len(fixtures)} fixtures and "
          f"{len(MUTANTS)} mutants caught")


if __name__ == "__main__":
    main()
