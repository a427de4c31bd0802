"""schemathesis hooks for koldly's run (.ci/schemathesis): a check that every
error koldly answers is an RFC 9457 problem (application/problem+json with a
`status` equal to the response's and a `title`)."""

import json

import schemathesis


@schemathesis.check
def problem_json_on_errors(ctx, response, case):
    """Every 4xx and 5xx answer is application/problem+json naming its status."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type != "application/problem+json":
        raise AssertionError(
            f"{response.status_code} answered with content type {content_type!r}, "
            "not application/problem+json"
        )
    try:
        problem = json.loads(response.content)
    except ValueError as err:
        raise AssertionError(f"the problem body is not JSON: {err}") from err
    if not isinstance(problem, dict):
        raise AssertionError("the problem body is not a JSON object")
    if problem.get("status") != response.status_code:
        raise AssertionError(
            f"the problem's status {problem.get('status')!r} is not the response's "
            f"{response.status_code}"
        )
    if not isinstance(problem.get("title"), str):
        raise AssertionError("the problem has no title")
    return None
