"""moto_server with one fix: IAM enforcement that accepts the AWS SDK for Rust's
signatures of form-encoded requests.

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

And one more: requests are answered one at a time. moto's server is threaded, but its
in-memory backends are not safe for concurrent use: a response that lists what an
account holds (GetAccountAuthorizationDetails, ListRoles, ...) is serialized from the
backend's own dictionaries, and a create or delete in another thread at that moment
fails it with "dictionary changed size during iteration" (HTTP 500), every retry alike
while other callers keep working. The lock costs no throughput a caller could see:
moto's handlers hold the interpreter lock anyway.
"""

import sys
import threading
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


if __name__ == "__main__":
    accept_percent_encoded_form_bodies()
    answer_one_request_at_a_time()
    from moto.server import main

    main()
