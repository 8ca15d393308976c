"""One SageMaker runtime InvokeEndpointWithResponseStream call with a stock
boto3 client pointed at a failoverd router; reads every event and prints
the outcome as one JSON object on stdout: the parts received, and how the
stream ended (boto3 raises an EventStreamError for an in-band error event).
Run by tests/router_stream.rs with the lab's virtualenv.
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
    args = p.parse_args()

    client = boto3.client(
        "sagemaker-runtime",
        endpoint_url=args.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        ),
    )
    parts = []
    out = {}
    try:
        r = client.invoke_endpoint_with_response_stream(
            EndpointName=args.model, Body=b"{}", ContentType="application/json")
        out["headers"] = r["ResponseMetadata"]["HTTPHeaders"]
        out["content_type"] = r.get("ContentType")
        for event in r["Body"]:
            if "PayloadPart" in event:
                parts.append(event["PayloadPart"]["Bytes"].decode("utf-8", errors="replace"))
        out.update({"ok": True})
    except botocore.exceptions.ClientError as e:
        out.update({
            "ok": False,
            "exception": type(e).__name__,
            "code": e.response.get("Error", {}).get("Code"),
            "message": e.response.get("Error", {}).get("Message"),
            "status": e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
        })
    out["parts"] = parts
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
