"""tests/boto3/invoke.py over TLS: the same InvokeEndpoint call and JSON
line, with the client configured as a user of a TLS router would:
verify= the router's CA bundle, and optionally a client certificate
(botocore Config(client_cert=(cert, key))) for mutual TLS. Run by
tests/router_tls.rs and tests/router_mtls.rs.

    invoke_tls.py --ca-bundle CA [--client-cert PEM --client-key PEM] <invoke.py's arguments>
"""

import argparse
import pathlib
import runpy
import sys

import boto3
from botocore.config import Config


def main():
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--ca-bundle", help="verify the router's certificate with this CA")
    p.add_argument("--client-cert", help="PEM client certificate (mutual TLS)")
    p.add_argument("--client-key", help="its PEM private key")
    args, rest = p.parse_known_args()

    plain_client = boto3.client

    def client(*a, **kw):
        kw["verify"] = args.ca_bundle if args.ca_bundle else None
        if args.client_cert:
            extra = Config(client_cert=(args.client_cert, args.client_key))
            kw["config"] = kw["config"].merge(extra) if kw.get("config") else extra
        return plain_client(*a, **kw)

    boto3.client = client
    sys.argv = [sys.argv[0]] + rest
    runpy.run_path(str(pathlib.Path(__file__).with_name("invoke.py")), run_name="__main__")


if __name__ == "__main__":
    main()
