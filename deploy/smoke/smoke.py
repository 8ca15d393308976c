"""The failoverd smoke kit's driver (deploy/smoke/run is its entry point).

One run: check who we are, warn about the bill, deploy every stack under a
prefix, make a role from the daemon's policy and run three daemons here with
it, drill (inversion through the drill role, failover, failback, a batch job
and boto3 calls through a router across them), measure, tear everything down,
read CloudTrail for the daemons' AccessDenied, print and write the report.

The same code runs against AWS (`--profile`) and against the lab (`--lab`:
moto and the lab's model server on 127.0.0.1). Only these differ in the lab,
each because moto lacks what AWS has (deploy/smoke/README.md lists them):
- every client gets moto's endpoint_url, and the daemons get the same through
  FAILOVERD__ENDPOINTS__* (as chaos/lab.sh does);
- the tables: moto has no AWS::DynamoDB::GlobalTable, so the kit creates the
  table tables.yaml describes (its own keys, index and billing, read from the
  template) with CreateTable, one replica (moto does not replicate);
- the state machine: moto's CloudFormation puts it where moto's Step
  Functions interpreter does not look, so the definition the stack produced
  is read back and created again with the interpreter on (as
  chaos/lab/provision.rs does);
- the SageMaker endpoints: in AWS they are yours (--serverless-endpoint,
  --batch-endpoint); in the lab the kit creates them in moto, and the lab's
  model server answers their invocations;
- CloudTrail: moto records no events; the lookup runs and the report says
  "not available in the lab".
"""

import argparse
import ast
import datetime
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import botocore.exceptions
from botocore.config import Config as BotoConfig

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LAB_ACCOUNT = "123456789012"  # moto's account
EXIT_FAILED = 1
EXIT_REFUSED = 2
STRONG_SETS = [
    {"us-east-1", "us-east-2", "us-west-2"},
    {"eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1"},
    {"ap-northeast-1", "ap-northeast-2", "ap-northeast-3"},
]


def say(msg):
    print(f"smoke: {msg}", flush=True)


class Refused(Exception):
    """The kit will not run (exit 2); nothing has been created."""


class StepFailed(Exception):
    pass


class Interrupted(BaseException):
    """A signal arrived; the run stops and tears down."""


# --------------------------------------------------------------------------
# The report


class Report:
    def __init__(self, args):
        self.started = time.time()
        self.steps = []
        self.figures = {}
        self.notes = []
        self.meta = {
            "mode": "lab" if args.lab else "aws",
            "account_id": args.account_id,
            "regions": args.regions,
            "prefix": args.prefix,
        }

    def add(self, name, status, detail="", seconds=None):
        """status: pass, fail or n/a (not available here; not a failure)."""
        self.steps.append(
            {"step": name, "status": status, "detail": detail, "seconds": seconds}
        )
        mark = {"pass": "PASS", "fail": "FAIL", "n/a": "N/A "}[status]
        say(f"[{mark}] {name}{': ' + detail if detail else ''}")

    def failed(self):
        return any(s["status"] == "fail" for s in self.steps) or not self.steps

    def text(self):
        lines = [
            "",
            "failoverd smoke report",
            f"  mode {self.meta['mode']}, account {self.meta['account_id']}, "
            f"regions {','.join(self.meta['regions'])}, prefix {self.meta['prefix']}",
            "",
        ]
        for s in self.steps:
            secs = f" ({s['seconds']:.1f} s)" if s["seconds"] is not None else ""
            mark = {"pass": "PASS", "fail": "FAIL", "n/a": "N/A "}[s["status"]]
            lines.append(f"  {mark}  {s['step']}{secs}")
            if s["detail"]:
                lines.append(f"        {s['detail']}")
        if self.figures:
            lines.append("")
            lines.append("  figures (ms)")
            for k, v in self.figures.items():
                lines.append(f"    {k:<55} {v}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        lines.append("")
        lines.append(f"  RESULT: {'FAILED' if self.failed() else 'PASSED'}")
        return "\n".join(lines)

    def as_json(self):
        return {
            **self.meta,
            "started": self.started,
            "seconds": round(time.time() - self.started, 1),
            "passed": not self.failed(),
            "steps": self.steps,
            "figures": self.figures,
            "notes": self.notes,
        }


class Step:
    """`with Step(report, name) as s:` records pass (or fail with the
    exception, which goes on up); s.detail sets the line's detail."""

    def __init__(self, report, name):
        self.report, self.name, self.detail = report, name, ""

    def __enter__(self):
        self.t0 = time.time()
        say(f"... {self.name}")
        return self

    def __exit__(self, et, ev, tb):
        secs = time.time() - self.t0
        if et is None:
            self.report.add(self.name, "pass", self.detail, secs)
        elif issubclass(et, Interrupted):
            self.report.add(self.name, "fail", "interrupted by a signal", secs)
        else:
            self.report.add(self.name, "fail", f"{et.__name__}: {ev}", secs)
        return False


# --------------------------------------------------------------------------
# Where AWS is: the account, or the lab


class Aws:
    """boto3 clients for the runner (the deploying identity) and for any
    assumed role, pointed at AWS or at the lab's moto."""

    def __init__(self, args, moto_url=None):
        self.lab = args.lab
        self.moto = moto_url
        self.model_url = None
        if self.lab:
            self.session = boto3.Session(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name=args.regions[0],
            )
        else:
            self.session = boto3.Session(
                profile_name=args.profile, region_name=args.regions[0]
            )

    def client(self, service, region, creds=None):
        kw = {
            "region_name": region,
            "config": BotoConfig(retries={"mode": "standard", "max_attempts": 5}),
        }
        if self.moto:
            kw["endpoint_url"] = self.moto
        if creds:
            return boto3.Session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            ).client(service, **kw)
        return self.session.client(service, **kw)

    def daemon_env(self, creds, region):
        """Environment for a daemon or the CLI with `creds`: nothing of the
        runner's own profile leaks in."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"],
            "AWS_REGION": region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "FAILOVERD_LOG": "info,aws_config=warn,aws_smithy_runtime=warn",
            "USER": "failoverd-smoke",
        }
        if self.moto:
            for svc in ("DYNAMODB", "S3", "ROUTE53", "SFN", "SAGEMAKER", "CLOUDWATCH",
                        "APPLICATION_AUTOSCALING", "SERVICE_QUOTAS", "IAM"):
                env[f"FAILOVERD__ENDPOINTS__{svc}"] = self.moto
            env["FAILOVERD__ENDPOINTS__SAGEMAKER_RUNTIME"] = self.model_url
            env["AWS_ENDPOINT_URL_STS"] = self.moto
        return env


# --------------------------------------------------------------------------
# The lab's servers (--lab without --lab-moto-url): the lab's own programs


class LabServers:
    def __init__(self, args, work):
        self.args, self.work, self.procs = args, work, []

    def _start(self, name, cmd, port_file):
        log = open(self.work / f"{name}.log", "ab")
        p = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                             preexec_fn=die_with_parent)
        self.procs.append((name, p))
        deadline = time.time() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if p.poll() is not None:
                raise StepFailed(f"{name} exited; see {self.work / (name + '.log')}")
            if time.time() > deadline:
                raise StepFailed(f"{name} did not report its port within 60 s")
            time.sleep(0.1)
        return f"http://127.0.0.1:{port_file.read_text().strip()}"

    def start(self):
        venv = Path(os.environ.get("FAILOVERD_LAB_VENV", ROOT / "chaos/.venv"))
        moto = self._start(
            "moto",
            [str(venv / "bin/python"), str(ROOT / "chaos/lab/moto_server.py"), "--quiet",
             "--port-file", str(self.work / "moto.port")],
            self.work / "moto.port",
        )
        model = self._start(
            "model",
            [self.args.lab_tools, "model-server", "--port-file", str(self.work / "model.port"),
             "--s3-endpoint", moto],
            self.work / "model.port",
        )
        return moto, model

    def stop(self):
        for name, p in reversed(self.procs):
            stop_process(p)


def die_with_parent():
    """preexec_fn: SIGTERM this child if the kit dies, even by SIGKILL
    (Linux prctl PR_SET_PDEATHSIG; elsewhere nothing)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def stop_process(p, grace=15):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def moto_interpreter(moto, on):
    """moto's Step Functions interpreter on or off (/moto-api/config)."""
    body = json.dumps({"stepfunctions": {"execute_state_machine": on}}).encode()
    req = urllib.request.Request(
        f"{moto}/moto-api/config", data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=10).read()


