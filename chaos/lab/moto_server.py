"""moto in server mode on a port the OS picks, reported through a file.

    python chaos/lab/moto_server.py --port-file PATH [--host 127.0.0.1] [--quiet]

Why not `moto_server -p 0`: it binds port 0 but never says which port it got
(it prints "Running on ...:0"), and it sets MOTO_PORT to 0. Picking a "free"
port first (bind, read, close, hand the number on) races with every other
process on the machine: the OS may hand the same port out again before moto
binds it. So this launcher builds the same server moto's own `moto.server`
does (werkzeug's threaded server, moto's `DomainDispatcherApplication` over
`create_backend_app`, moto's request handler), binds 127.0.0.1:0 itself,
and only then tells the world the port.

MOTO_PORT matters: moto's Step Functions interpreter calls service tasks
(`aws-sdk:dynamodb:putItem.waitForTaskToken`, ...) on
`http://localhost:$MOTO_PORT`, read at call time. It is set to the bound port
before the first request is served, whatever the environment said.

Route 53 throttling, which moto does not model: `POST
/_lab/route53-throttle?seconds=N` makes every Route 53 API call (paths under
`/2013-04-01/`) answer 400 `Throttling` (Route 53's code for its API rate
limit) for the next N seconds; `seconds=0` ends it. The drill uses it to
measure detection right after a throttling episode (`chaos/lab.sh drill
--throttle-route53 45`).

S3's answer to a missing object, which moto does not model: S3 answers a
GetObject (or HeadObject) of a key that does not exist with 404 NoSuchKey
only to a caller that has `s3:ListBucket` on the bucket; to any other caller
it answers 403 AccessDenied (the GetObject API reference, "Permissions").
moto enforces no IAM and always answers 404. `S3ListBucket` below rewrites
moto's 404 NoSuchKey on an object read into S3's 403 AccessDenied unless
the caller has the permission. Who the caller is: the lab's daemons, whose
policy is the daemon role of deploy/cloudformation/iam.yaml (the template
the lab deploys; `--iam-template` to read another). By default (mode
`policy`) the launcher reads that role's statements, re-reading the file
when it changes, and grants the read a 404 when an Allow statement names
`s3:ListBucket` on a bucket ARN matching the bucket (`${...}` in an ARN
matches anything; an `s3:prefix` condition is checked against the key).
`POST /_lab/s3-listbucket?granted=true|false|policy` overrides it (true:
moto's own 404; false: always 403; policy: back to the template);
`GET /_lab/s3-listbucket` says what the lab currently answers.

SageMaker's capacity refusals, which moto does not model: moto grants every
`UpdateEndpointWeightsAndCapacities`. `POST
/_lab/sagemaker-capacity?endpoint=NAME&refuse=quota|insufficient|none`
makes the next scale-ups of endpoint NAME (any region) fail as SageMaker
fails them: `quota` answers the call 400 `ResourceLimitExceeded` (the
account's per-region, per-instance-type quota, 0 for GPU types on many new
accounts); `insufficient` accepts the call (200, nothing changes) and from
then on `DescribeEndpoint` of NAME carries SageMaker's `FailureReason`
("Unable to provision requested ML compute capacity due to
InsufficientInstanceCapacity error") on an endpoint that stays `InService`
with its old counts, as SageMaker leaves an endpoint whose update could not
get instances; `none` ends both (the `FailureReason` stays, as SageMaker
keeps the last one). `GET /_lab/sagemaker-capacity` lists what is set.

Route 53's CloudWatch metrics, which moto does not publish: Route 53 sends
each health check's `HealthCheckStatus` (1 healthy, 0 unhealthy; dimension
`HealthCheckId`; namespace `AWS/Route53`) to CloudWatch in us-east-1 once a
minute, and `health.route53_source = "cloudwatch"` reads it with
GetMetricData. `Route53StatusMetrics` samples every health check of moto's
Route 53 every `--route53-metric-interval` seconds (default 1; 0 turns it
off) and serves the samples as data points of that metric to moto's own
CloudWatch in us-east-1 (moto's `CloudWatchMetricProvider` hook, the one its
S3 uses for `BucketSizeBytes`), for the last 15 minutes. The status is the
one the lab's Route 53 has: moto's GetHealthCheckStatus answers every
checker with Success, so an endpoint check is healthy; a calculated check is
healthy when `HealthThreshold` of its children are; `Disabled` makes it
healthy, and `Inverted` flips it (a disabled and inverted check is
unhealthy), as Route 53 documents. The lab's period is a second, not a
minute, and a sample is visible at once (no publication lag): the lab shows
the path, not production's timing (docs/detection.md).
`POST /_lab/route53-metrics?paused=true|false` stops and resumes the
samples (Route 53 not publishing: the daemons must read Unknown, not a
verdict, once the newest point is stale).

SageMaker's inference components, which moto does not have: see
chaos/lab/lab_components.py (`/_lab/inference-components`). SageMaker's
instance pools (a variant on several instance types in priority order,
falling back on insufficient capacity), which moto does not have either:
chaos/lab/lab_pools.py (`POST /_lab/instance-pools?endpoint=NAME&pools=
T1,T2&limit=T1:N` fills the variant's count in priority order, each type up
to its limit, and `DescribeEndpoint` reports the pools' counts). IAM's policy
simulator (`SimulatePrincipalPolicy`, readiness's dry run), which moto does
not have either: chaos/lab/lab_iam.py (`/_lab/iam-simulator`).

Presigned STS `GetCallerIdentity` (the router's IAM caller identity,
src/router/iam.rs), which moto's server cannot route: a `GET /?Action=...`
carries its SigV4 scope in the query, not in an Authorization header, so
moto dispatches it to S3 (ListBuckets). `PresignedSts` hands such a request
to moto's STS as a header-signed call with the same access key (moto then
answers the identity that key belongs to, an assumed role's included), after
the checks STS makes that do not need the secret key: not expired
(`X-Amz-Date` + `X-Amz-Expires`, at most 7 days), and every header in
`X-Amz-SignedHeaders` present on the request. It does not verify the
signature itself (moto keeps no way to), so a token signed for another
fleet's header value passes here where STS would refuse it.

The port file gets the port as one line, written to a temporary file in the
same folder and renamed, so a reader never sees half a number. The server
stops on SIGTERM or SIGINT (exit 0), like `moto_server`.
"""

