"""What the lab's WSGI middlewares in front of moto share.

`read_body`: the request's body, read once and put back, so that a
middleware can look at a call and still hand it to moto untouched.
`rewrite_json`: call moto, then edit its 200 JSON answer (the lab adds
what moto does not know: a `FailureReason`, instance pools).
"""

import io
import json


def read_body(environ):
    """The request body (bytes); `wsgi.input` is left readable again."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    return raw


def rewrite_json(app, environ, start_response, edit):
    """Call `app` (moto), then `edit` its 200 JSON answer in place; any
    other answer, or one that is not JSON, goes out as moto gave it."""
    seen = {}

    def capture(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers
        return lambda _data: None

    result = app(environ, capture)
    try:
        data = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    if seen.get("status", "").startswith("200"):
        try:
            doc = json.loads(data)
            edit(doc)
            data = json.dumps(doc).encode()
        except ValueError:
            pass
    headers = [(k, v) for k, v in seen["headers"] if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(data))))
    start_response(seen["status"], headers)
    return [data]
