"""failoverd's policy-as-code rules, as cfn-lint custom rules.

    cfn-lint --append-rules deploy/lint/rules <templates>

What must always hold in deploy/cloudformation (deploy/lint.sh runs them in
CI, and proves each one fails on a template broken on purpose):

E9101 encryption at rest: S3 buckets have default encryption, DynamoDB
      tables and global tables SSE enabled, SNS topics a KMS key.
E9102 the daemon's policy is least privilege: no "*" or wildcarded service
      in an action, no NotAction/NotResource, no "*" resource (except the
      three Step Functions task callbacks, which support no resource-level
      permission), no wildcard in the part of an ARN that names the resource,
      no managed policies, and no Route 53 action that writes (drills invert
      health checks with the drill role, never the daemon's).
E9103 deletion protection: every DynamoDB table and every global-table
      replica has DeletionProtectionEnabled and a Retain deletion policy.
E9104 billing alarms only in us-east-1: a template with an AWS/Billing alarm
      must refuse every other region in its Rules section.
E9105 a region without a replica can deploy without a workflow: every state
      machine carries a Condition, its execution role and log group carry the
      same one, and nothing else (the bucket, the health check, which every
      serving region needs) does. Step Functions runs the workflow's DynamoDB
      steps only in its own region (docs/deploy.md, "Where the workflow
      runs").
E9106 daemon hosts behind a load balancer (hosts.yaml, docs/instances.md):
      every launch template requires IMDSv2 (MetadataOptions.HttpTokens
      required), and no target group health-checks /active, which answers
      200 on one daemon of the active region only (the duty holder): every
      other host would be taken out of service.

The daemon's role is the AWS::IAM::Role whose Metadata says
`failoverd: {role: daemon}`; policies attached to it by AWS::IAM::Policy or
AWS::IAM::ManagedPolicy count as its own.

Written against the template as written (intrinsics unresolved): Fn::If
branches are checked one by one, Fn::Sub variables count as opaque names
(never as wildcards), literal text is checked as is.
"""

import re

from cfnlint.rules import CloudFormationLintRule, RuleMatch

# Actions AWS documents with no resource type: "*" is the only Resource IAM
# accepts for them. Keep this list short and cite the reason in iam.yaml.
NO_RESOURCE_LEVEL = {
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
    # CloudWatch's metric reads have no resource type (and no condition key
    # for the namespace): idle detection's fallback reads AWS/SageMaker
    # Invocations with it.
    "cloudwatch:GetMetricStatistics",
    # The same for GetMetricData: the health.route53_source = "cloudwatch"
    # signal reads AWS/Route53 HealthCheckStatus with it.
    "cloudwatch:GetMetricData",
    # Idle detection names each inference component on an endpoint for
    # that read; SageMaker's List actions have no resource type.
    "sagemaker:ListInferenceComponents",
    # Standby readiness: Application Auto Scaling's and Service Quotas'
    # reads list no resource type either.
    "application-autoscaling:DescribeScalableTargets",
    "servicequotas:ListServiceQuotas",
}

# Read-only calls whose resource names the deploy pipeline chooses per
# version and the daemon learns at run time: an endpoint's config and model
# names come from DescribeEndpoint (standby readiness compares them with the
# active's). A wildcard name is allowed for these resource types only when
# every action of the statement is one of these reads.
RUNTIME_NAMED_READS = {
    "endpoint-config": {"sagemaker:DescribeEndpointConfig"},
    "model": {"sagemaker:DescribeModel"},
}


def _alternatives(value):
    """Every value `value` can take, Fn::If branches expanded; NoValue and
    absence drop out."""
    if value is None:
        return []
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Fn::If" and isinstance(arg, list) and len(arg) == 3:
            return _alternatives(arg[1]) + _alternatives(arg[2])
        if key == "Ref" and arg == "AWS::NoValue":
            return []
    return [value]


def _items(value):
    """Items of a list property (each item's Fn::If expanded)."""
    out = []
    for alt in _alternatives(value):
        if isinstance(alt, list):
            for item in alt:
                out.extend(_alternatives(item))
        else:
            out.append(alt)
    return out