# --------------------------------------------------------------------------
# CloudFormation


def render_templates(work):
    out = work / "cloudformation"
    subprocess.run(
        ["bash", str(ROOT / "deploy/render.sh"), "--out", str(out)], check=True,
        capture_output=True, text=True,
    )
    return out


def deploy_stack(aws, ledger, region, name, template, params, capability, wait):
    cfn = aws.client("cloudformation", region)
    ledger.add("stack", region=region, name=name)
    cfn.create_stack(
        StackName=name,
        TemplateBody=template,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=[capability],
        OnFailure="DELETE",
        Tags=[{"Key": "failoverd:smoke", "Value": ledger.prefix}],
    )
    deadline = time.time() + wait
    while True:
        s = cfn.describe_stacks(StackName=name)["Stacks"][0]
        st = s["StackStatus"]
        if st in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            return {o["OutputKey"]: o["OutputValue"] for o in s.get("Outputs", [])}
        if st.endswith("_FAILED") or "ROLLBACK" in st or st.startswith("DELETE"):
            events = cfn.describe_stack_events(StackName=name)["StackEvents"]
            why = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                   for e in events if e["ResourceStatus"].endswith("FAILED")][:3]
            raise StepFailed(f"stack {name} in {region} ended {st}: {why or s.get('StackStatusReason')}")
        if time.time() > deadline:
            raise StepFailed(f"stack {name} in {region} still {st} after {wait} s")
        time.sleep(2 if not aws.lab else 0.2)


# --------------------------------------------------------------------------
# What was created, torn down in reverse; written to disk after each entry so
# that `run --teardown LEDGER` can finish a run that was killed with SIGKILL.


class Ledger:
    def __init__(self, path, prefix):
        self.path, self.prefix, self.items = path, prefix, []

    def add(self, kind, **kw):
        self.items.append({"kind": kind, **kw})
        self.path.write_text(json.dumps({"prefix": self.prefix, "items": self.items}, indent=1))


def not_found(e):
    code = e.response.get("Error", {}).get("Code", "") if hasattr(e, "response") else ""
    return code in (
        "ResourceNotFoundException", "NoSuchEntity", "NoSuchBucket", "ValidationError",
        "ValidationException", "StateMachineDoesNotExist", "404",
    ) or "does not exist" in str(e) or "not found" in str(e).lower()


def teardown(aws, ledger, wait):
    """Delete everything in the ledger, newest first; the names of what is
    still there afterwards."""
    left = []
    for item in reversed(ledger.items):
        kind, region = item["kind"], item.get("region")
        try:
            if kind == "bucket":
                # Retained by the region stack (DeletionPolicy): emptied
                # here, deleted after the stacks (below).
                empty_bucket(aws.client("s3", region), item["name"])
            elif kind == "stack":
                cfn = aws.client("cloudformation", region)
                cfn.delete_stack(StackName=item["name"])
                deadline = time.time() + wait
                while time.time() < deadline:
                    try:
                        st = cfn.describe_stacks(StackName=item["name"])["Stacks"][0]["StackStatus"]
                    except botocore.exceptions.ClientError as e:
                        if not_found(e):
                            break
                        raise
                    if st == "DELETE_COMPLETE":
                        break
                    if st == "DELETE_FAILED":
                        raise StepFailed(f"stack {item['name']} in {region}: DELETE_FAILED")
                    time.sleep(2 if not aws.lab else 0.2)
                else:
                    raise StepFailed(f"stack {item['name']} in {region} not deleted within {wait} s")
            elif kind == "role":
                iam = aws.client("iam", "us-east-1")
                for p in iam.list_role_policies(RoleName=item["name"])["PolicyNames"]:
                    iam.delete_role_policy(RoleName=item["name"], PolicyName=p)
                iam.delete_role(RoleName=item["name"])
            elif kind == "table":
                delete_table(aws, item["name"], item["regions"], wait)
            elif kind == "endpoint":
                sm = aws.client("sagemaker", region)
                sm.delete_endpoint(EndpointName=item["name"])
                sm.delete_endpoint_config(EndpointConfigName=item["name"])
                sm.delete_model(ModelName=item["name"])
            elif kind == "state_machine":
                aws.client("stepfunctions", region).delete_state_machine(stateMachineArn=item["arn"])
        except botocore.exceptions.ClientError as e:
            if not not_found(e):
                left.append(f"{kind} {item.get('name') or item.get('arn')} ({region}): {e}")
        except StepFailed as e:
            left.append(str(e))
    for item in ledger.items:
        if item["kind"] != "bucket":
            continue
        s3 = aws.client("s3", item["region"])
        try:
            empty_bucket(s3, item["name"])
            s3.delete_bucket(Bucket=item["name"])
        except botocore.exceptions.ClientError as e:
            if not not_found(e):
                left.append(f"bucket {item['name']}: {e}")
    return left


def empty_bucket(s3, bucket):
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        objs = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if objs:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objs, "Quiet": True})
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objs:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objs, "Quiet": True})


