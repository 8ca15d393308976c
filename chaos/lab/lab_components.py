"""SageMaker inference components for the lab, which moto does not have.

moto (5.2.5) answers SageMaker's endpoints, endpoint configs and models, but
no inference component call: `CreateInferenceComponent` and the rest end in
a 500 (not implemented). failoverd reads a component (`DescribeInferenceComponent`)
and sets its copy count (`UpdateInferenceComponentRuntimeConfig`) when it
prepares a region, and the lab provisions the components a configuration
maps. `InferenceComponents` is a WSGI middleware in front of moto's app
(chaos/lab/moto_server.py hooks it in) that answers SageMaker's JSON
protocol (`X-Amz-Target: SageMaker.<Operation>`) for:

- `CreateInferenceComponent`: on an endpoint moto has (and one of its
  production variants, when `VariantName` is given); `RuntimeConfig.CopyCount`
  copies (1 when left out). `Creating` (0 copies) until the delay has
  passed, then `InService` with its copies.
- `DescribeInferenceComponent`: the shape botocore's model gives
  (`RuntimeConfig.DesiredCopyCount` / `CurrentCopyCount`, `Specification`
  as a summary: a container's `Image` becomes `DeployedImage.SpecifiedImage`,
  `FailureReason`, `InferenceComponentStatus`, times as epoch seconds).
- `UpdateInferenceComponentRuntimeConfig`: `DesiredCopyCount` at once,
  `Updating` until the delay has passed, then `InService` with
  `CurrentCopyCount` there. One update at a time: a component that is not
  `InService` refuses another (ValidationException, the lab's wording).
- `ListInferenceComponents`: `NameContains`, `EndpointNameEquals`,
  `VariantNameEquals`, `StatusEquals`, `SortBy`/`SortOrder`, and
  `MaxResults`/`NextToken` pages.
- `DeleteInferenceComponent`: `Deleting` until the delay has passed, then gone.

State lives in memory, per account and region (the region is the request's
SigV4 scope, as moto reads it); `POST /moto-api/reset` clears it with moto's.
Errors have AWS's shape for SageMaker's JSON protocol (HTTP 400,
`{"__type": code, "message": text}`): an unknown component is
`ValidationException` "Could not find inference component "<arn>"." (the
wording SageMaker's users match on), a missing endpoint or variant, a
duplicate name, a bad name or count are `ValidationException` in the lab's
words.

What AWS does that the lab does not: placement on instances (copies need
room: CPU cores, accelerators and memory per copy; the lab places any
number at once), managed instance scaling, `Specifications` (several
instance types), `UpdateInferenceComponent` (a new specification), tags,
base components, and the minutes SageMaker takes (the lab's delay defaults
to 1 second).

Refusals, which a real account gives and moto cannot: `POST
/_lab/inference-components?component=NAME&refuse=quota|insufficient|none`
makes the next copy increases of component NAME (any region) fail as
SageMaker's scale-ups fail (the `/_lab/sagemaker-capacity` rules for
endpoints, in moto_server.py): `quota` answers the update 400
`ResourceLimitExceeded` (the error the API reference lists for
`UpdateInferenceComponentRuntimeConfig`); `insufficient` takes the update
(`DesiredCopyCount` as asked, `Updating`), then leaves the component
`InService` with its old `CurrentCopyCount` and the `FailureReason` an
endpoint gets ("Unable to provision requested ML compute capacity due to
InsufficientInstanceCapacity error"; what SageMaker writes on a component
was not checked); `none` ends both (the `FailureReason` stays, as SageMaker
keeps the last one). `POST /_lab/inference-components?delay=SECONDS` sets
the delay. `GET /_lab/inference-components` shows every component, the
refusals set and the delay, as JSON.
"""

import json
import re
import threading
import time
from urllib.parse import parse_qs

from moto.core import DEFAULT_ACCOUNT_ID
from moto.sagemaker.models import sagemaker_backends
from lab_wsgi import read_body

CONTROL_PATH = "/_lab/inference-components"
TARGET_PREFIX = "SageMaker."
OPERATIONS = (
    "CreateInferenceComponent",
    "DescribeInferenceComponent",
    "UpdateInferenceComponentRuntimeConfig",
    "ListInferenceComponents",
    "DeleteInferenceComponent",
)
# SageMaker's name rule for components (the API reference's pattern, 1 to 63).
NAME = re.compile(r"^[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?$")
INSUFFICIENT_CAPACITY = (
    "Unable to provision requested ML compute capacity due to InsufficientInstanceCapacity error"
)
JSON_TYPE = "application/x-amz-json-1.1"


class LabError(Exception):
    """An answer in SageMaker's error shape."""

    def __init__(self, code, message, status="400 Bad Request"):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def validation(message):
    return LabError("ValidationException", message)