import argparse
import calendar
import fnmatch
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qs

import yaml
from werkzeug.serving import make_server

from moto.cloudwatch.models import MetricDatum
from moto.core.common_models import CloudWatchMetricProvider
from moto.core.utils import utcnow
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.route53.models import route53_backends

# Service Quotas' SageMaker endpoint-usage quotas (issue 26 readiness).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lab_quotas import LabQuotas  # noqa: E402
from lab_components import InferenceComponents  # noqa: E402  moto has no inference components
from lab_wsgi import read_body, rewrite_json  # noqa: E402  what the middlewares share
from lab_pools import InstancePools  # noqa: E402  moto has no instance pools
from lab_iam import IamSimulator  # noqa: E402  moto has no IAM policy simulator


def write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".moto-port-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


ROUTE53_THROTTLING = (
    b'<?xml version="1.0"?>\n'
    b'<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
    b"<Error><Type>Sender</Type><Code>Throttling</Code>"
    b"<Message>Rate exceeded</Message></Error>"
    b"<RequestId>lab-throttle</RequestId></ErrorResponse>"
)


def sts_error(start_response, code, message):
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>lab</RequestId></ErrorResponse>"
    ).encode()
    start_response(
        "403 Forbidden",
        [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))],
    )
    return [body]


class PresignedSts:
    """WSGI middleware: a presigned STS GET goes to moto's STS (module doc)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("HTTP_AUTHORIZATION"):
            return self.app(environ, start_response)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        credential = query.get("X-Amz-Credential", [""])[0].split("/")
        if len(credential) != 5 or credential[3] != "sts":
            return self.app(environ, start_response)
        try:
            signed_at = calendar.timegm(
                time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
            )
            expires = int(query["X-Amz-Expires"][0])
        except (KeyError, ValueError):
            return sts_error(start_response, "AuthFailure", "malformed presigned request")
        if not 1 <= expires <= 604800 or time.time() > signed_at + expires:
            return sts_error(start_response, "ExpiredToken", "Request has expired")
        for h in query.get("X-Amz-SignedHeaders", [""])[0].split(";"):
            if h != "host" and not environ.get("HTTP_" + h.upper().replace("-", "_")):
                return sts_error(
                    start_response,
                    "SignatureDoesNotMatch",
                    f"signed header {h} is missing from the request",
                )
        key, date, region = credential[0], credential[1], credential[2]
        environ["HTTP_AUTHORIZATION"] = (
            f"AWS4-HMAC-SHA256 Credential={key}/{date}/{region}/sts/aws4_request, "
            "SignedHeaders=host, Signature=" + "0" * 64
        )
        token = query.get("X-Amz-Security-Token", [""])[0]
        if token:
            environ["HTTP_X_AMZ_SECURITY_TOKEN"] = token
        return self.app(environ, start_response)


class Route53Throttle:
    """WSGI middleware: Route 53 answers Throttling until a deadline."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.until = 0.0

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/_lab/route53-throttle" and environ.get("REQUEST_METHOD") == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            try:
                seconds = float(query.get("seconds", ["0"])[0])
            except ValueError:
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"seconds must be a number\n"]
            with self.lock:
                self.until = time.monotonic() + max(seconds, 0.0)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [f"route53 throttled for {seconds} s\n".encode()]
        if path.startswith("/2013-04-01/"):
            with self.lock:
                throttled = time.monotonic() < self.until
            if throttled:
                start_response(
                    "400 Bad Request",
                    [
                        ("Content-Type", "text/xml"),
                        ("Content-Length", str(len(ROUTE53_THROTTLING))),
                    ],
                )
                return [ROUTE53_THROTTLING]
        return self.app(environ, start_response)