def delete_table(aws, name, regions, wait):
    """tables.yaml keeps its tables (DeletionPolicy: Retain, deletion
    protection on): turn the protection off in every replica, remove the
    other replicas, then delete the table in the first region."""
    first, rest = regions[0], regions[1:]
    for r in regions:
        try:
            aws.client("dynamodb", r).update_table(TableName=name, DeletionProtectionEnabled=False)
        except botocore.exceptions.ClientError as e:
            if not not_found(e):
                raise
        wait_table_active(aws.client("dynamodb", r), name, wait)
    ddb = aws.client("dynamodb", first)
    present = []
    try:
        desc = ddb.describe_table(TableName=name)["Table"]
        present = [x["RegionName"] for x in desc.get("Replicas", []) if x["RegionName"] in rest]
    except botocore.exceptions.ClientError as e:
        if not_found(e):
            return
        raise
    if present:
        ddb.update_table(TableName=name, ReplicaUpdates=[{"Delete": {"RegionName": r}} for r in present])
        wait_table_active(ddb, name, wait, replicas_gone=True)
    ddb.delete_table(TableName=name)


def wait_table_active(ddb, name, wait, replicas_gone=False):
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            t = ddb.describe_table(TableName=name)["Table"]
        except botocore.exceptions.ClientError as e:
            if not_found(e):
                return
            raise
        if t["TableStatus"] == "ACTIVE" and (not replicas_gone or len(t.get("Replicas", [])) <= 1):
            return
        time.sleep(5)
    raise StepFailed(f"table {name} not ACTIVE within {wait} s")


def inventory(aws, regions, prefix):
    """Everything in the account whose name starts with `prefix-`, in the
    services the kit creates in, whatever the ledger says: the check after
    teardown, and `run --leftovers`."""
    found, p = [], prefix + "-"
    for r in regions:
        cfn = aws.client("cloudformation", r)
        for page in cfn.get_paginator("list_stacks").paginate():
            found += [f"stack {x['StackName']} ({r}) {x['StackStatus']}" for x in page["StackSummaries"]
                      if x["StackName"].startswith(p) and x["StackStatus"] != "DELETE_COMPLETE"]
        for page in aws.client("dynamodb", r).get_paginator("list_tables").paginate():
            found += [f"table {t} ({r})" for t in page["TableNames"] if t.startswith(p)]
        for page in aws.client("stepfunctions", r).get_paginator("list_state_machines").paginate():
            found += [f"state machine {m['stateMachineArn']}" for m in page["stateMachines"]
                      if m["name"].startswith(p)]
        eps = aws.client("sagemaker", r).list_endpoints(NameContains=prefix, MaxResults=100)["Endpoints"]
        found += [f"endpoint {e['EndpointName']} ({r})" for e in eps if e["EndpointName"].startswith(p)]
    found += [f"bucket {b['Name']}" for b in aws.client("s3", regions[0]).list_buckets().get("Buckets", [])
              if b["Name"].startswith(p)]
    for page in aws.client("iam", "us-east-1").get_paginator("list_roles").paginate():
        found += [f"role {x['RoleName']}" for x in page["Roles"] if x["RoleName"].startswith(p)]
    return found


def leftovers(aws, ledger):
    """What of the ledger still exists (checked after teardown)."""
    left = []
    for item in ledger.items:
        kind, region, name = item["kind"], item.get("region"), item.get("name")
        try:
            if kind == "stack":
                st = aws.client("cloudformation", region).describe_stacks(StackName=name)["Stacks"][0]
                if st["StackStatus"] != "DELETE_COMPLETE":
                    left.append(f"stack {name} ({region}) {st['StackStatus']}")
            elif kind == "role":
                aws.client("iam", "us-east-1").get_role(RoleName=name)
                left.append(f"role {name}")
            elif kind == "table":
                for r in item["regions"]:
                    aws.client("dynamodb", r).describe_table(TableName=name)
                    left.append(f"table {name} ({r})")
            elif kind == "bucket":
                aws.client("s3", region).head_bucket(Bucket=name)
                left.append(f"bucket {name}")
            elif kind == "endpoint":
                aws.client("sagemaker", region).describe_endpoint(EndpointName=name)
                left.append(f"endpoint {name} ({region})")
        except botocore.exceptions.ClientError:
            pass  # gone
    return left


# --------------------------------------------------------------------------
# Deploy


