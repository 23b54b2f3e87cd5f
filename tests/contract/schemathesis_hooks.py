"""Schemathesis hooks of tests/api_contract.rs (loaded through SCHEMATHESIS_HOOKS).

A header value with a control character other than a tab is not HTTP (RFC 9110,
section 5.5: field-value = *( VCHAR / obs-text / SP / HTAB )). The server's HTTP parser
(hyper) refuses such a request with a bare 400 before any route sees it, so no answer
of the API's can be checked against the document; schemathesis, which follows the
looser rules of Python's `requests`, would generate them. They are left out here, and
only they: every other generated header, valid or not, is sent.
"""

import schemathesis


def _is_http(value) -> bool:
    text = value if isinstance(value, str) else str(value)
    return not any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in text)


@schemathesis.hook
def filter_headers(context, headers):
    return headers is None or all(_is_http(v) for v in headers.values())


@schemathesis.hook
def filter_case(context, case):
    return all(_is_http(v) for v in (case.headers or {}).values())
