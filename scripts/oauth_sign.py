#!/usr/bin/env python3
"""Signs one request with OAuth 1.0a using oauthlib (an independent implementation), for the
gateway's tests. Prints the Authorization header value.

    oauth_sign.py METHOD URL CONSUMER_KEY CONSUMER_SECRET TOKEN TOKEN_SECRET
                  [--sha256] [--form BODY] [--timestamp SECONDS] [--nonce NONCE]
"""

import argparse

from oauthlib import oauth1


def main():
    parser = argparse.ArgumentParser()
    for name in ["method", "url", "consumer_key", "consumer_secret", "token", "token_secret"]:
        parser.add_argument(name)
    parser.add_argument("--sha256", action="store_true")
    parser.add_argument("--form")
    parser.add_argument("--timestamp")
    parser.add_argument("--nonce")
    args = parser.parse_args()
    client = oauth1.Client(
        args.consumer_key,
        client_secret=args.consumer_secret,
        resource_owner_key=args.token,
        resource_owner_secret=args.token_secret,
        signature_method=oauth1.SIGNATURE_HMAC_SHA256 if args.sha256 else oauth1.SIGNATURE_HMAC_SHA1,
        timestamp=args.timestamp,
        nonce=args.nonce,
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if args.form is not None else {}
    _, signed, _ = client.sign(args.url, http_method=args.method, body=args.form, headers=headers)
    print(signed["Authorization"])


if __name__ == "__main__":
    main()