def _get(obj, *keys):
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _text(value):
    """Literal text of a string expression; ${...} and other intrinsics become
    the placeholder NAME, which is never a wildcard. A Ref or GetAtt names
    one resource of the stack: it reads as a specific ARN."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key in ("Ref", "Fn::GetAtt", "Fn::ImportValue"):
            return "arn:NAME:NAME:NAME:NAME:NAME/NAME"
        if key == "Fn::Sub":
            template = arg[0] if isinstance(arg, list) else arg
            if isinstance(template, str):
                return re.sub(r"\$\{[^}!]+\}", "NAME", template)
        if key == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
            parts = arg[1] if isinstance(arg[1], list) else []
            return str(arg[0]).join(_text(p) or "NAME" for p in parts)
    return "NAME"


def _resources(cfn, *types):
    for name, res in (cfn.template.get("Resources") or {}).items():
        if isinstance(res, dict) and res.get("Type") in types:
            yield name, res


class EncryptionAtRest(CloudFormationLintRule):
    id = "E9101"
    shortdesc = "failoverd: data stores are encrypted at rest"
    description = (
        "S3 buckets need BucketEncryption (AES256 or aws:kms), DynamoDB tables "
        "and global tables SSESpecification.SSEEnabled: true, SNS topics a KmsMasterKeyId."
    )
    tags = ["failoverd", "encryption"]

    def match(self, cfn):
        matches = []
        for name, res in _resources(cfn, "AWS::S3::Bucket"):
            path = ["Resources", name, "Properties"]
            rules = _items(_get(res, "Properties", "BucketEncryption", "ServerSideEncryptionConfiguration"))
            algorithms = [
                _get(r, "ServerSideEncryptionByDefault", "SSEAlgorithm") for r in rules
            ]
            if not algorithms or any(
                a not in ("AES256", "aws:kms", "aws:kms:dsse") for a in algorithms
            ):
                matches.append(RuleMatch(
                    path + ["BucketEncryption"],
                    f"S3 bucket {name} has no default encryption at rest: set "
                    "BucketEncryption.ServerSideEncryptionConfiguration with SSEAlgorithm AES256 or aws:kms",
                ))
        for name, res in _resources(cfn, "AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
            enabled = _alternatives(_get(res, "Properties", "SSESpecification", "SSEEnabled"))
            if not enabled or any(v not in (True, "true", "True") for v in enabled):
                matches.append(RuleMatch(
                    ["Resources", name, "Properties", "SSESpecification"],
                    f"DynamoDB table {name}: set SSESpecification.SSEEnabled: true "
                    "(KMS encryption at rest, AWS managed key unless a replica names one)",
                ))
        for name, res in _resources(cfn, "AWS::SNS::Topic"):
            if not _alternatives(_get(res, "Properties", "KmsMasterKeyId")):
                matches.append(RuleMatch(
                    ["Resources", name, "Properties"],
                    f"SNS topic {name} is not encrypted at rest: set KmsMasterKeyId "
                    "(a customer managed key if CloudWatch alarms publish to it)",
                ))
        for name, res in _resources(cfn, "AWS::EC2::LaunchTemplate"):
            data = _get(res, "Properties", "LaunchTemplateData") or {}
            for i, dev in enumerate(_items(data.get("BlockDeviceMappings"))):
                ebs = _get(dev, "Ebs")
                if ebs is None:
                    continue
                flags = _alternatives(_get(ebs, "Encrypted"))
                if not flags or not all(_is_true(f) for f in flags):
                    matches.append(RuleMatch(
                        ["Resources", name, "Properties", "LaunchTemplateData", "BlockDeviceMappings", i],
                        f"launch template {name}: EBS volume {_text(_get(dev, 'DeviceName'))} needs Encrypted: true",
                    ))
        return matches


def _daemon_roles(cfn):
    return [
        name
        for name, res in _resources(cfn, "AWS::IAM::Role")
        if _get(res, "Metadata", "failoverd", "role") == "daemon"
    ]


def _refers_to(value, name):
    return any(
        isinstance(v, dict) and (v.get("Ref") == name or v.get("Fn::GetAtt") in ([name, "Arn"], f"{name}.Arn"))
        for v in _items(value)
    )


class DaemonLeastPrivilege(CloudFormationLintRule):
    id = "E9102"
    shortdesc = "failoverd: the daemon's policy grants no wildcard"
    description = (
        "The role marked Metadata failoverd.role=daemon: no '*' in actions, no "
        "NotAction/NotResource, no '*' resource except for the Step Functions task "
        "callbacks and CloudWatch metric reads, no wildcard naming the resource in an ARN, no managed policies, "
        "no Route 53 writes."
    )
    tags = ["failoverd", "iam", "least-privilege"]

    def _statements(self, cfn, role):
        """(path, statement) of every policy that applies to `role`."""
        res = cfn.template["Resources"][role]
        for i, pol in enumerate(_items(_get(res, "Properties", "Policies"))):
            base = ["Resources", role, "Properties", "Policies", i, "PolicyDocument", "Statement"]
            for j, st in enumerate(_items(_get(pol, "PolicyDocument", "Statement"))):
                yield base + [j], st
        for name, other in _resources(cfn, "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            if _refers_to(_get(other, "Properties", "Roles"), role):
                base = ["Resources", name, "Properties", "PolicyDocument", "Statement"]
                for j, st in enumerate(_items(_get(other, "Properties", "PolicyDocument", "Statement"))):
                    yield base + [j], st

    def _check_resource(self, path, role, actions, resource):
        text = _text(resource)
        if text == "*":
            loose = sorted(a for a in actions if a not in NO_RESOURCE_LEVEL)
            if loose:
                return [RuleMatch(path, (
                    f"daemon role {role}: Resource '*' for {', '.join(loose)}; name the "
                    "table, state machine, execution, endpoint, health check or bucket ARN "
                    "('*' is allowed only for states:SendTask{Success,Failure,Heartbeat} cloudwatch:GetMetric{Statistics,Data}, sagemaker:ListInferenceComponents, application-autoscaling:DescribeScalableTargets and servicequotas:ListServiceQuotas)"
                ))]
            return []
        parts = text.split(":", 5)
        if len(parts) < 6 or parts[0] != "arn":
            return [RuleMatch(path, f"daemon role {role}: resource {text!r} is not an ARN")]
        _, partition, service, region, account, rest = parts
        for what, field in (("partition", partition), ("service", service), ("region", region), ("account", account)):
            if "*" in field or "?" in field:
                return [RuleMatch(path, f"daemon role {role}: wildcard {what} in {text!r}; list the ARNs")]
        tokens = re.split(r"[/:]", rest)
        # S3 object ARNs are bucket/key: the bucket names the resource. Other
        # services write type/name (table/x, endpoint/x, stateMachine:x).
        naming = tokens[:1] if service == "s3" else tokens[:2]
        reads = RUNTIME_NAMED_READS.get(naming[0]) if service == "sagemaker" else None
        if (
            reads
            and len(naming) == 2
            and naming[1] == "*"
            and actions
            and all(a in reads for a in actions)
        ):
            return []
        if any("*" in t or "?" in t for t in naming):
            return [RuleMatch(path, (
                f"daemon role {role}: wildcard in the resource name of {text!r}; "
                "wildcards may only follow a named resource (table/x/index/*, bucket/prefix/*)"
            ))]
        return []

    def match(self, cfn):
        matches = []
        for role in _daemon_roles(cfn):
            props = _get(cfn.template["Resources"][role], "Properties") or {}
            if _alternatives(props.get("ManagedPolicyArns")):
                matches.append(RuleMatch(
                    ["Resources", role, "Properties", "ManagedPolicyArns"],
                    f"daemon role {role}: no managed policies; grant the exact actions inline",
                ))
            for path, st in self._statements(cfn, role):
                if not isinstance(st, dict) or st.get("Effect") != "Allow":
                    continue
                for bad in ("NotAction", "NotResource"):
                    if bad in st:
                        matches.append(RuleMatch(path + [bad], f"daemon role {role}: {bad} grants everything not listed; list what is allowed"))
                actions = [a for a in _items(st.get("Action")) if isinstance(a, str)]
                for a in actions:
                    if "*" in a or "?" in a:
                        matches.append(RuleMatch(path + ["Action"], f"daemon role {role}: wildcard action {a!r}; list the API actions the code calls"))
                    elif a.lower().startswith("route53:") and not a.split(":", 1)[1].startswith(("Get", "List")):
                        matches.append(RuleMatch(path + ["Action"], (
                            f"daemon role {role}: {a} writes Route 53; the daemon only reads health "
                            "checks (drills use the drill role)"
                        )))
                for r in _items(st.get("Resource")):
                    matches.extend(self._check_resource(path + ["Resource"], role, actions, r))
        return matches


def _is_true(v):
    return v in (True, "true", "True")


class TableDeletionProtection(CloudFormationLintRule):
    id = "E9103"
    shortdesc = "failoverd: DynamoDB tables cannot be deleted by accident"
    description = (
        "Every AWS::DynamoDB::Table and every replica of an AWS::DynamoDB::GlobalTable "
        "has DeletionProtectionEnabled: true, and the resource DeletionPolicy and "
        "UpdateReplacePolicy Retain."
    )
    tags = ["failoverd", "dynamodb"]

    def match(self, cfn):
        matches = []
        for name, res in _resources(cfn, "AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
            for attr in ("DeletionPolicy", "UpdateReplacePolicy"):
                if res.get(attr) != "Retain":
                    matches.append(RuleMatch(["Resources", name], f"DynamoDB table {name}: set {attr}: Retain"))
            props = res.get("Properties") or {}
            if res["Type"] == "AWS::DynamoDB::Table":
                flags = _alternatives(props.get("DeletionProtectionEnabled"))
                if not flags or not all(_is_true(f) for f in flags):
                    matches.append(RuleMatch(["Resources", name, "Properties"], f"DynamoDB table {name}: set DeletionProtectionEnabled: true"))
                continue
            replicas = _items(props.get("Replicas"))
            if not replicas:
                matches.append(RuleMatch(["Resources", name, "Properties"], f"global table {name} lists no replicas"))
            for i, rep in enumerate(replicas):
                flags = _alternatives(_get(rep, "DeletionProtectionEnabled"))
                if not flags or not all(_is_true(f) for f in flags):
                    region = _text(_get(rep, "Region"))
                    matches.append(RuleMatch(
                        ["Resources", name, "Properties", "Replicas", i],
                        f"global table {name}: replica {region} needs DeletionProtectionEnabled: true",
                    ))
        return matches


def _pins_us_east_1(assertion):
    args = _get(assertion, "Assert", "Fn::Equals")
    if not isinstance(args, list) or len(args) != 2:
        return False
    return {"us-east-1", "AWS::Region"} == {
        a if isinstance(a, str) else _get(a, "Ref") for a in args
    }


class BillingAlarmsOnlyInUsEast1(CloudFormationLintRule):
    id = "E9104"
    shortdesc = "failoverd: billing alarms only in us-east-1"
    description = (
        "AWS/Billing metrics exist only in us-east-1: a template with a billing alarm "
        "must refuse other regions with an unconditional Rules assertion "
        "Fn::Equals [Ref AWS::Region, us-east-1]."
    )
    tags = ["failoverd", "billing"]

    def match(self, cfn):
        pinned = any(
            isinstance(rule, dict)
            and "RuleCondition" not in rule
            and any(_pins_us_east_1(a) for a in _items(rule.get("Assertions")))
            for rule in (cfn.template.get("Rules") or {}).values()
        )
        if pinned:
            return []
        matches = []
        for name, res in _resources(cfn, "AWS::CloudWatch::Alarm"):
            props = res.get("Properties") or {}
            namespaces = [props.get("Namespace")] + [
                _get(m, "MetricStat", "Metric", "Namespace") for m in _items(props.get("Metrics"))
            ]
            if "AWS/Billing" in namespaces:
                matches.append(RuleMatch(["Resources", name], (
                    f"billing alarm {name}: AWS/Billing metrics exist only in us-east-1, and this "
                    "template does not refuse other regions; add a Rules assertion "
                    "Fn::Equals [!Ref AWS::Region, us-east-1]"
                )))
        return matches


def _ref_name(value):
    """The resource a Ref or Fn::GetAtt names, or None."""
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref" and isinstance(arg, str):
            return arg
        if key == "Fn::GetAtt":
            if isinstance(arg, list) and arg:
                return arg[0]
            if isinstance(arg, str):
                return arg.split(".")[0]
    return None


class WorkflowIsOptional(CloudFormationLintRule):
    id = "E9105"
    shortdesc = "failoverd: the workflow can be left out of a region without a replica"
    description = (
        "A region that holds no replica of the control table deploys no workflow "
        "(cross-Region SDK integrations are not available): every state machine needs a "
        "Condition, its role and log group the same one, and no other resource may carry it."
    )
    tags = ["failoverd", "workflow"]

    def match(self, cfn):
        resources = cfn.template.get("Resources") or {}
        matches = []
        workflow = {}
        for name, res in _resources(cfn, "AWS::StepFunctions::StateMachine"):
            cond = res.get("Condition")
            if not cond:
                matches.append(RuleMatch(["Resources", name], (
                    f"state machine {name} has no Condition: a region without a replica of the "
                    "control table could not deploy this template without a workflow that writes "
                    "a table it does not have (Step Functions runs SDK integrations only in its own "
                    "region); condition it on a DeployWorkflow parameter"
                )))
                continue
            props = res.get("Properties") or {}
            parts = {name: cond, _ref_name(props.get("RoleArn")): cond}
            for dest in _items(_get(props, "LoggingConfiguration", "Destinations")):
                group = _ref_name(_get(dest, "CloudWatchLogsLogGroup", "LogGroupArn"))
                parts[group] = cond
            for part, want in parts.items():
                if part is None or part not in resources:
                    continue
                workflow[part] = want
                got = resources[part].get("Condition")
                if got != want:
                    matches.append(RuleMatch(["Resources", part], (
                        f"{part} belongs to state machine {name} but has Condition {got!r}, not "
                        f"{want!r}: a region without a workflow would deploy it half"
                    )))
        conds = set(workflow.values())
        for name, res in resources.items():
            if (
                isinstance(res, dict)
                and name not in workflow
                and res.get("Condition") in conds
            ):
                matches.append(RuleMatch(["Resources", name], (
                    f"{name} ({res.get('Type')}) carries the workflow's Condition "
                    f"{res.get('Condition')!r}: a region without a replica still needs it"
                )))
        return matches


class DaemonHostsBehindALoadBalancer(CloudFormationLintRule):
    id = "E9106"
    shortdesc = "failoverd: daemon hosts use IMDSv2 and no load balancer checks /active"
    description = (
        "Every AWS::EC2::LaunchTemplate sets MetadataOptions.HttpTokens: required; no "
        "AWS::ElasticLoadBalancingV2::TargetGroup has HealthCheckPath /active (it answers "
        "200 on the active region's duty holder only)."
    )
    tags = ["failoverd", "hosts"]

    def match(self, cfn):
        matches = []
        for name, res in _resources(cfn, "AWS::EC2::LaunchTemplate"):
            tokens = _alternatives(_get(res, "Properties", "LaunchTemplateData", "MetadataOptions", "HttpTokens"))
            if not tokens or any(t != "required" for t in tokens):
                matches.append(RuleMatch(
                    ["Resources", name, "Properties", "LaunchTemplateData"],
                    f"launch template {name}: set MetadataOptions.HttpTokens: required (IMDSv2 only: "
                    "the instance profile's credentials are the daemon's)",
                ))
        for name, res in _resources(cfn, "AWS::ElasticLoadBalancingV2::TargetGroup"):
            for path in _alternatives(_get(res, "Properties", "HealthCheckPath")):
                if _text(path).split("?")[0].rstrip("/") == "/active":
                    matches.append(RuleMatch(
                        ["Resources", name, "Properties", "HealthCheckPath"],
                        f"target group {name} health-checks /active: only the active region's duty "
                        "holder answers 200, so every other host would be out of service; check the "
                        "router's /ping",
                    ))
        return matches
