"""One SageMaker runtime InvokeEndpoint call with a stock boto3 client,
pointed at a failoverd router with endpoint_url; prints the outcome as one
JSON object on stdout. Run by tests/router_boto3.rs with the lab's
virtualenv (chaos/.venv, or FAILOVERD_LAB_VENV).

The client is configured the way a user would: dummy credentials (the
router does not check SigV4), the region, and retries off so that each
error is seen once, as boto3 raises it (--retries default keeps boto3's
own retry configuration, which resends 5xx answers by itself).
"""

import argparse
import json
import sys

import boto3
import botocore.exceptions
from botocore.config import Config


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint-url", required=True)
    p.add_argument("--model", default="default")
    p.add_argument("--size", type=int, default=16, help="body bytes")
    p.add_argument("--content-type", default="application/json")
    p.add_argument("--accept")
    p.add_argument("--custom-attributes")
    p.add_argument("--body", help="the body as text (instead of --size bytes)")
    p.add_argument("--retries", default="1",
                   help="boto3's total_max_attempts, or 'default' for its own")
    # The other InvokeEndpoint parameters, by their boto3 names.
    for name in ("TargetModel", "TargetVariant", "TargetContainerHostname",
                 "InferenceId", "EnableExplanations", "InferenceComponentName",
                 "SessionId"):
        p.add_argument("--" + name, dest=name)
    args = p.parse_args()

    client = boto3.client(
        "sagemaker-runtime",
        endpoint_url=args.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            retries=None if args.retries == "default"
            else {"total_max_attempts": int(args.retries), "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )
    kwargs = {
        "EndpointName": args.model,
        "Body": args.body.encode() if args.body is not None else b"x" * args.size,
        "ContentType": args.content_type,
    }
    for name in ("TargetModel", "TargetVariant", "TargetContainerHostname",
                 "InferenceId", "EnableExplanations", "InferenceComponentName",
                 "SessionId"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.accept:
        kwargs["Accept"] = args.accept
    if args.custom_attributes:
        kwargs["CustomAttributes"] = args.custom_attributes

    try:
        r = client.invoke_endpoint(**kwargs)
        body = r["Body"].read()
        out = {
            "ok": True,
            "status": r["ResponseMetadata"]["HTTPStatusCode"],
            "request_id": r["ResponseMetadata"].get("RequestId"),
            "content_type": r.get("ContentType"),
            "invoked_production_variant": r.get("InvokedProductionVariant"),
            "custom_attributes": r.get("CustomAttributes"),
            "new_session_id": r.get("NewSessionId"),
            "closed_session_id": r.get("ClosedSessionId"),
            "retry_attempts": r["ResponseMetadata"].get("RetryAttempts"),
            "headers": r["ResponseMetadata"].get("HTTPHeaders", {}),
            "body_bytes": len(body),
            "body": body[:4096].decode("utf-8", errors="replace"),
        }
    except botocore.exceptions.ClientError as e:
        resp = e.response
        out = {
            "ok": False,
            # The class boto3 raised: a modeled exception
            # (client.exceptions.ModelError...) or plain ClientError.
            "exception": type(e).__name__,
            "modeled": any(
                isinstance(e, getattr(client.exceptions, name))
                for name in ("ModelError", "ModelNotReadyException", "ValidationError",
                             "ServiceUnavailable", "InternalFailure",
                             "InternalDependencyException")
            ),
            "code": resp.get("Error", {}).get("Code"),
            "message": resp.get("Error", {}).get("Message"),
            "status": resp.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            "original_status_code": resp.get("OriginalStatusCode"),
            "original_message": resp.get("OriginalMessage"),
            "log_stream_arn": resp.get("LogStreamArn"),
            "headers": resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}),
            "retry_attempts": resp.get("ResponseMetadata", {}).get("RetryAttempts"),
        }
    except botocore.exceptions.BotoCoreError as e:
        out = {"ok": False, "exception": type(e).__name__, "message": str(e)}
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