class Component:
    """One inference component; `pending` is what happens at `until`."""

    def __init__(self, name, arn, endpoint, endpoint_arn, variant, spec, copies, now):
        self.name = name
        self.arn = arn
        self.endpoint = endpoint
        self.endpoint_arn = endpoint_arn
        self.variant = variant
        self.spec = spec
        self.current = 0
        self.desired = copies
        self.status = "Creating"
        self.failure_reason = None
        self.created = now
        self.modified = now
        self.until = None
        self.pending = "placed"  # placed | refused | deleted

    def settle(self, now):
        """Apply the transition whose time has come."""
        if self.until is None or now < self.until:
            return
        if self.pending == "placed":
            self.current = self.desired
        elif self.pending == "refused":
            self.failure_reason = INSUFFICIENT_CAPACITY
        if self.pending != "deleted":
            self.status = "InService"
        self.modified = self.until
        self.until = None

    def summary_spec(self):
        """`Specification` as DescribeInferenceComponent shows it."""
        out = {}
        spec = self.spec or {}
        for key in ("ModelName", "StartupParameters", "ComputeResourceRequirements",
                    "BaseInferenceComponentName"):
            if key in spec:
                out[key] = spec[key]
        container = spec.get("Container")
        if isinstance(container, dict):
            c = {k: container[k] for k in ("ArtifactUrl", "Environment") if k in container}
            if "Image" in container:
                c["DeployedImage"] = {
                    "SpecifiedImage": container["Image"],
                    "ResolvedImage": container["Image"],
                    "ResolutionTime": self.created,
                }
            out["Container"] = c
        return out

    def describe(self):
        out = {
            "InferenceComponentName": self.name,
            "InferenceComponentArn": self.arn,
            "EndpointName": self.endpoint,
            "EndpointArn": self.endpoint_arn,
            "Specification": self.summary_spec(),
            "RuntimeConfig": {
                "DesiredCopyCount": self.desired,
                "CurrentCopyCount": self.current,
            },
            "CreationTime": self.created,
            "LastModifiedTime": self.modified,
            "InferenceComponentStatus": self.status,
        }
        if self.variant is not None:
            out["VariantName"] = self.variant
        if self.failure_reason is not None:
            out["FailureReason"] = self.failure_reason
        return out

    def listed(self):
        return {
            "CreationTime": self.created,
            "InferenceComponentArn": self.arn,
            "InferenceComponentName": self.name,
            "EndpointArn": self.endpoint_arn,
            "EndpointName": self.endpoint,
            "VariantName": self.variant or "",
            "InferenceComponentStatus": self.status,
            "LastModifiedTime": self.modified,
        }


