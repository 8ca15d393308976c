"""SageMaker instance pools, which moto does not have.

A production variant may name instance pools (`InstancePools`: up to five
instance types, `Priority` 1 the highest) instead of one `InstanceType`;
its instance count stays one total. SageMaker places new instances in the
highest-priority pool that has capacity and falls back to the next on
insufficient capacity; `DescribeEndpoint` reports each pool's current count
(`ProductionVariants[].InstancePools: [{InstanceType,
CurrentInstanceCount}]`), `DescribeEndpointConfig` the pools and their
priorities. moto 5 knows neither, so this WSGI middleware adds them to
moto's answers for the endpoints the lab names:

- `POST /_lab/instance-pools?endpoint=NAME&pools=T1,T2[&limit=T1:N,...][&region=R]`
  makes every production variant of endpoint NAME (in region R, any region
  when unset) run on pools T1, T2, ... in that priority order. Its current
  count (moto's `CurrentInstanceCount`, which moto sets at once to what was
  asked) is filled in priority order, each type up to its `limit` (no limit:
  all that is left), as SageMaker's fallback fills it: with `limit=T1:1`, a
  variant of 4 instances reads `T1 1, T2 3`. Instances no pool can hold are
  not there: `CurrentInstanceCount` drops to what the pools hold (SageMaker
  could not provision them). `pools=` (empty) ends it for NAME;
- `DescribeEndpointConfig` of the endpoint config named NAME (the lab names
  each endpoint config after its endpoint) lists the variant's
  `InstancePools` with their priorities instead of its `InstanceType`;
- `GET /_lab/instance-pools` lists what is set.

Not modelled: `VariantInstanceProvisionTimeoutInSeconds` (the fallback here
is at once), a pool's capacity that changes over time other than by a new
`POST`, scale-in order (the fill is recomputed from the total on every read,
which is the order SageMaker scales in: the lowest priority first), and
`ModelNameOverride`. Creating an endpoint config with `InstancePools` still
goes to moto (which would need an `InstanceType`): the lab's endpoints are
created with one type and told their pools here.
"""

import json
import threading
from urllib.parse import parse_qs
from lab_wsgi import read_body, rewrite_json


def _region(environ):
    # Credential scope: AWS4-HMAC-SHA256 Credential=AKID/20250101/REGION/sagemaker/aws4_request
    auth = environ.get("HTTP_AUTHORIZATION", "")
    parts = auth.split("Credential=", 1)[-1].split("/")
    return parts[2] if len(parts) > 3 else "us-east-1"


def fill(total, pools, limits):
    """[(type, count)] for `total` instances over `pools` (priority order),
    each up to its limit: SageMaker's fallback order."""
    out = []
    left = total
    for t in pools:
        n = left if limits.get(t) is None else min(left, limits[t])
        out.append((t, n))
        left -= n
    return out


class InstancePools:
    """WSGI middleware: instance pools on the endpoints the lab names (see the module doc)."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.pools = {}  # endpoint -> {"pools": [types], "limits": {type: n}, "region": r|None}

    def control(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
            endpoint = query.get("endpoint", [""])[0]
            pools = [t for t in query.get("pools", [""])[0].split(",") if t]
            limits = {}
            bad = not endpoint or len(pools) > 5
            for item in [x for x in query.get("limit", [""])[0].split(",") if x]:
                t, _, n = item.partition(":")
                if t not in pools or not n.isdigit():
                    bad = True
                else:
                    limits[t] = int(n)
            if bad:
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [
                    b"endpoint=NAME and pools=T1,T2 (at most 5) are required; "
                    b"limit=T:N,... names listed pools\n"
                ]
            with self.lock:
                if pools:
                    self.pools[endpoint] = {
                        "pools": pools,
                        "limits": limits,
                        "region": query.get("region", [None])[0] or None,
                    }
                else:
                    self.pools.pop(endpoint, None)
        with self.lock:
            text = json.dumps(self.pools, sort_keys=True) + "\n"
        start_response("200 OK", [("Content-Type", "application/json")])
        return [text.encode()]

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "") == "/_lab/instance-pools":
            return self.control(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target not in ("SageMaker.DescribeEndpoint", "SageMaker.DescribeEndpointConfig"):
            return self.app(environ, start_response)
        raw = read_body(environ)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        name_key = "EndpointName" if target.endswith("DescribeEndpoint") else "EndpointConfigName"
        name = body.get(name_key, "") if isinstance(body, dict) else ""
        with self.lock:
            told = self.pools.get(name)
        if told is None or told["region"] not in (None, _region(environ)):
            return self.app(environ, start_response)

        def endpoint(doc):
            for v in doc.get("ProductionVariants", []):
                if "CurrentInstanceCount" not in v:
                    continue
                placed = fill(v["CurrentInstanceCount"], told["pools"], told["limits"])
                v["InstancePools"] = [
                    {"InstanceType": t, "CurrentInstanceCount": n} for t, n in placed
                ]
                v["CurrentInstanceCount"] = sum(n for _, n in placed)

        def config(doc):
            for v in doc.get("ProductionVariants", []):
                if "InstanceType" not in v:
                    continue
                del v["InstanceType"]
                v["InstancePools"] = [
                    {"InstanceType": t, "Priority": i + 1} for i, t in enumerate(told["pools"])
                ]

        return rewrite_json(
            self.app, environ, start_response, endpoint if name_key == "EndpointName" else config
        )
