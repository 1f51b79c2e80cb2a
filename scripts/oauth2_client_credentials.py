"""Fetches a token from the gateway's /oauth2/token with oauthlib (RFC 6749 4.4, an
independent client implementation), then calls a resource with it the way oauthlib adds it.

usage: oauth2_client_credentials.py [--post] [--scope SCOPE] -- TOKEN_URL RESOURCE_URL CLIENT_ID CLIENT_SECRET
Prints one JSON line: {"status": <resource status>, "token": {...the parsed token...}}.
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

# The tests talk to the gateway over plain HTTP on loopback.
os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

from oauthlib.oauth2 import BackendApplicationClient  # noqa: E402


def main(argv):
    post = "--post" in argv
    scope = None
    if "--scope" in argv:
        scope = argv[argv.index("--scope") + 1]
    token_url, resource_url, client_id, client_secret = argv[argv.index("--") + 1 :]
    client = BackendApplicationClient(client_id=client_id)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    if post:
        # client_secret_post: the credentials in the form.
        body = client.prepare_request_body(
            include_client_id=True, client_secret=client_secret, scope=scope
        )
    else:
        # client_secret_basic: RFC 6749 2.3.1, each form-urlencoded before base64.
        body = client.prepare_request_body(scope=scope)
        pair = "%s:%s" % (
            urllib.parse.quote_plus(client_id),
            urllib.parse.quote_plus(client_secret),
        )
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    request = urllib.request.Request(token_url, data=body.encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request) as response:
        text = response.read().decode()
    token = client.parse_request_body_response(text, scope=scope)
    uri, resource_headers, _ = client.add_token(resource_url, http_method="GET")
    try:
        with urllib.request.urlopen(urllib.request.Request(uri, headers=resource_headers)) as answer:
            status = answer.status
    except urllib.error.HTTPError as error:
        status = error.code
    print(json.dumps({"status": status, "token": dict(token)}))


if __name__ == "__main__":
    main(sys.argv[1:])