def region_of(environ):
    """The SigV4 scope's region (`Credential=KEY/DATE/REGION/sagemaker/...`)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/", auth)
    return m.group(1) if m else "us-east-1"


def count(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise validation(f"1 validation error detected: Value {value!r} at '{what}' "
                         "failed to satisfy constraint: Member must be an integer of at least 0")
    return value


class InferenceComponents:
    """WSGI middleware: SageMaker's inference components (module doc)."""

    def __init__(self, app, delay=1.0):
        self.app = app
        self.lock = threading.Lock()
        self.delay = delay
        self.state = {}  # (account, region) -> {name: Component}
        self.refuse = {}  # component name -> "quota" | "insufficient"

    # --- plumbing -------------------------------------------------------

    @staticmethod
    def reply(start_response, status, doc):
        body = json.dumps(doc).encode()
        start_response(status, [("Content-Type", JSON_TYPE), ("Content-Length", str(len(body))),
                                ("x-amzn-RequestId", "lab-inference-components")])
        return [body]

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == CONTROL_PATH:
            return self.control(environ, start_response)
        if path == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            with self.lock:
                self.state.clear()
                self.refuse.clear()
            return self.app(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        op = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
        if op not in OPERATIONS:
            return self.app(environ, start_response)
        raw = read_body(environ)
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return self.reply(start_response, "400 Bad Request",
                              {"__type": "SerializationException", "message": "the body is not a JSON object"})
        region = region_of(environ)
        try:
            with self.lock:
                doc = getattr(self, op)(DEFAULT_ACCOUNT_ID, region, body, time.time())
        except LabError as e:
            return self.reply(start_response, e.status, {"__type": e.code, "message": e.message})
        return self.reply(start_response, "200 OK", doc)

    def control(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            name = query.get("component", [""])[0]
            mode = query.get("refuse", [""])[0]
            delay = query.get("delay", [""])[0]
            with self.lock:
                if delay:
                    try:
                        self.delay = max(float(delay), 0.0)
                    except ValueError:
                        mode = "bad"
                if name or mode:
                    if not name or mode not in ("quota", "insufficient", "none"):
                        start_response("400 Bad Request", [("Content-Type", "text/plain")])
                        return [b"component=NAME and refuse=quota|insufficient|none, or delay=SECONDS\n"]
                    if mode == "none":
                        self.refuse.pop(name, None)
                    else:
                        self.refuse[name] = mode
        now = time.time()
        with self.lock:
            for comps in self.state.values():
                for c in comps.values():
                    c.settle(now)
            doc = {
                "delay": self.delay,
                "refuse": dict(self.refuse),
                "components": {
                    f"{account}/{region}": {name: c.describe() for name, c in comps.items()}
                    for (account, region), comps in self.state.items()
                },
            }
        body = json.dumps(doc).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    # --- state ----------------------------------------------------------

    def components(self, account, region, now):
        """The region's components as they stand `now` (the deleted gone)."""
        comps = self.state.setdefault((account, region), {})
        for name, c in list(comps.items()):
            c.settle(now)
            if c.pending == "deleted" and c.until is None:
                del comps[name]
        return comps

    def find(self, account, region, name, now):
        if not isinstance(name, str) or not name:
            raise validation("1 validation error detected: Value null at 'inferenceComponentName' "
                             "failed to satisfy constraint: Member must not be null")
        c = self.components(account, region, now).get(name)
        if c is None:
            arn = f"arn:aws:sagemaker:{region}:{account}:inference-component/{name}"
            raise validation(f'Could not find inference component "{arn}".')
        return c

    # --- operations -----------------------------------------------------

    def CreateInferenceComponent(self, account, region, body, now):
        name = body.get("InferenceComponentName")
        endpoint = body.get("EndpointName")
        if not isinstance(name, str) or not NAME.match(name) or len(name) > 63:
            raise validation(f"1 validation error detected: Value {name!r} at 'inferenceComponentName' "
                             "failed to satisfy constraint: Member must satisfy regular expression "
                             "pattern: ^[a-zA-Z0-9]([\\-a-zA-Z0-9]*[a-zA-Z0-9])?$")
        comps = self.components(account, region, now)
        arn = f"arn:aws:sagemaker:{region}:{account}:inference-component/{name}"
        if name in comps:
            raise validation(f'Cannot create already existing inference component "{arn}".')
        backend = sagemaker_backends[account][region]
        ep = backend.endpoints.get(endpoint) if isinstance(endpoint, str) else None
        if ep is None:
            raise validation(f'Could not find endpoint "arn:aws:sagemaker:{region}:{account}:endpoint/{endpoint}".')
        variant = body.get("VariantName")
        variants = [v.get("VariantName") for v in (ep.production_variants or []) if isinstance(v, dict)]
        if variant is not None and variant not in variants:
            raise validation(f'Could not find variant "{variant}" on endpoint "{endpoint}".')
        runtime = body.get("RuntimeConfig") or {}
        copies = count(runtime.get("CopyCount", 1), "runtimeConfig.copyCount")
        spec = body.get("Specification") or {}
        c = Component(name, arn, endpoint, ep.arn, variant if variant is not None else (variants[:1] or [None])[0],
                      spec, copies, now)
        c.until = now + self.delay
        comps[name] = c
        return {"InferenceComponentArn": arn}

    def DescribeInferenceComponent(self, account, region, body, now):
        return self.find(account, region, body.get("InferenceComponentName"), now).describe()

    def UpdateInferenceComponentRuntimeConfig(self, account, region, body, now):
        c = self.find(account, region, body.get("InferenceComponentName"), now)
        desired = body.get("DesiredRuntimeConfig")
        if not isinstance(desired, dict) or "CopyCount" not in desired:
            raise validation("1 validation error detected: Value null at 'desiredRuntimeConfig.copyCount' "
                             "failed to satisfy constraint: Member must not be null")
        copies = count(desired["CopyCount"], "desiredRuntimeConfig.copyCount")
        if c.status != "InService":
            raise validation(f'Cannot update in-progress inference component "{c.arn}" '
                             f"(it is {c.status}).")
        mode = self.refuse.get(c.name)
        if mode == "quota" and copies > c.current:
            raise LabError(
                "ResourceLimitExceeded",
                "The account-level service limit 'ml.g5.xlarge for endpoint usage' is 1 Instances, "
                "with current utilization of 1 Instances and a request delta of 1 Instances. Please "
                "use AWS Service Quotas to request an increase for this quota.",
            )
        c.desired = copies
        c.status = "Updating"
        c.modified = now
        c.pending = "refused" if mode == "insufficient" and copies > c.current else "placed"
        c.until = now + self.delay
        return {"InferenceComponentArn": c.arn}

    def ListInferenceComponents(self, account, region, body, now):
        comps = list(self.components(account, region, now).values())
        name = body.get("NameContains")
        if name:
            comps = [c for c in comps if name in c.name]
        for key, attr in (("EndpointNameEquals", "endpoint"), ("VariantNameEquals", "variant"),
                          ("StatusEquals", "status")):
            if body.get(key):
                comps = [c for c in comps if getattr(c, attr) == body[key]]
        sort = {"Name": lambda c: c.name, "Status": lambda c: c.status}.get(
            body.get("SortBy"), lambda c: c.created)
        comps.sort(key=sort, reverse=body.get("SortOrder", "Descending") == "Descending")
        try:
            start = int(body.get("NextToken") or 0)
        except ValueError:
            raise validation("invalid NextToken") from None
        size = body.get("MaxResults") or 10
        page = comps[start:start + size]
        out = {"InferenceComponents": [c.listed() for c in page]}
        if start + size < len(comps):
            out["NextToken"] = str(start + size)
        return out

    def DeleteInferenceComponent(self, account, region, body, now):
        c = self.find(account, region, body.get("InferenceComponentName"), now)
        c.status = "Deleting"
        c.pending = "deleted"
        c.modified = now
        c.until = now + self.delay
        return {}
