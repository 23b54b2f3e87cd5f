"""moto_server with fixes to its IAM enforcement: it accepts the AWS SDK for Rust's
signatures of form-encoded requests, matches "?" in policies, and authorizes Secrets
Manager requests against the secret and its resource policy; and a deleted ElastiCache
cluster goes away after a while, as on AWS.

Started by scripts/stack in place of `python3 -m moto.server`; takes the same arguments.

Why: with IAM enforcement on (INITIAL_NO_AUTH_ACTION_COUNT), moto recomputes each
request's SigV4 signature. For form-encoded bodies (the Query protocol of IAM, STS and
ElastiCache) the web server has already parsed the body, so moto re-encodes the parsed
parameters the way botocore does, a space as "+". The Rust SDK encodes a space as
"%20", as AWS's own SigV4 examples do; both are valid and AWS signs the bytes it was
sent. Every IAM call with a space in a value (a role's or policy's Description) then
fails with SignatureDoesNotMatch (HTTP 403). Checked against moto 5.2.1 and 5.2.5.

The fix: when the check fails for a form-encoded request, check it once more with the
body encoded as the Rust SDK does (percent-encoding, "%20" for a space). A wrong key or
a tampered request still fails both checks. If moto changes the internals this relies
on, the fix is left out with a warning, and moto runs as it is.

Policies: moto matches a statement's Action and Resource by turning "*" into ".*" and
using the rest as a regular expression. A "?" (one character on AWS, as in a secret's
ARN ending in "-??????") makes every request the policy is checked for fail with HTTP
500. The fix matches "*" and "?" as AWS does and everything else literally.

Secrets Manager: moto authorizes a request against the resource its service's responses
determine, and Secrets Manager's determine none, so every request is checked against
"*": a policy whose Resource is a secret's ARN refuses even that secret. A secret's
resource policy is stored but never evaluated. The fix: a request whose SecretId names
an existing secret is checked against the secret's ARN (any other request against "*"),
and the secret's resource policy is evaluated as AWS does within one account: a
matching Deny refuses whatever the identity policies allow, a matching Allow permits
what none of them allows. Conditions are evaluated only on aws:PrincipalArn (the
String* and Arn* operators); a statement with any other condition counts if it is a
Deny and not if it is an Allow. A refused Secrets Manager request gets the service's
AccessDeniedException (JSON, HTTP 400) in place of moto's XML error, which an SDK
speaking Secrets Manager's JSON protocol cannot parse.

These fixes, too, are left out with a warning if moto's internals changed.

ElastiCache: moto marks a deleted cluster `deleting` and keeps it so for ever, its id
taken: a tenant rolled back or destroyed could never get its cluster again, where AWS
frees the id once the deletion is done (minutes). The fix: a cluster deleted is gone
MOTO_CACHE_CLUSTER_DELETE_SECONDS (default 10) after its DeleteCacheCluster, its tags
with it; until then it is listed as `deleting`, as on AWS.

And one more: requests are answered one at a time. moto's server is threaded, but its
in-memory backends are not safe for concurrent use: a response that lists what an
account holds (GetAccountAuthorizationDetails, ListRoles, ...) is serialized from the
backend's own dictionaries, and a create or delete in another thread at that moment
fails it with "dictionary changed size during iteration" (HTTP 500), every retry alike
while other callers keep working. The lock costs no throughput a caller could see:
moto's handlers hold the interpreter lock anyway.
"""

import json
import os
import re
import sys
import threading
import time
from urllib.parse import quote, urlencode


def accept_percent_encoded_form_bodies() -> None:
    try:
        from moto.iam.access_control import IAMRequestBase
    except ImportError as e:
        print(f"moto_server.py: signature fix left out: {e}", file=sys.stderr)
        return
    check = getattr(IAMRequestBase, "check_signature", None)
    if check is None or not hasattr(IAMRequestBase, "_create_aws_request"):
        print("moto_server.py: signature fix left out: moto's IAMRequestBase changed",
              file=sys.stderr)
        return

    def check_signature(self) -> None:
        try:
            check(self)
        except Exception:
            body, data = getattr(self, "_body", None), getattr(self, "_data", None)
            if body or not isinstance(data, dict) or not data:
                raise
            self._body = urlencode(data, doseq=True, quote_via=quote).encode()
            try:
                check(self)
            finally:
                self._body = body

    IAMRequestBase.check_signature = check_signature


def match_wildcards_as_aws_does() -> None:
    """A policy's Action and Resource match with "*" and "?" as the only wildcards."""
    try:
        from moto.iam.access_control import IAMPolicyStatement
    except ImportError as e:
        print(f"moto_server.py: wildcard fix left out: {e}", file=sys.stderr)
        return
    if not isinstance(IAMPolicyStatement.__dict__.get("_match"), staticmethod):
        print("moto_server.py: wildcard fix left out: moto's IAMPolicyStatement "
              "changed", file=sys.stderr)
        return

    def match(pattern: str, string: str):
        return re.fullmatch(wildcard_regex(pattern), string, re.DOTALL)

    IAMPolicyStatement._match = staticmethod(match)