def table_specs(template_path):
    """The tables of tables.yaml as CreateTable arguments (the lab's stand-in
    for AWS::DynamoDB::GlobalTable, which moto lacks), read from the
    template so that nothing about their keys is written twice."""
    import yaml  # the lab's virtualenv has it; AWS mode does not need it

    class CfnLoader(yaml.SafeLoader):
        pass

    def tag(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            return {suffix: loader.construct_scalar(node)}
        if isinstance(node, yaml.SequenceNode):
            return {suffix: loader.construct_sequence(node, deep=True)}
        return {suffix: loader.construct_mapping(node, deep=True)}

    CfnLoader.add_multi_constructor("!", tag)
    tpl = yaml.load(template_path.read_text(), Loader=CfnLoader)  # noqa: S506
    specs = {}
    for rid, res in tpl["Resources"].items():
        if res.get("Type") != "AWS::DynamoDB::GlobalTable":
            continue
        p = res["Properties"]
        spec = {
            "AttributeDefinitions": p["AttributeDefinitions"],
            "KeySchema": p["KeySchema"],
            "BillingMode": p.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if p.get("GlobalSecondaryIndexes"):
            spec["GlobalSecondaryIndexes"] = p["GlobalSecondaryIndexes"]
        specs[p["TableName"]["Ref"]] = spec  # the parameter that names it
    return specs


def deploy(args, aws, ledger, report, work, outputs):
    tpl = render_templates(work)
    R1, R2, R3 = args.regions
    p = args.prefix
    names = outputs["names"]
    wait = args.stack_wait

    with Step(report, f"tables ({'CreateTable from tables.yaml' if args.lab else 'stack ' + p + '-tables'})") as s:
        if args.lab:
            specs = table_specs(tpl / "tables.yaml")
            for param, table in (("ControlTableName", names["control"]), ("RoutingTableName", names["routing"])):
                ddb = aws.client("dynamodb", R1)
                ledger.add("table", name=table, regions=[R1])
                ddb.create_table(TableName=table, **specs[param])
                wait_table_active(ddb, table, wait)
            s.detail = f"{names['control']}, {names['routing']} in {R1} (moto has no GlobalTable)"
        else:
            # Retained by the stack (DeletionPolicy): the ledger deletes them.
            ledger.add("table", name=names["control"], regions=[R1, R2, R3])
            ledger.add("table", name=names["routing"], regions=[R1, R2, R3])
            deploy_stack(aws, ledger, R1, f"{p}-tables", (tpl / "tables.yaml").read_text(), {
                "ControlTableName": names["control"], "RoutingTableName": names["routing"],
                "Region1": R1, "Region2": R2, "ThirdRegion": R3,
            }, "CAPABILITY_IAM", wait)
            s.detail = f"{names['control']}, {names['routing']}: MRSC in {R1},{R2},{R3}"

    health_checks, machines = {}, []
    if args.lab:
        moto_interpreter(aws.moto, False)
    for r in args.regions:
        with Step(report, f"region stack {p}-region in {r}") as s:
            o = deploy_stack(aws, ledger, r, f"{p}-region", (tpl / "region.yaml").read_text(), {
                "ControlTable": names["control"],
                "ControlTableRegion": R1 if args.lab else "",
                "StateMachineName": names["state_machine"],
                "BatchBucketPrefix": names["bucket_prefix"],
                "HealthCheckFqdn": args.health_check_fqdn or f"inference.{r}.lab.invalid",
                "HealthCheckPath": args.health_check_path,
                "LogRetentionInDays": "1",
            }, "CAPABILITY_IAM", wait)
            ledger.add("bucket", region=r, name=o["BatchBucketName"])
            health_checks[r] = o["HealthCheckId"]
            outputs.setdefault("state_machines", {})[r] = o["StateMachineArn"]
            if args.lab:
                d = aws.client("stepfunctions", r).describe_state_machine(stateMachineArn=o["StateMachineArn"])
                machines.append((r, d["definition"], d["roleArn"]))
            s.detail = f"state machine {o['StateMachineArn']}, health check {o['HealthCheckId']}, bucket {o['BatchBucketName']}"
    outputs["health_checks"] = health_checks
    if args.lab:
        moto_interpreter(aws.moto, True)
        for r, definition, role in machines:
            sfn = aws.client("stepfunctions", r)
            arn = sfn.create_state_machine(name=names["state_machine"], definition=definition, roleArn=role)["stateMachineArn"]
            ledger.add("state_machine", region=r, arn=arn)

    with Step(report, "SageMaker endpoints") as s:
        if args.lab:
            for r in args.regions:
                for ep, async_ in ((names["serverless"], False), (names["batch"], True)):
                    create_lab_endpoint(aws.client("sagemaker", r), ledger, r, ep, async_,
                                        f"s3://{names['bucket_prefix']}-{r}/async-results")
            s.detail = f"{names['serverless']}, {names['batch']} created in moto in each region (the lab's model server answers)"
        else:
            for r in args.regions:
                for ep in filter(None, (names["serverless"], names["batch"])):
                    st = aws.client("sagemaker", r).describe_endpoint(EndpointName=ep)["EndpointStatus"]
                    if st != "InService":
                        raise StepFailed(f"endpoint {ep} in {r} is {st}, not InService")
            s.detail = f"yours, InService in every region: {names['serverless']}, {names['batch']}"

    with Step(report, f"IAM stack {p}-iam (daemon and drill roles)") as s:
        o = deploy_stack(aws, ledger, R1, f"{p}-iam", (tpl / "iam.yaml").read_text(), {
            "Region1": R1, "Region2": R2, "Region3": R3,
            "ControlTableName": names["control"], "RoutingTableName": names["routing"],
            "StateMachineName": names["state_machine"],
            "BatchBucketPrefix": names["bucket_prefix"],
            "HealthCheckId1": health_checks[R1], "HealthCheckId2": health_checks[R2],
            "HealthCheckId3": health_checks[R3],
            "ServerlessEndpointName": names["serverless"],
            "BatchEndpointName": names["batch"] or "",
            "RolePrefix": p,
        }, "CAPABILITY_NAMED_IAM", wait)
        outputs["daemon_role"] = o["DaemonRoleArn"]
        outputs["drill_role"] = o["DrillRoleArn"]
        s.detail = f"daemon {o['DaemonRoleArn']}, drill {o['DrillRoleArn']}"


def create_lab_endpoint(sm, ledger, region, name, async_, output):
    ledger.add("endpoint", region=region, name=name)
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": f"{LAB_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/failoverd-lab-model:latest"},
        ExecutionRoleArn=f"arn:aws:iam::{LAB_ACCOUNT}:role/failoverd-sagemaker",
    )
    variant = {"VariantName": "main", "ModelName": name}
    kw = {}
    if async_:
        variant.update(InitialInstanceCount=1, InstanceType="ml.m5.large")
        kw["AsyncInferenceConfig"] = {"OutputConfig": {"S3OutputPath": output}}
    else:
        variant["ServerlessConfig"] = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant], **kw)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)


# --------------------------------------------------------------------------
# The daemon's policy as a role the runner assumes


def smoke_daemon_role(args, aws, ledger, identity, outputs):
    """A role with exactly the daemon role's policies (copied from the role
    iam.yaml made), trusting this account, so that the daemons here run with
    what a host's instance profile grants. The daemon role itself trusts
    only ec2.amazonaws.com; it is left as deployed."""
    iam = aws.client("iam", "us-east-1")
    daemon_role = outputs["daemon_role"].rsplit("/", 1)[1]
    name = f"{args.prefix}-smoke-daemon"
    trust = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            # The partition of the runner's own ARN (aws, aws-cn, aws-us-gov).
            "Principal": {"AWS": f"arn:{identity['Arn'].split(':')[1]}:iam::{identity['Account']}:root"},
            "Action": "sts:AssumeRole",
        }],
    }
    ledger.add("role", name=name)
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                          MaxSessionDuration=3600,
                          Description="failoverd smoke kit: the daemon's policy, assumable by the runner",
                          Tags=[{"Key": "failoverd:smoke", "Value": args.prefix}])["Role"]["Arn"]
    copied = []
    for pname in iam.list_role_policies(RoleName=daemon_role)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=daemon_role, PolicyName=pname)["PolicyDocument"]
        if isinstance(doc, str):
            try:
                doc = json.loads(doc)
            except ValueError:
                # moto hands back a policy its CloudFormation made as
                # Python's repr of the dict, not JSON (AWS: URL-encoded JSON,
                # which boto3 decodes into a dict).
                doc = ast.literal_eval(doc)
        doc = json.dumps(doc)
        iam.put_role_policy(RoleName=name, PolicyName=pname, PolicyDocument=doc)
        copied.append(pname)
    attached = iam.list_attached_role_policies(RoleName=daemon_role)["AttachedPolicies"]
    if attached:
        raise StepFailed(f"{daemon_role} has managed policies the kit does not copy: {attached}")
    if not copied:
        raise StepFailed(f"{daemon_role} has no inline policy to copy")
    return arn, copied


def assume(aws, arn, session, wait):
    """AssumeRole, retried while IAM propagates a new role (seconds)."""
    sts = aws.client("sts", aws.session.region_name)
    deadline = time.time() + wait
    while True:
        try:
            return sts.assume_role(RoleArn=arn, RoleSessionName=session, DurationSeconds=3600)["Credentials"]
        except botocore.exceptions.ClientError as e:
            if e.response["Error"]["Code"] != "AccessDenied" or time.time() > deadline:
                raise
            time.sleep(5)


# --------------------------------------------------------------------------
# Configuration and daemons


def toml_list(xs):
    return "[" + ", ".join(f'"{x}"' for x in xs) + "]"


