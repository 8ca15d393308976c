"""One SageMaker runtime InvokeEndpointAsync call with a stock boto3 client
pointed at a failoverd router, as a user makes it: the payload is put in
S3 first (an S3 client at --s3-endpoint), then `invoke_endpoint_async`
names it. Prints the outcome as one JSON object on stdout: the answer
(status, InferenceId, OutputLocation, FailureLocation, headers), then the
result read back from OutputLocation (polled, at most --wait seconds).
Run by tests/router_async.rs with the lab's virtualenv.
"""

import argparse
import json
import sys
import time

import boto3
import botocore.exceptions
from botocore.config import Config


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint-url", required=True)
    p.add_argument("--s3-endpoint", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--model", default="default")
    p.add_argument("--inference-id")
    p.add_argument("--wait", type=float, default=30)
    args = p.parse_args()

    creds = dict(region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing")
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=5, read_timeout=60)
    s3 = boto3.client("s3", endpoint_url=args.s3_endpoint, config=config, **creds)
    runtime = boto3.client("sagemaker-runtime", endpoint_url=args.endpoint_url,
                           config=config, **creds)
    s3.put_object(Bucket=args.bucket, Key=args.key, Body=b'{"inputs": "hello"}',
                  ContentType="application/json")
    kwargs = {
        "EndpointName": args.model,
        "InputLocation": f"s3://{args.bucket}/{args.key}",
        "ContentType": "application/json",
        "Accept": "application/json",
        "RequestTTLSeconds": 600,
        "InvocationTimeoutSeconds": 60,
    }
    if args.inference_id:
        kwargs["InferenceId"] = args.inference_id
    out = {}
    try:
        r = runtime.invoke_endpoint_async(**kwargs)
    except botocore.exceptions.ClientError as e:
        out.update({
            "ok": False,
            "exception": type(e).__name__,
            "code": e.response.get("Error", {}).get("Code"),
            "message": e.response.get("Error", {}).get("Message"),
            "status": e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
        })
        json.dump(out, sys.stdout)
        print()
        return
    out.update({
        "ok": True,
        "status": r["ResponseMetadata"]["HTTPStatusCode"],
        "headers": r["ResponseMetadata"]["HTTPHeaders"],
        "inference_id": r.get("InferenceId"),
        "output_location": r.get("OutputLocation"),
        "failure_location": r.get("FailureLocation"),
    })
    loc = r.get("OutputLocation") or ""
    if loc.startswith("s3://"):
        bucket, _, key = loc[len("s3://"):].partition("/")
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            try:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                out["result"] = json.loads(body)
                break
            except s3.exceptions.NoSuchKey:
                time.sleep(0.1)
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
