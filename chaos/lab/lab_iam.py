"""IAM's policy simulator (`SimulatePrincipalPolicy`), which moto does not have.

failoverd's standby readiness asks IAM's simulator, every round, whether
the daemons' role may make the calls prepare would make on the standby's
endpoints and components (docs/readiness.md, "IAM dry run"). moto has
IAM's users, roles and policies (the lab deploys deploy/cloudformation/
iam.yaml through moto's CloudFormation) but no simulator. This WSGI
middleware answers `Action=SimulatePrincipalPolicy` (IAM's query protocol,
form-encoded POST) from moto's own IAM state:

- the policy source is a role or user of moto's IAM, found by ARN (else
  404 `NoSuchEntity`, as IAM answers);
- its policies are its inline policies and attached managed policies (a
  user's groups' too), evaluated with moto's own statement matcher
  (`moto.iam.access_control.IAMPolicy`: `Action`/`NotAction`, `Resource`
  with `*` wildcards); an explicit Deny wins, then an Allow, else
  `implicitDeny`, as IAM's evaluation logic has it; a permissions boundary,
  when set, must allow too;
- every action is judged on every resource (`ResourceArns`, `*` when none),
  with `MaxItems` / `Marker` paging (100 a page by default).

`POST /_lab/iam-simulator?deny=ACTION` makes the simulator deny ACTION
(`implicitDeny`) whatever the policies say, `deny=` clears it: a test that
must not edit the shipped template uses it. `GET` lists what is set.

Not reproduced: condition keys (a statement with a `Condition` is judged
by moto's matcher, which knows a few trust-policy operators only),
`NotResource`, resource policies, SCPs, `MatchedStatements` and
`MissingContextValues` (answered empty). Other IAM calls go to moto.
"""

import json
import threading
import traceback
import uuid
from urllib.parse import parse_qs
from xml.sax.saxutils import escape
from lab_wsgi import read_body

ACCOUNT = "123456789012"
ACTION = "SimulatePrincipalPolicy"


def _members(form, name):
    """`Name.member.N` values of a query-protocol list, in N order."""
    prefix = f"{name}.member."
    items = []
    for k, v in form.items():
        if k.startswith(prefix) and k[len(prefix) :].isdigit():
            items.append((int(k[len(prefix) :]), v[0]))
    return [v for _, v in sorted(items)]


def _backend():
    from moto.iam.models import iam_backends

    accounts = iam_backends[ACCOUNT]
    for key in ("aws", "global"):
        try:
            return accounts[key]
        except KeyError:
            continue
    raise KeyError("no IAM backend for the lab's account")


def _documents(backend, principal):
    """(identity policy documents, boundary document or None) of `principal`."""
    entity = None
    for role in backend.get_roles():
        if role.arn == principal:
            entity = role
    if entity is None:
        for user in backend.users.values():
            if user.arn == principal:
                entity = user
    if entity is None:
        return None
    # A role's inline policies: strings from PutRolePolicy, dicts from a
    # CloudFormation role's `Policies` (moto keeps the template's object).
    docs = [json.dumps(d) if isinstance(d, dict) else d for d in entity.policies.values()]
    docs += [p for p in entity.managed_policies.values()]
    for group in getattr(backend, "groups", {}).values():
        if entity in getattr(group, "users", []):
            docs += [
                json.dumps(d) if isinstance(d, dict) else d for d in group.policies.values()
            ]
            docs += [p for p in group.managed_policies.values()]
    boundary = None
    arn = getattr(entity, "permissions_boundary_arn", None) or getattr(
        entity, "permissions_boundary", None
    )
    if arn:
        boundary = backend.get_policy(arn)
    return docs, boundary


def _decide(docs, boundary, action, resource):
    from moto.iam.access_control import IAMPolicy, PermissionResult

    allowed = False
    for doc in docs:
        result = IAMPolicy(doc).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            return "explicitDeny"
        if result == PermissionResult.PERMITTED:
            allowed = True
    if allowed and boundary is not None:
        result = IAMPolicy(boundary).is_action_permitted(action, resource)
        if result != PermissionResult.PERMITTED:
            return "implicitDeny"
    return "allowed" if allowed else "implicitDeny"


def _error(start_response, status, code, message):
    body = (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()
    start_response(status, [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


class IamSimulator:
    """WSGI middleware: SimulatePrincipalPolicy (see the module doc)."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.denied = set()

    def control(self, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if environ.get("REQUEST_METHOD") == "POST":
            deny = query.get("deny", [None])[0]
            if deny is None:
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"deny=ACTION (or deny= to clear) is required\n"]
            with self.lock:
                if deny:
                    self.denied.add(deny)
                else:
                    self.denied.clear()
        with self.lock:
            text = "".join(f"{a}\n" for a in sorted(self.denied))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text.encode()]

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "") == "/_lab/iam-simulator":
            return self.control(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST" or "/iam/aws4_request" not in environ.get(
            "HTTP_AUTHORIZATION", ""
        ):
            return self.app(environ, start_response)
        raw = read_body(environ)
        form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        if form.get("Action", [""])[0] != ACTION:
            return self.app(environ, start_response)
        principal = form.get("PolicySourceArn", [""])[0]
        actions = _members(form, "ActionNames")
        resources = _members(form, "ResourceArns") or ["*"]
        if not principal or not actions:
            return _error(
                start_response,
                "400 Bad Request",
                "ValidationError",
                "PolicySourceArn and ActionNames are required",
            )
        try:
            found = _documents(_backend(), principal)
        except KeyError:
            found = None
        if found is None:
            return _error(
                start_response,
                "404 Not Found",
                "NoSuchEntity",
                f"The entity {principal} cannot be found.",
            )
        docs, boundary = found
        with self.lock:
            denied = set(self.denied)
        results = []
        try:
            for action in actions:
                for resource in resources:
                    if action in denied:
                        decision = "implicitDeny"
                    else:
                        decision = _decide(docs, boundary, action, resource)
                    results.append((action, resource, decision))
        except Exception as e:  # the lab's own fault: say so, as XML
            traceback.print_exc()
            return _error(
                start_response, "500 Internal Server Error", "ServiceFailure", f"lab_iam: {e!r}"
            )
        try:
            size = max(1, min(int(form.get("MaxItems", ["100"])[0]), 1000))
            start = int(form.get("Marker", ["0"])[0] or 0)
        except ValueError:
            return _error(start_response, "400 Bad Request", "InvalidInput", "bad MaxItems or Marker")
        page = results[start : start + size]
        more = start + size < len(results)
        members = "".join(
            "<member>"
            f"<EvalActionName>{escape(a)}</EvalActionName>"
            f"<EvalResourceName>{escape(r)}</EvalResourceName>"
            f"<EvalDecision>{d}</EvalDecision>"
            "<MatchedStatements/><MissingContextValues/>"
            "</member>"
            for a, r, d in page
        )
        marker = f"<Marker>{start + size}</Marker>" if more else ""
        body = (
            '<SimulatePrincipalPolicyResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
            "<SimulatePrincipalPolicyResult>"
            f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>{marker}"
            f"<EvaluationResults>{members}</EvaluationResults>"
            "</SimulatePrincipalPolicyResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</SimulatePrincipalPolicyResponse>"
        ).encode()
        start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
        return [body]
