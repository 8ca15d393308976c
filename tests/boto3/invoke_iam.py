"""InvokeEndpoint through a failoverd router that identifies callers by AWS
IAM (`[router.iam]`, src/router/iam.rs), with the event hook a boto3 user
adds (docs/threat-model.md shows the same lines). Run by
tests/router_iam.rs with the lab's virtualenv.

The caller's identity is a role assumed in the lab's moto (`--role`): its
credentials presign `sts:GetCallerIdentity` with `x-failoverd-fleet`
signed, and the hook sends the presigned URL in `x-failoverd-iam`. Prints
one JSON object per call: the outcome as boto3 raises it.

    invoke_iam.py --endpoint-url ROUTER --sts-url MOTO --fleet F --role NAME [--calls N] [--tamper]
"""

import argparse
import base64
import json
import time

import boto3
import botocore.exceptions
from botocore.config import Config


# --- what a boto3 user adds (docs/threat-model.md) ---
def failoverd_iam(session, fleet, sts_endpoint_url=None):
    """An event hook for a sagemaker-runtime client: adds a token proving
    the caller's IAM identity, made again every 10 minutes."""
    sts = session.client("sts", endpoint_url=sts_endpoint_url)
    sts.meta.events.register(
        "before-sign.sts.GetCallerIdentity",
        lambda request, **_: request.headers.__setitem__("x-failoverd-fleet", fleet),
    )
    cached = {"token": None, "at": 0.0}

    def add_token(request, **_):
        if cached["token"] is None or time.time() - cached["at"] > 600:
            url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=900)
            cached["token"] = "v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
            cached["at"] = time.time()
        request.headers["x-failoverd-iam"] = cached["token"]

    return add_token
# --- end ---


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint-url", required=True)
    p.add_argument("--sts-url", required=True, help="the lab's moto (STS and IAM)")
    p.add_argument("--fleet", required=True)
    p.add_argument("--role", required=True, help="the role the caller assumes")
    p.add_argument("--model", default="m")
    p.add_argument("--calls", type=int, default=1)
    p.add_argument("--tamper", action="store_true",
                   help="send a token whose URL points elsewhere")
    args = p.parse_args()

    admin = boto3.Session(aws_access_key_id="AKIALABADMIN", aws_secret_access_key="x",
                          region_name="us-east-1")
    iam = admin.client("iam", endpoint_url=args.sts_url)
    try:
        arn = iam.create_role(RoleName=args.role, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        arn = iam.get_role(RoleName=args.role)["Role"]["Arn"]
    c = admin.client("sts", endpoint_url=args.sts_url).assume_role(
        RoleArn=arn, RoleSessionName="caller")["Credentials"]
    session = boto3.Session(aws_access_key_id=c["AccessKeyId"],
                            aws_secret_access_key=c["SecretAccessKey"],
                            aws_session_token=c["SessionToken"], region_name="us-east-1")

    runtime = session.client(
        "sagemaker-runtime", endpoint_url=args.endpoint_url,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                      connect_timeout=5, read_timeout=30))
    hook = failoverd_iam(session, args.fleet, sts_endpoint_url=args.sts_url)
    if args.tamper:
        def tampered(request, **kw):
            hook(request, **kw)
            url = base64.urlsafe_b64decode(request.headers["x-failoverd-iam"][3:] + "===").decode()
            url = url.replace(args.sts_url, "http://169.254.169.254", 1)
            request.headers["x-failoverd-iam"] = "v1." + base64.urlsafe_b64encode(
                url.encode()).decode().rstrip("=")
        runtime.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", tampered)
    else:
        runtime.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", hook)

    for _ in range(args.calls):
        try:
            r = runtime.invoke_endpoint(EndpointName=args.model, Body=b"{}",
                                        ContentType="application/json")
            out = {"ok": True, "status": r["ResponseMetadata"]["HTTPStatusCode"]}
        except botocore.exceptions.ClientError as e:
            out = {"ok": False, "exception": "ClientError",
                   "code": e.response["Error"]["Code"],
                   "message": e.response["Error"].get("Message"),
                   "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
