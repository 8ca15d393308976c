"""Service Quotas' applied SageMaker quotas, which moto does not have.

moto's Service Quotas knows the `vpc` service code only, and has no
ListServiceQuotas at all. failoverd's standby readiness (docs/readiness.md)
reads SageMaker's applied endpoint-usage quotas with `ListServiceQuotas`
(service code `sagemaker`) and compares `<instance type> for endpoint usage`
with what scaling the standby up to the measured need would use. This WSGI
middleware answers that call the way Service Quotas documents it (JSON 1.1,
`X-Amz-Target: ServiceQuotasV20190624.ListServiceQuotas`; `Quotas` with
`ServiceCode`, `QuotaCode`, `QuotaName`, `Value`, ...; `MaxResults` and
`NextToken` paging) from a table the lab controls:

- every region starts with the same values: 20 for each listed instance
  type's endpoint usage, plus training- and processing-job quotas of the
  same types and a few non-instance quotas (so the reader must pick the
  endpoint-usage ones by name), more than one page of 100;
- `POST /_lab/service-quotas?region=R&instance_type=T&value=V` sets the
  applied endpoint-usage quota of type T in region R (a lab test sets one
  low); `value=default` puts it back; `GET /_lab/service-quotas?region=R`
  lists the endpoint-usage values.

Not checked against AWS: the quota codes (made up, stable per name), the
order of the list, and which quotas a real account lists (AWS lists only
quotas with an applied value available). Other Service Quotas calls go to
moto unchanged.
"""

import hashlib
import json
import threading
from urllib.parse import parse_qs
from lab_wsgi import read_body

TARGET = "ServiceQuotasV20190624.ListServiceQuotas"
ACCOUNT = "123456789012"
DEFAULT_VALUE = 20.0

INSTANCE_TYPES = [
    f"ml.{family}.{size}"
    for family in ("m5", "c5", "g5", "p4d", "inf2", "t2", "r5", "g4dn")
    for size in ("large", "xlarge", "2xlarge", "4xlarge", "12xlarge")
]
OTHER_QUOTAS = [
    ("Number of endpoints", 100.0),
    ("Total number of instances across all endpoints", 100.0),
    ("Number of models", 1000.0),
]


def _code(name):
    return "L-" + hashlib.sha1(name.encode()).hexdigest()[:8].upper()


def _region(environ):
    # Credential scope: AWS4-HMAC-SHA256 Credential=AKID/20250101/REGION/servicequotas/aws4_request
    auth = environ.get("HTTP_AUTHORIZATION", "")
    parts = auth.split("Credential=", 1)[-1].split("/")
    return parts[2] if len(parts) > 3 else "us-east-1"


class LabQuotas:
    """WSGI middleware: ListServiceQuotas for SageMaker (see the module doc)."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.endpoint_usage = {}  # (region, instance type) -> value

    def quotas(self, region):
        with self.lock:
            overrides = dict(self.endpoint_usage)
        out = []
        for t in INSTANCE_TYPES:
            for use in ("endpoint", "training job", "processing job"):
                name = f"{t} for {use} usage"
                value = DEFAULT_VALUE
                if use == "endpoint":
                    value = overrides.get((region, t), DEFAULT_VALUE)
                out.append((name, value))
        out.extend(OTHER_QUOTAS)
        return [
            {
                "ServiceCode": "sagemaker",
                "ServiceName": "Amazon SageMaker",
                "QuotaArn": f"arn:aws:servicequotas:{region}:{ACCOUNT}:sagemaker/{_code(n)}",
                "QuotaCode": _code(n),
                "QuotaName": n,
                "Value": v,
                "Unit": "None",
                "Adjustable": True,
                "GlobalQuota": False,
            }
            for n, v in out
        ]

    def control(self, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        region = query.get("region", [""])[0]
        if environ.get("REQUEST_METHOD") == "POST":
            t = query.get("instance_type", [""])[0]
            value = query.get("value", [""])[0]
            try:
                parsed = None if value == "default" else float(value)
            except ValueError:
                parsed = -1.0
            if not region or not t or (parsed is not None and parsed < 0):
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"region=R, instance_type=T and value=N|default are required\n"]
            with self.lock:
                if parsed is None:
                    self.endpoint_usage.pop((region, t), None)
                else:
                    self.endpoint_usage[(region, t)] = parsed
        listed = {
            q["QuotaName"]: q["Value"]
            for q in self.quotas(region or "us-east-1")
            if q["QuotaName"].endswith(" for endpoint usage")
        }
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(listed, sort_keys=True).encode() + b"\n"]

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "") == "/_lab/service-quotas":
            return self.control(environ, start_response)
        if environ.get("HTTP_X_AMZ_TARGET", "") != TARGET:
            return self.app(environ, start_response)
        raw = read_body(environ)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        if body.get("ServiceCode") != "sagemaker":
            return self.app(environ, start_response)
        quotas = self.quotas(_region(environ))
        size = max(1, min(int(body.get("MaxResults") or 100), 100))
        start = int(body.get("NextToken") or 0)
        page = {"Quotas": quotas[start : start + size]}
        if start + size < len(quotas):
            page["NextToken"] = str(start + size)
        data = json.dumps(page).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))],
        )
        return [data]