def write_config(args, work, names, outputs, account):
    """base.toml and one file per region. The lab runs the lab's timings;
    AWS runs the daemon's defaults but a shorter poll."""
    R1, _, _ = args.regions
    d = work / "regions"
    d.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Written by deploy/smoke/smoke.py for one smoke run.",
        "[tables]",
        f'control = "{names["control"]}"',
        f'routing = "{names["routing"]}"',
        'consistency = "strong"',
        f"replicas = {toml_list(args.regions)}",
    ]
    if args.lab:
        lines.append(f'control_region = "{R1}"  # moto does not replicate: one replica')
        lines += [
            "[timings]", 'poll_interval = "1s"', "failure_threshold = 2", "recovery_threshold = 2",
            'vote_freshness = "8s"', 'lease = "4s"', 'min_failover_interval = "30s"', 'shutdown_grace = "5s"',
            "[health]", "route53_calls_per_second = 6",
            'probe_connect_timeout = "500ms"', 'probe_response_timeout = "500ms"',
        ]
    else:
        lines += ["[timings]", 'poll_interval = "5s"', 'min_failover_interval = "60s"']
    lines += ["[policy]", "auto_failback = false", "wait_out_lease = true"]
    for i, r in enumerate(args.regions):
        sage = [f'serverless = "{names["serverless"]}"']
        if names["batch"]:
            sage.append(f'batch = "{names["batch"]}"')
        lines += [
            "[[regions]]",
            f'name = "{r}"',
            f"priority = {i + 1}",
            f'health_check_ids = ["{outputs["health_checks"][r]}"]',
            f'state_machine_arn = "{outputs["state_machines"][r]}"',
            "sagemaker = { " + ", ".join(sage) + " }",
        ]
    lines += [
        "[[models]]", f'name = "{args.model}"', 'traffic_class = "serverless_preferred"',
        "[[models]]", f'name = "{args.model}-bulk"', 'traffic_class = "standard"',
    ]
    if args.target_model:
        lines.insert(lines.index(f'name = "{args.model}"') + 1, f'target_model = "{args.target_model}"')
    lines += [
        "[router]",
        f'batch_bucket_prefix = "{names["bucket_prefix"]}"',
        f"default_batch_threshold = {BATCH_BYTES}",
        'default_deadline = "20s"',
    ]
    (d / "base.toml").write_text("\n".join(lines) + "\n")
    for r in args.regions:
        (d / f"{r}.toml").write_text(
            f'region = "{r}"\n[listen]\nrouter = "127.0.0.1:0"\nadmin = "127.0.0.1:0"\n'
            f'admin_token_file = "{work / "admin-token"}"\n'
        )
    (work / "admin-token").write_text(secrets.token_hex(16) + "\n")
    os.chmod(work / "admin-token", 0o600)
    return d


BATCH_BYTES = 65536


class Fleet:
    def __init__(self, args, work, env_for):
        self.args, self.work, self.env_for = args, work, env_for
        self.procs, self.admin, self.router = {}, {}, {}

    def start(self):
        for r in self.args.regions:
            bound = self.work / f"{r}.bound.json"
            bound.unlink(missing_ok=True)
            log = open(self.work / f"{r}.log", "ab")
            self.procs[r] = subprocess.Popen(
                [self.args.binary, "run", "--config", str(self.work / "regions" / f"{r}.toml"),
                 "--log-format", "json", "--bound-file", str(bound)],
                cwd=self.work, env=self.env_for(r), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log, preexec_fn=die_with_parent,
            )
        for r in self.args.regions:
            bound = self.work / f"{r}.bound.json"
            deadline = time.time() + 60
            while not (bound.exists() and bound.read_text().strip()):
                if self.procs[r].poll() is not None:
                    raise StepFailed(f"daemon {r} exited {self.procs[r].returncode}: {tail(self.work / (r + '.log'))}")
                if time.time() > deadline:
                    raise StepFailed(f"daemon {r} did not report its ports within 60 s")
                time.sleep(0.1)
            b = json.loads(bound.read_text())
            self.admin[r] = int(b["admin"].rsplit(":", 1)[1])
            self.router[r] = int(b["router"].rsplit(":", 1)[1])

    def cli(self, *argv, region=None):
        region = region or self.args.regions[1]
        return subprocess.run(
            [self.args.binary, *argv, "--config", str(self.work / "regions" / f"{region}.toml")],
            cwd=self.work, env=self.env_for(region), capture_output=True, text=True, timeout=120,
        )

    def status(self):
        out = self.cli("status", "--output", "json", "--log-format", "json")
        try:
            return json.loads(out.stdout)
        except json.JSONDecodeError:
            return None

    def stop(self):
        for r, p in self.procs.items():
            stop_process(p)