def _flag(value):
    """moto keeps a check's flags as parsed: a bool, or the text of one."""
    return value is True or str(value).lower() == "true"


def route53_status(checks, hc, depth=0):
    """Route 53's status of a moto health check (True: healthy): what the
    lab's Route 53 says (moto's checkers all report Success), a calculated
    check's children counted, then Disabled (healthy) and Inverted (flips)."""
    if _flag(hc.disabled):
        raw = True
    elif hc.children:
        if depth >= 3:
            raw = False
        else:
            healthy = sum(
                1
                for c in hc.children
                if c in checks and route53_status(checks, checks[c], depth + 1)
            )
            raw = healthy >= int(hc.health_threshold or 0)
    else:
        raw = True
    return (not raw) if _flag(hc.inverted) else raw


class Route53StatusMetrics(CloudWatchMetricProvider):
    """AWS/Route53 HealthCheckStatus for every check, as Route 53 would
    publish it (in us-east-1 only), sampled by a thread of the launcher."""

    REGION = "us-east-1"
    KEEP_SECONDS = 900
    lock = threading.Lock()
    samples = []  # (account id, MetricDatum)
    paused = False

    @staticmethod
    def get_cloudwatch_metrics(account_id, region):
        if region != Route53StatusMetrics.REGION:
            return []
        with Route53StatusMetrics.lock:
            return [d for (a, d) in Route53StatusMetrics.samples if a == account_id]

    @classmethod
    def sample(cls):
        now = utcnow()
        new = []
        for account_id in list(route53_backends.keys()):
            checks = dict(route53_backends[account_id]["aws"].health_checks)
            for hc in checks.values():
                if hc.type_ == "CLOUDWATCH_METRIC":
                    continue  # its status is an alarm's, which the lab does not evaluate
                value = 1.0 if route53_status(checks, hc) else 0.0
                new.append(
                    (
                        account_id,
                        MetricDatum(
                            namespace="AWS/Route53",
                            name="HealthCheckStatus",
                            value=value,
                            dimensions=[{"Name": "HealthCheckId", "Value": hc.id}],
                            timestamp=now,
                        ),
                    )
                )
        cutoff = now.timestamp() - cls.KEEP_SECONDS
        with cls.lock:
            if cls.paused:
                return
            cls.samples = [s for s in cls.samples if s[1].timestamp.timestamp() >= cutoff] + new

    @classmethod
    def run(cls, interval):
        while True:
            try:
                cls.sample()
            except Exception as e:  # a sample must never stop the publisher
                print(f"route53-metrics: {e!r}", file=sys.stderr)
            time.sleep(interval)