def wildcard_regex(pattern: str) -> str:
    return re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")


def wildcard_match(pattern: str, string: str, ignore_case: bool = False) -> bool:
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.fullmatch(wildcard_regex(pattern), string, flags) is not None


def arn_match(pattern: str, arn: str) -> bool:
    # ArnEquals and ArnLike alike: each of the six parts is matched on its own.
    parts, arn_parts = pattern.split(":", 5), arn.split(":", 5)
    return len(parts) == len(arn_parts) == 6 and all(
        wildcard_match(p, a) for p, a in zip(parts, arn_parts))


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# Condition operators on aws:PrincipalArn: (match function, negated)
CONDITION_OPERATORS = {
    "StringEquals": (lambda p, v: p == v, False),
    "StringNotEquals": (lambda p, v: p == v, True),
    "StringLike": (wildcard_match, False),
    "StringNotLike": (wildcard_match, True),
    "ArnEquals": (arn_match, False),
    "ArnNotEquals": (arn_match, True),
    "ArnLike": (arn_match, False),
    "ArnNotLike": (arn_match, True),
}


def resource_policy_statement_applies(statement, action, resource, caller):
    """True, False, or None when the statement uses something not supported here.

    caller: {"arns": the ARNs naming the caller (user, or role and role session),
    "principal_arn": the value of aws:PrincipalArn, "account", "partition"}.
    """
    if not isinstance(statement, dict):
        return None
    if "Principal" in statement or "NotPrincipal" in statement:
        named = statement.get("Principal", statement.get("NotPrincipal"))
        if named == "*":
            names = ["*"]
        elif isinstance(named, dict):
            names = as_list(named.get("AWS", []))
        else:
            return None
        account = caller["account"]
        effect = statement.get("Effect")
        hit = False
        for name in names:
            if not isinstance(name, str):
                return None
            if name == "*" or name in caller["arns"]:
                hit = True
            elif name in (account, f"arn:{caller['partition']}:iam::{account}:root"):
                # The account: a Deny applies to all its principals, an Allow only
                # delegates to their identity policies.
                hit = hit or effect != "Allow" or "NotPrincipal" in statement
        if hit == ("NotPrincipal" in statement):
            return False
    else:
        return None
    if "Action" in statement or "NotAction" in statement:
        patterns = as_list(statement.get("Action", statement.get("NotAction")))
        hit = any(isinstance(p, str) and wildcard_match(p, action, ignore_case=True)
                  for p in patterns)
        if hit == ("NotAction" in statement):
            return False
    else:
        return None
    if "Resource" in statement or "NotResource" in statement:
        patterns = as_list(statement.get("Resource", statement.get("NotResource")))
        hit = any(isinstance(p, str) and wildcard_match(p, resource) for p in patterns)
        if hit == ("NotResource" in statement):
            return False
    condition = statement.get("Condition", {})
    if not isinstance(condition, dict):
        return None
    result = True
    for operator, block in condition.items():
        if operator not in CONDITION_OPERATORS or not isinstance(block, dict):
            return None
        matches, negated = CONDITION_OPERATORS[operator]
        for key, values in block.items():
            if key.lower() != "aws:principalarn":
                return None
            hit = any(matches(str(v), caller["principal_arn"]) for v in as_list(values))
            result = result and hit != negated
    return result