def tail(path, n=5):
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def http(method, url, body=None, headers=None, timeout=30):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def wait_for(what, timeout, poll, pred):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise StepFailed(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


# --------------------------------------------------------------------------
# The drill


class Invoker(threading.Thread):
    """boto3's sagemaker-runtime client pointed at a router with
    endpoint_url, as a user's code would be: one call every `every` s."""

    def __init__(self, port, model, every=0.25):
        super().__init__(daemon=True)
        self.client = boto3.client(
            "sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id="unused", aws_secret_access_key="unused",
            config=BotoConfig(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=30),
        )
        self.model, self.every = model, every
        self.ok, self.errors = 0, []
        self.halt = threading.Event()

    def once(self):
        try:
            r = self.client.invoke_endpoint(EndpointName=self.model, Body=b'{"smoke": true}',
                                            ContentType="application/json")
            r["Body"].read()
            self.ok += 1
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            self.errors.append(str(e)[:200])

    def run(self):
        while not self.halt.is_set():
            self.once()
            self.halt.wait(self.every)

    def finish(self):
        self.halt.set()
        self.join(60)


def drill(args, aws, fleet, report, outputs):
    t_scale = 1 if args.lab else 10
    R2 = args.regions[1]

    def status_where(pred):
        s = fleet.status()
        return s if s and pred(s) else None

    with Step(report, "daemons ready, a steady control record") as s:
        for r in args.regions:
            wait_for(f"{r} /readyz", 60 * t_scale, 0.5,
                     lambda r=r: http("GET", f"http://127.0.0.1:{fleet.admin[r]}/readyz", timeout=5)[0] == 200)
        st = wait_for("a steady control record", 60 * t_scale, 1,
                      lambda: status_where(lambda s: s.get("record") and s["record"]["phase"] == "steady"))
        active, epoch = st["record"]["active"], st["record"]["epoch"]
        s.detail = f"{active} active at epoch {epoch}"

    with Step(report, "boto3 through a router before the drill") as s:
        inv = Invoker(fleet.router[R2], args.model)
        for _ in range(5):
            inv.once()
        if inv.errors:
            raise StepFailed(f"{len(inv.errors)}/5 failed: {inv.errors[0]}")
        s.detail = f"5/5 InvokeEndpoint calls answered through {R2}'s router"

    job = None
    if outputs["names"]["batch"] and args.lab:
        # The lab's model server answers an async invocation at once; a rule
        # (its PUT /_lab/behaviour) makes the job take 8 s, so that it is
        # still running when the inversion comes and ends after the failover.
        code, _, body = http("PUT", f"{aws.model_url}/_lab/behaviour", body=json.dumps(
            {"region": "*", "endpoint": outputs["names"]["batch"], "latency": "8s"}).encode(),
            headers={"Content-Type": "application/json"})
        if code >= 300:
            raise StepFailed(f"the lab's model server refused the batch latency rule: {code} {body[:200]!r}")
    if not outputs["names"]["batch"]:
        report.add("batch job across the failover", "n/a",
                   "no --batch-endpoint: no asynchronous endpoint to run a job on")
    else:
        with Step(report, "batch job submitted before the inversion") as s:
            code, headers, body = http(
                "POST", f"http://127.0.0.1:{fleet.router[active]}/v1/models/{args.model}-bulk/invoke",
                body=b"b" * (BATCH_BYTES * 2), headers={"Content-Type": "application/octet-stream"})
            loc = {k.lower(): v for k, v in headers.items()}.get("location")
            if code != 202 or not loc:
                raise StepFailed(f"answered {code}, not 202 with a Location: {body[:200]!r}")
            job = loc
            s.detail = f"202 {loc} through {active}'s router"

    drill_creds = assume(aws, outputs["drill_role"], f"{args.prefix}-drill", 60 * t_scale)
    r53 = aws.client("route53", "us-east-1", drill_creds)
    hc = outputs["health_checks"][active]
    survivors = [r for r in args.regions if r != active]
    watcher = Invoker(fleet.router[survivors[0]], args.model)

    with Step(report, f"failover: invert {active}'s health check through the drill role") as s:
        watcher.start()
        t0 = time.time()
        r53.update_health_check(HealthCheckId=hc, Inverted=True)
        outputs["inverted"] = hc
        st = wait_for(f"the failover away from {active}", 120 * t_scale, 0.5, lambda: status_where(
            lambda s: s.get("record") and s["record"]["active"] != active
            and s["record"]["phase"] == "steady" and s["record"]["epoch"] == epoch + 1))
        report.figures["inversion → steady, as the kit saw it"] = int((time.time() - t0) * 1000)
        s.detail = f"{st['record']['active']} active at epoch {epoch + 1}"
    failover_report(fleet, report, epoch + 1, "failover", t0)

    if job:
        with Step(report, "the batch job completes across the failover") as s:
            new = st["record"]["active"]

            def done():
                code, _, body = http("GET", f"http://127.0.0.1:{fleet.router[new]}{job}")
                if code == 200:
                    return body
                if code not in (202, 503):
                    raise StepFailed(f"{job} answered {code}: {body[:200]!r}")
                return None
            pending = http("GET", f"http://127.0.0.1:{fleet.router[new]}{job}")[0] == 202
            body = wait_for(f"{job} to finish", 120 * t_scale, 1, done)
            s.detail = (f"submitted through {active}'s router, {'still running after the failover, ' if pending else ''}"
                        f"200 through {new}'s router ({len(body)} bytes)")

    with Step(report, f"failback to {active} (restore the check, failoverd failback)") as s:
        r53.update_health_check(HealthCheckId=hc, Inverted=False)
        outputs.pop("inverted", None)
        wait_for(f"{active} up by quorum", 120 * t_scale, 1, lambda: status_where(
            lambda s: s.get("tally", {}).get("regions", {}).get(active) == "up"))
        t1 = time.time()
        out = fleet.cli("failback", "--yes", "--reason", "smoke kit drill")
        if out.returncode != 0:
            raise StepFailed(f"failoverd failback exited {out.returncode}: {out.stderr.strip()[-300:]}")
        wait_for(f"the failback to {active}", 120 * t_scale, 0.5, lambda: status_where(
            lambda s: s.get("record") and s["record"]["active"] == active and s["record"]["phase"] == "steady"
            and s["record"]["epoch"] == epoch + 2))
        report.figures["failback command → steady, as the kit saw it"] = int((time.time() - t1) * 1000)
        s.detail = f"{active} active at epoch {epoch + 2}"
    failover_report(fleet, report, epoch + 2, "failback", t1)

    with Step(report, "boto3 through a router across the drill") as s:
        watcher.finish()
        n = watcher.ok + len(watcher.errors)
        s.detail = f"{watcher.ok}/{n} InvokeEndpoint calls through {survivors[0]}'s router answered"
        if watcher.errors or watcher.ok == 0:
            raise StepFailed(f"{s.detail}; first error: {(watcher.errors or ['none'])[0]}")


def failover_report(fleet, report, epoch, label, since):
    """failoverd report --epoch N: the figures the journal gives."""
    with Step(report, f"{label} report (failoverd report --epoch {epoch})") as s:
        path = fleet.work / f"report-epoch-{epoch}.json"
        out = fleet.cli("report", "--epoch", str(epoch), "--output", str(path),
                        "--output", str(path.with_suffix(".html")))
        if out.returncode != 0:
            raise StepFailed(f"exited {out.returncode}: {out.stderr.strip()[-300:]}")
        r = json.loads(path.read_text())
        figs = (r.get("failover") or {}).get("figures") or {}
        for k, v in figs.items():
            if v is not None:
                report.figures[f"{label}: {k}"] = v
        # The daemons run on this machine: their journal's clock is the
        # kit's, so the injection can be put on the journal's timeline.
        origin = "inversion" if label == "failover" else "failback command"
        for m in (r.get("failover") or {}).get("milestones", []):
            if m["label"] in ("detected", "StartExecution", "steady"):
                report.figures[f"{label}: {origin} → {m['label']} (journal)"] = m["at"] - int(since * 1000)
        s.detail = f"{path.name}, {len(r.get('events', []))} journal entries, outcome {r['failover'].get('outcome')}"
        if label == "failover" and figs.get("detection_to_start_ms") is None:
            raise StepFailed(f"no detection → StartExecution figure in {path}")


# --------------------------------------------------------------------------
# AccessDenied: CloudTrail and the daemons' own logs


def access_denied(args, aws, report, fleet, since):
    # The daemons' logs: every SDK error is logged with its code; data-plane
    # denials (DynamoDB items, S3 objects, InvokeEndpoint) are only here,
    # because CloudTrail's LookupEvents returns management events only.
    with Step(report, "AccessDenied in the daemons' logs") as s:
        hits = []
        for r in args.regions:
            for line in (fleet.work / f"{r}.log").read_text(errors="replace").splitlines():
                if re.search(r"AccessDenied|UnauthorizedOperation|not authorized", line):
                    hits.append(f"{r}: {line[:300]}")
        if hits:
            (fleet.work / "access-denied.log").write_text("\n".join(hits) + "\n")
            raise StepFailed(f"{len(hits)} lines, first: {hits[0]}")
        s.detail = "none"

    session = f"{args.prefix}-daemon"
    found, errors = [], []
    deadline = time.time() + args.cloudtrail_wait
    t0 = time.time()
    while True:
        found, errors = [], []
        for r in args.regions + (["us-east-1"] if "us-east-1" not in args.regions else []):
            try:
                ct = aws.client("cloudtrail", r)
                for page in ct.get_paginator("lookup_events").paginate(
                        LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": session}],
                        StartTime=datetime.datetime.fromtimestamp(since, datetime.timezone.utc)):
                    for e in page.get("Events", []):
                        detail = json.loads(e.get("CloudTrailEvent", "{}"))
                        code = detail.get("errorCode", "")
                        if "AccessDenied" in code or "Unauthorized" in code:
                            found.append(f"{r} {detail.get('eventSource')} {detail.get('eventName')}: {code}")
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
                errors.append(f"{r}: {str(e).splitlines()[0][:200]}")
        if found or errors or time.time() >= deadline:
            break
        time.sleep(60)
    name = "AccessDenied in CloudTrail (LookupEvents, the daemon role's session)"
    if args.lab:
        why = f"the call ran and answered: {errors[0]}" if errors else f"the call ran and found {len(found)} events"
        report.add(name, "n/a", f"not available in the lab: moto records no CloudTrail events ({why})",
                   time.time() - t0)
    elif errors:
        report.add(name, "fail", f"LookupEvents failed: {errors[0]}", time.time() - t0)
    elif found:
        report.add(name, "fail", f"{len(found)}: " + "; ".join(found[:10]), time.time() - t0)
    else:
        report.add(name, "pass", f"none in management events after waiting {args.cloudtrail_wait} s "
                   "(CloudTrail delivers within about 15 minutes)", time.time() - t0)


# --------------------------------------------------------------------------
# Main


BUDGET = """
 ----------------------------------------------------------------------------
 COST WARNING: this creates billable resources in account {account}
 ({regions}), all named {prefix}-*, and deletes them at the end:
   - a DynamoDB global table (MRSC, 3 replicas, on demand) and a routing table
   - per region: a Step Functions state machine, a CloudWatch log group,
     an S3 bucket, a Route 53 health check (HTTPS, {fqdn})
   - IAM roles (daemon, drill, and the kit's role with the daemon's policy)
 Expected: about 1 USD for a 30-minute run besides the three Route 53 HTTPS
 checks (2.75 USD a month each; up to 8.25 USD if a part month is billed
 whole); DynamoDB, Step Functions and S3 are billed by the request.
 Your SageMaker endpoints ({endpoints}) are invoked, not created: their own
 price applies while they run. Teardown runs on any exit; if this process is
 killed with SIGKILL run: deploy/smoke/run --teardown {ledger}
 ----------------------------------------------------------------------------
"""


def parse(argv):
    p = argparse.ArgumentParser(prog="deploy/smoke/run", description=__doc__.splitlines()[0])
    p.add_argument("--account-id", help="the account to deploy into; must equal sts get-caller-identity (required)")
    p.add_argument("--profile", help="AWS profile of the deploying identity (AWS mode)")
    p.add_argument("--regions", default="us-east-1,us-east-2,us-west-2",
                   help="three regions, comma-separated, one MRSC set (default: %(default)s)")
    p.add_argument("--prefix", help="name prefix of everything created (default: fsmoke-<random>)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation after the cost warning")
    p.add_argument("--lab", action="store_true", help="dry run against the lab (moto on 127.0.0.1)")
    p.add_argument("--lab-moto-url", help="use this running moto (default: start the lab's)")
    p.add_argument("--lab-model-url", help="use this running lab model server")
    p.add_argument("--lab-tools", default=str(ROOT / "target/debug/failoverd-lab"), help="failoverd-lab binary")
    p.add_argument("--binary", help="failoverd binary (default: target/debug/failoverd, else failoverd on PATH)")
    p.add_argument("--serverless-endpoint", help="AWS mode: your SageMaker endpoint, same name in each region")
    p.add_argument("--batch-endpoint", help="AWS mode: your asynchronous endpoint, same name in each region "
                   "(writes to s3://<prefix>-batch-<region>/async-results/); none: no batch job")
    p.add_argument("--model", default="default", help="the model name clients use at the router")
    p.add_argument("--target-model", help="SageMaker TargetModel (multi-model endpoints only)")
    p.add_argument("--health-check-fqdn", help="what the Route 53 checks probe over HTTPS (AWS mode; "
                   "default checkip.amazonaws.com)")
    p.add_argument("--health-check-path", default="/")
    p.add_argument("--cloudtrail-wait", type=int, help="seconds to wait for CloudTrail delivery "
                   "(default 900 in AWS mode, 0 in the lab)")
    p.add_argument("--stack-wait", type=int, help="seconds a stack may take (default 900; lab 60)")
    p.add_argument("--work-dir", help="logs, config, reports (default: deploy/smoke/.run/<prefix>)")
    p.add_argument("--report", help="JSON report path (default: WORK/report.json)")
    p.add_argument("--leftovers", action="store_true",
                   help="only list what exists named PREFIX-* (read-only); exit 1 if anything does")
    p.add_argument("--teardown", metavar="LEDGER", help="only tear down what LEDGER (a killed run's ledger.json) lists")
    a = p.parse_args(argv)
    a.regions = [r.strip() for r in a.regions.split(",") if r.strip()]
    return a


def check_args(a):
    """Refusals that need no AWS call. Nothing is created before these."""
    if not a.account_id:
        raise Refused("--account-id is required: the kit deploys only into the account you name, "
                      "and checks it against sts get-caller-identity first")
    if not re.fullmatch(r"\d{12}", a.account_id):
        raise Refused(f"--account-id {a.account_id!r} is not a 12-digit AWS account id")
    if len(a.regions) != 3 or len(set(a.regions)) != 3:
        raise Refused(f"--regions needs three distinct regions, got {a.regions}")
    if not a.lab and not any(set(a.regions) <= s for s in STRONG_SETS):
        raise Refused(f"--regions {a.regions} are not in one MRSC region set ({STRONG_SETS})")
    if a.prefix is None:
        a.prefix = f"fsmoke-{secrets.token_hex(3)}"
    if not re.fullmatch(r"[a-z][a-z0-9-]{2,20}", a.prefix):
        raise Refused(f"--prefix {a.prefix!r}: 3-21 characters, a-z, 0-9 and -, starting with a letter "
                      "(it names S3 buckets and IAM roles)")
    if not a.lab and not a.profile and not os.environ.get("AWS_PROFILE"):
        raise Refused("--profile is required against AWS (or AWS_PROFILE)")
    if not a.lab and not a.serverless_endpoint:
        raise Refused("--serverless-endpoint is required against AWS: the kit invokes your endpoints, "
                      "it does not create any (deploy/smoke/README.md)")
    if a.binary is None:
        dev = ROOT / "target/debug/failoverd"
        a.binary = str(dev) if dev.exists() else shutil.which("failoverd")
    if not a.binary:
        raise Refused("no failoverd binary: --binary, or install the Debian package, or cargo build")
    if a.cloudtrail_wait is None:
        a.cloudtrail_wait = 0 if a.lab else 900
    if a.stack_wait is None:
        a.stack_wait = 60 if a.lab else 900
    if not a.lab and a.health_check_fqdn is None:
        a.health_check_fqdn = "checkip.amazonaws.com"


def names_for(a):
    p = a.prefix
    return {
        "control": f"{p}-control",
        "routing": f"{p}-routing",
        "state_machine": f"{p}-failover",
        "bucket_prefix": f"{p}-batch",
        "serverless": f"{p}-serverless" if a.lab else a.serverless_endpoint,
        "batch": f"{p}-async" if a.lab else (a.batch_endpoint or ""),
    }


def main(argv):
    a = parse(argv)
    try:
        if a.teardown:
            return teardown_only(a)
        if a.leftovers:
            return leftovers_only(a)
        check_args(a)
    except Refused as e:
        print(f"smoke: REFUSED: {e}", file=sys.stderr)
        return EXIT_REFUSED

    work = Path(a.work_dir or HERE / ".run" / a.prefix).resolve()
    lab_servers = None
    report = Report(a)
    ledger = None
    fleet = None
    aws = None
    interrupted = []

    def on_signal(signum, _frame):
        if interrupted:
            say(f"signal {signum}: tearing down, not stopping (wait; the ledger is in {work})")
            return
        interrupted.append(signum)
        raise Interrupted(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    code = EXIT_FAILED
    started = time.time()
    try:
        if a.lab:
            if a.lab_moto_url:
                moto, model = a.lab_moto_url, a.lab_model_url
            else:
                work.mkdir(parents=True, exist_ok=True)
                lab_servers = LabServers(a, work)
                moto, model = lab_servers.start()
            aws = Aws(a, moto)
            aws.model_url = model
        else:
            aws = Aws(a)

        identity = aws.client("sts", a.regions[0]).get_caller_identity()
        if identity["Account"] != a.account_id:
            raise Refused(f"--account-id {a.account_id} but these credentials are account "
                          f"{identity['Account']} ({identity['Arn']}): nothing was created")
        names = names_for(a)
        print(BUDGET.format(account=a.account_id, regions=", ".join(a.regions), prefix=a.prefix,
                            fqdn=a.health_check_fqdn or "the lab's", ledger=work / "ledger.json",
                            endpoints=", ".join(filter(None, (names["serverless"], names["batch"])))),
              flush=True)
        if a.lab:
            print(" (lab mode: everything goes to moto on 127.0.0.1; nothing is billed)\n", flush=True)
        if not a.yes:
            if not sys.stdin.isatty():
                raise Refused("no terminal to confirm on: pass --yes after reading the warning")
            if input(f"Type the account id ({a.account_id}) to go on: ").strip() != a.account_id:
                raise Refused("not confirmed")
        work.mkdir(parents=True, exist_ok=True)
        ledger = Ledger(work / "ledger.json", a.prefix)
        report.add("identity", "pass", f"{identity['Arn']} is account {identity['Account']}")

        outputs = {"names": names}
        deploy(a, aws, ledger, report, work, outputs)

        with Step(report, "the daemon's policy as a role the runner assumes") as s:
            role_arn, policies = smoke_daemon_role(a, aws, ledger, identity, outputs)
            creds = assume(aws, role_arn, f"{a.prefix}-daemon", 60 if a.lab else 120)
            s.detail = f"{role_arn} with {', '.join(policies)} (copied from {outputs['daemon_role']})"

        write_config(a, work, names, outputs, identity["Account"])
        fleet = Fleet(a, work, lambda r: aws.daemon_env(creds, r))
        with Step(report, f"three daemons on this machine ({a.binary})") as s:
            out = subprocess.run(
                [a.binary, "check-config", *[str(work / "regions" / f"{r}.toml") for r in a.regions]],
                cwd=work, env=aws.daemon_env(creds, a.regions[0]), capture_output=True, text=True, timeout=60)
            if out.returncode != 0:
                raise StepFailed(f"check-config: {out.stderr.strip()[-400:]}")
            fleet.start()
            s.detail = ", ".join(f"{r} admin :{fleet.admin[r]} router :{fleet.router[r]}" for r in a.regions)

        drill(a, aws, fleet, report, outputs)
        code = 0
    except Refused as e:
        print(f"smoke: REFUSED: {e}", file=sys.stderr)
        code = EXIT_REFUSED
    except Interrupted as e:
        report.add("run", "fail", f"interrupted ({e}); tearing down")
    except StepFailed as e:
        say(f"stopping: {e}")
    except Exception as e:  # anything else still tears down and reports
        report.add("run", "fail", f"{type(e).__name__}: {e}")
    finally:
        # From here on a signal only prints: a first Ctrl-C during the
        # teardown of a run that went well must not cut the teardown short.
        interrupted.append("teardown")
        if fleet:
            fleet.stop()
        if ledger and ledger.items:
            try:
                with Step(report, f"teardown of {len(ledger.items)} created resources") as s:
                    left = teardown(aws, ledger, a.stack_wait) + leftovers(aws, ledger)
                    left += [x for x in inventory(aws, a.regions, a.prefix) if x not in left]
                    if left:
                        raise StepFailed("still there: " + "; ".join(left) + f" (ledger {ledger.path})")
                    s.detail = f"everything the ledger lists is gone, and nothing named {a.prefix}-* is left"
            except Exception:  # recorded by its Step
                pass
        if fleet and fleet.procs:
            try:
                access_denied(a, aws, report, fleet, started)
            except Exception:  # recorded by its Step
                pass
        if lab_servers:
            lab_servers.stop()
    if code == EXIT_REFUSED:
        return code
    if a.lab:
        report.notes.append("lab mode: moto and the lab's model server on 127.0.0.1, not AWS")
    print(report.text(), flush=True)
    path = Path(a.report) if a.report else work / "report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    say(f"report: {path}")
    return EXIT_FAILED if report.failed() else 0


def checked_aws(a):
    """Clients for --teardown / --leftovers, after the same account check."""
    if not a.account_id:
        raise Refused("--account-id is required")
    aws = Aws(a, a.lab_moto_url)
    identity = aws.client("sts", a.regions[0]).get_caller_identity()
    if identity["Account"] != a.account_id:
        raise Refused(f"--account-id {a.account_id} but these credentials are account {identity['Account']}")
    return aws


def leftovers_only(a):
    if not a.prefix:
        raise Refused("--leftovers needs --prefix")
    if a.lab and not a.lab_moto_url:
        raise Refused("--leftovers --lab needs --lab-moto-url")
    found = inventory(checked_aws(a), a.regions, a.prefix)
    for x in found:
        print(f"leftover: {x}")
    if not found:
        say(f"nothing named {a.prefix}-* in {', '.join(a.regions)} (stacks, tables, state machines, "
            "endpoints, buckets, roles)")
    return EXIT_FAILED if found else 0


def teardown_only(a):
    led = json.loads(Path(a.teardown).read_text())
    a.prefix = led["prefix"]
    aws = checked_aws(a)
    ledger = Ledger(Path(a.teardown), a.prefix)
    ledger.items = led["items"]
    left = teardown(aws, ledger, a.stack_wait or 900) + leftovers(aws, ledger)
    for x in left:
        say(f"still there: {x}")
    return EXIT_FAILED if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