class Route53MetricsControl:
    """WSGI middleware: `POST /_lab/route53-metrics?paused=true|false`."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "") != "/_lab/route53-metrics":
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") == "POST":
            value = parse_qs(environ.get("QUERY_STRING", "")).get("paused", [""])[0]
            if value not in ("true", "false"):
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"paused must be true or false\n"]
            with Route53StatusMetrics.lock:
                Route53StatusMetrics.paused = value == "true"
        with Route53StatusMetrics.lock:
            text = f"paused={str(Route53StatusMetrics.paused).lower()} samples={len(Route53StatusMetrics.samples)}\n"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text.encode()]


S3_ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
    b"<RequestId>lab-s3-listbucket</RequestId><HostId>lab</HostId></Error>"
)

DEFAULT_IAM_TEMPLATE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "cloudformation", "iam.yaml"
)


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (`!Sub x` -> {"Fn::Sub": x})."""


def _cfn_tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    key = "Ref" if suffix == "Ref" else ("Fn::GetAtt" if suffix == "GetAtt" else f"Fn::{suffix}")
    return {key: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def _alternatives(value):
    """Every value a template value can take (Fn::If branches expanded)."""
    if isinstance(value, list):
        out = []
        for v in value:
            out.extend(_alternatives(v))
        return out
    if isinstance(value, dict) and len(value) == 1:
        ((k, arg),) = value.items()
        if k == "Fn::If" and isinstance(arg, list) and len(arg) == 3:
            return _alternatives(arg[1]) + _alternatives(arg[2])
        if k == "Ref" and arg == "AWS::NoValue":
            return []
        if k == "Fn::Sub":
            return [arg if isinstance(arg, str) else arg[0]]
    return [value]


def daemon_listbucket_grants(path):
    """(bucket glob, [key globs] or None) for every Allow of s3:ListBucket to
    the daemon role (Metadata failoverd.role = daemon) of a template:
    inline policies and AWS::IAM::Policy resources attached with Ref."""
    with open(path, encoding="utf-8") as f:
        tpl = yaml.load(f, Loader=_CfnLoader)  # noqa: S506 (SafeLoader subclass)
    resources = tpl.get("Resources", {})
    role = next(
        (
            rid
            for rid, r in resources.items()
            if r.get("Type") == "AWS::IAM::Role"
            and (r.get("Metadata") or {}).get("failoverd", {}).get("role") == "daemon"
        ),
        None,
    )
    if role is None:
        return []
    docs = [p.get("PolicyDocument", {}) for p in resources[role].get("Properties", {}).get("Policies", [])]
    for r in resources.values():
        if r.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            props = r.get("Properties", {})
            if {"Ref": role} in props.get("Roles", []):
                docs.append(props.get("PolicyDocument", {}))
    grants = []
    for doc in docs:
        for st in _alternatives(doc.get("Statement", [])):
            if not isinstance(st, dict) or st.get("Effect") != "Allow":
                continue
            actions = st.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            if not any(fnmatch.fnmatchcase("s3:ListBucket", a) for a in actions if isinstance(a, str)):
                continue
            prefixes = None
            for op, conds in (st.get("Condition") or {}).items():
                if op in ("StringLike", "StringEquals") and "s3:prefix" in conds:
                    want = conds["s3:prefix"]
                    prefixes = [want] if isinstance(want, str) else list(want)
            for res in _alternatives(st.get("Resource", [])):
                if not isinstance(res, str):
                    continue
                bucket = res if res == "*" else res.split(":::", 1)[-1]
                if "/" in bucket:
                    continue  # an object ARN: ListBucket needs the bucket's
                # ${Param} is whatever the stack was given: any name.
                glob = bucket
                while "${" in glob and "}" in glob.split("${", 1)[1]:
                    head, rest = glob.split("${", 1)
                    glob = head + "*" + rest.split("}", 1)[1]
                grants.append((glob, prefixes))
    return grants


class S3ListBucket:
    """WSGI middleware: a missing object reads as S3 answers it to a caller
    without s3:ListBucket (403 AccessDenied), unless the caller has it."""

    def __init__(self, app, iam_template):
        self.app = app
        self.iam_template = iam_template
        self.lock = threading.Lock()
        self.mode = "policy"
        self._cache = (None, [])  # (mtime, grants)

    def grants(self):
        try:
            mtime = os.stat(self.iam_template).st_mtime_ns
        except OSError:
            return []
        with self.lock:
            if self._cache[0] != mtime:
                try:
                    self._cache = (mtime, daemon_listbucket_grants(self.iam_template))
                except Exception as e:  # a broken template grants nothing
                    print(f"s3-listbucket: cannot read {self.iam_template}: {e}", file=sys.stderr)
                    self._cache = (mtime, [])
            return self._cache[1]

    def granted(self, bucket, key):
        with self.lock:
            mode = self.mode
        if mode != "policy":
            return mode == "true"
        return any(
            fnmatch.fnmatchcase(bucket, b)
            and (prefixes is None or any(fnmatch.fnmatchcase(key, p) for p in prefixes))
            for b, prefixes in self.grants()
        )

    @staticmethod
    def object_of(environ):
        """(bucket, key) of a path-style S3 object read, else None."""
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return None
        auth = environ.get("HTTP_AUTHORIZATION", "") + environ.get("QUERY_STRING", "")
        if "/s3/aws4_request" not in auth and "%2Fs3%2Faws4_request" not in auth:
            return None
        parts = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)
        if len(parts) != 2 or not parts[0] or not parts[1]:
            return None
        return parts[0], parts[1]

    def control(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            value = query.get("granted", [""])[0]
            if value not in ("true", "false", "policy"):
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"granted must be true, false or policy\n"]
            with self.lock:
                self.mode = value
        with self.lock:
            mode = self.mode
        grants = self.grants()
        text = f"mode={mode} template={os.path.abspath(self.iam_template)} grants={grants}\n"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text.encode()]

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "") == "/_lab/s3-listbucket":
            return self.control(environ, start_response)
        target = self.object_of(environ)
        if target is None:
            return self.app(environ, start_response)
        seen = {}

        def capture(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, headers
            return lambda _data: None

        result = self.app(environ, capture)
        chunks = iter(result)
        first = [] if "status" in seen else [next(chunks, b"")]
        if not seen.get("status", "").startswith("404"):
            start_response(seen["status"], seen["headers"])
            return _chain(first, chunks, result)
        body = b"".join(first) + b"".join(chunks)
        if hasattr(result, "close"):
            result.close()
        missing_key = environ["REQUEST_METHOD"] == "HEAD" or b"<Code>NoSuchKey</Code>" in body
        if missing_key and not self.granted(*target):
            denied = b"" if environ["REQUEST_METHOD"] == "HEAD" else S3_ACCESS_DENIED
            start_response(
                "403 Forbidden",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(denied)))],
            )
            return [denied]
        start_response(seen["status"], seen["headers"])
        return [body]