def authorize_secrets_by_arn_and_resource_policy() -> None:
    """Secrets Manager requests are authorized against the secret they name, and the
    secret's resource policy counts (see the module's docstring)."""
    try:
        from moto.core.exceptions import JsonRESTError
        from moto.iam.access_control import IAMPolicy, IAMRequest, PermissionResult
        from moto.secretsmanager.models import secretsmanager_backends
        from moto.secretsmanager.responses import SecretsManagerResponse
    except ImportError as e:
        print(f"moto_server.py: secret authorization left out: {e}", file=sys.stderr)
        return
    check = getattr(IAMRequest, "check_action_permitted", None)
    refuse = getattr(IAMRequest, "_raise_access_denied", None)
    if (check is None or refuse is None
            or hasattr(SecretsManagerResponse, "_determine_resource")
            or not hasattr(SecretsManagerResponse, "call_action")
            or not hasattr(SecretsManagerResponse, "_get_param")):
        print("moto_server.py: secret authorization left out: moto's IAMRequest or "
              "SecretsManagerResponse changed", file=sys.stderr)
        return

    def determine_resource(self) -> str:
        try:
            secret_id = self._get_param("SecretId")
            if isinstance(secret_id, str) and secret_id:
                secret = secretsmanager_backends[self.current_account][self.region] \
                    .secrets.get(secret_id)
                if secret is not None:
                    return secret.arn
        except Exception:
            pass
        return "*"

    def find_secret(resource: str):
        parts = resource.split(":", 6)
        if len(parts) < 7 or parts[2] != "secretsmanager" or parts[5] != "secret":
            return None
        try:
            return secretsmanager_backends[parts[4]][parts[3]].secrets.get(resource)
        except Exception:
            return None

    def caller_of(request) -> dict:
        key = request._access_key
        arns, principal_arn = [key.arn], key.arn
        try:
            if hasattr(key, "_owner_role_name"):
                principal_arn = key.backend.get_role(key._owner_role_name).arn
            elif hasattr(key, "_owner_user_name"):
                principal_arn = key.backend.get_user(key._owner_user_name).arn
        except Exception:
            pass
        if principal_arn not in arns:
            arns.append(principal_arn)
        return {"arns": arns, "principal_arn": principal_arn, "account": key.account_id,
                "partition": key.partition}

    def check_action_permitted(self, resource: str) -> None:
        secret = find_secret(resource) if self._service == "secretsmanager" else None
        if secret is None:
            return check(self, resource)
        self._secret_resource = resource
        if getattr(secret, "policy", None) is None:
            return check(self, resource)
        try:
            statements = as_list(json.loads(secret.policy)["Statement"])
        except Exception:
            statements = [None]  # unreadable: refuse
        caller = caller_of(self)
        allowed = False
        for statement in statements:
            applies = resource_policy_statement_applies(
                statement, self._action, resource, caller)
            effect = statement.get("Effect") if isinstance(statement, dict) else None
            if effect == "Allow":
                allowed = allowed or applies is True
            elif applies is not False:
                self._explicit_deny = True
                self._raise_access_denied()
        for policy in self._access_key.collect_policies():
            result = IAMPolicy(policy).is_action_permitted(self._action, resource)
            if result == PermissionResult.DENIED:
                self._raise_access_denied()
            allowed = allowed or result == PermissionResult.PERMITTED
        if not allowed:
            self._raise_access_denied()

    def raise_access_denied(self) -> None:
        if self._service != "secretsmanager":
            return refuse(self)
        resource = getattr(self, "_secret_resource", None)
        message = (f"User: {self._access_key.arn} is not authorized to perform: "
                   f"{self._action}")
        if resource:
            message += f" on resource: {resource}"
        if getattr(self, "_explicit_deny", False):
            message += " with an explicit deny in a resource-based policy"
        error = JsonRESTError("AccessDeniedException", message)
        error.code = 400
        raise error

    SecretsManagerResponse._determine_resource = determine_resource
    IAMRequest.check_action_permitted = check_action_permitted
    IAMRequest._raise_access_denied = raise_access_denied


def answer_one_request_at_a_time() -> None:
    try:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication
    except ImportError as e:
        print(f"moto_server.py: request lock left out: {e}", file=sys.stderr)
        return
    dispatch = DomainDispatcherApplication.__call__
    lock = threading.Lock()

    def call(self, environ, start_response):
        with lock:
            return dispatch(self, environ, start_response)

    DomainDispatcherApplication.__call__ = call


def finish_deleting_cache_clusters() -> None:
    """A deleted cache cluster goes away once its deletion has taken its time."""
    try:
        from moto.elasticache.models import ElastiCacheBackend
    except ImportError as e:
        print(f"moto_server.py: cluster deletion fix left out: {e}", file=sys.stderr)
        return
    names = ("create_cache_cluster", "describe_cache_clusters", "delete_cache_cluster")
    if not all(hasattr(ElastiCacheBackend, n) for n in names):
        print("moto_server.py: cluster deletion fix left out: moto's ElastiCacheBackend "
              "changed", file=sys.stderr)
        return
    seconds = float(os.environ.get("MOTO_CACHE_CLUSTER_DELETE_SECONDS", "10"))
    create, describe, delete = (getattr(ElastiCacheBackend, n) for n in names)

    def purge(backend) -> None:
        done = getattr(backend, "_deletion_done_at", {})
        now = time.monotonic()
        for cluster_id, at in list(done.items()):
            if at <= now:
                del done[cluster_id]
                cluster = backend.cache_clusters.pop(cluster_id, None)
                if cluster is not None:
                    backend.tagging_service.delete_all_tags_for_resource(cluster.arn)

    def delete_cache_cluster(self, cache_cluster_id, *args, **kwargs):
        purge(self)
        cluster = delete(self, cache_cluster_id, *args, **kwargs)
        done = self.__dict__.setdefault("_deletion_done_at", {})
        done.setdefault(cache_cluster_id, time.monotonic() + seconds)
        return cluster

    def describe_cache_clusters(self, *args, **kwargs):
        purge(self)
        return describe(self, *args, **kwargs)

    def create_cache_cluster(self, *args, **kwargs):
        purge(self)
        return create(self, *args, **kwargs)

    ElastiCacheBackend.delete_cache_cluster = delete_cache_cluster
    ElastiCacheBackend.describe_cache_clusters = describe_cache_clusters
    ElastiCacheBackend.create_cache_cluster = create_cache_cluster


if __name__ == "__main__":
    accept_percent_encoded_form_bodies()
    match_wildcards_as_aws_does()
    authorize_secrets_by_arn_and_resource_policy()
    answer_one_request_at_a_time()
    finish_deleting_cache_clusters()
    from moto.server import main

    main()