INSUFFICIENT_CAPACITY = (
    "Unable to provision requested ML compute capacity due to InsufficientInstanceCapacity error"
)


class SageMakerCapacity:
    """WSGI middleware: scale-ups refused for quota or capacity (see the module doc)."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.refuse = {}  # endpoint -> "quota" | "insufficient"
        self.failed = {}  # endpoint -> FailureReason DescribeEndpoint carries

    def control(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            endpoint = query.get("endpoint", [""])[0]
            mode = query.get("refuse", [""])[0]
            if not endpoint or mode not in ("quota", "insufficient", "none"):
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"endpoint=NAME and refuse=quota|insufficient|none are required\n"]
            with self.lock:
                if mode == "none":
                    self.refuse.pop(endpoint, None)
                else:
                    self.refuse[endpoint] = mode
        with self.lock:
            text = f"refuse={self.refuse} failure_reason={self.failed}\n"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text.encode()]

    @staticmethod
    def json_call(environ):
        """(operation, body as dict, raw body) of a SageMaker JSON call, else None."""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("SageMaker."):
            return None
        raw = read_body(environ)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        return target.split(".", 1)[1], body, raw

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "") == "/_lab/sagemaker-capacity":
            return self.control(environ, start_response)
        call = self.json_call(environ)
        if call is None:
            return self.app(environ, start_response)
        op, body, _raw = call
        endpoint = body.get("EndpointName", "") if isinstance(body, dict) else ""
        with self.lock:
            mode = self.refuse.get(endpoint)
            failed = self.failed.get(endpoint)
        if op == "UpdateEndpointWeightsAndCapacities" and mode == "quota":
            err = json.dumps(
                {
                    "__type": "ResourceLimitExceeded",
                    "message": "The account-level service limit 'ml.m5.large for endpoint usage' "
                    "is 1 Instances, with current utilization of 1 Instances and a request delta "
                    "of 2 Instances. Please use AWS Service Quotas to request an increase for "
                    "this quota.",
                }
            ).encode()
            start_response(
                "400 Bad Request",
                [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(err)))],
            )
            return [err]
        if op == "UpdateEndpointWeightsAndCapacities" and mode == "insufficient":
            with self.lock:
                self.failed[endpoint] = INSUFFICIENT_CAPACITY
            region = environ.get("HTTP_AUTHORIZATION", "").split("/")[2:3] or ["us-east-1"]
            ok = json.dumps(
                {"EndpointArn": f"arn:aws:sagemaker:{region[0]}:123456789012:endpoint/{endpoint}"}
            ).encode()
            start_response(
                "200 OK",
                [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(ok)))],
            )
            return [ok]
        if op != "DescribeEndpoint" or failed is None:
            return self.app(environ, start_response)

        def add_failure(doc):
            doc["FailureReason"] = failed

        return rewrite_json(self.app, environ, start_response, add_failure)


def _chain(first, rest, result):
    try:
        yield from first
        yield from rest
    finally:
        if hasattr(result, "close"):
            result.close()


def stop(signum: int, _frame: object) -> None:
    # Raised in the main thread, inside serve_forever: the loop unwinds and
    # the finally below closes the socket.
    sys.exit(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (port 0)")
    parser.add_argument(
        "--port-file", required=True, help="write the bound port here (atomically)"
    )
    parser.add_argument(
        "--iam-template",
        default=DEFAULT_IAM_TEMPLATE,
        help="the template whose daemon role decides whether a missing S3 object reads as 404 "
        "(s3:ListBucket granted) or 403 (default: deploy/cloudformation/iam.yaml)",
    )
    parser.add_argument(
        "--route53-metric-interval",
        type=float,
        default=1.0,
        help="publish AWS/Route53 HealthCheckStatus for every health check this often, in "
        "seconds (Route 53 does once a minute; 0: never)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no line per request (errors and tracebacks are still logged)",
    )
    args = parser.parse_args()
    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # The same app and handler as moto.server.main (moto 5.2.5).
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]
    server = make_server(
        args.host,
        0,
        Route53MetricsControl(
            S3ListBucket(
                SageMakerCapacity(
                    InferenceComponents(
                        InstancePools(
                            Route53Throttle(PresignedSts(LabQuotas(IamSimulator(app))))
                        )
                    )
                ),
                args.iam_template,
            )
        ),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    if args.route53_metric_interval > 0:
        threading.Thread(
            target=Route53StatusMetrics.run,
            args=(args.route53_metric_interval,),
            name="route53-metrics",
            daemon=True,
        ).start()
    try:
        port = server.port
        os.environ["MOTO_PORT"] = str(port)
        # The socket is listening already: a client that reads the file and
        # connects at once waits in the backlog until serve_forever runs.
        write_atomically(args.port_file, f"{port}\n")
        print(
            f"moto serving on http://{args.host}:{port} (MOTO_PORT={port})",
            file=sys.stderr,
            flush=True,
        )
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
