"""Tenants for bench/forward.sh: each with its own freshly made key and certificate.

  python bench/tenants.py make DIR COUNT
      A client CA (DIR/ca.pem) and COUNT tenants t1..tCOUNT, keys alternating RSA-2048 (odd)
      and ECDSA P-256 (even): DIR/tN.key and DIR/tN.chain.pem for the nginx peer, DIR/tN.p12
      for the gateway, written as OpenSSL 3 writes them by default (PBES2, PBKDF2-SHA256 with
      2048 iterations, AES-256-CBC, HMAC-SHA-256 MAC), password `bench-secret`.
  python bench/tenants.py register DIR COUNT GATEWAY TOKEN URL_PREFIX...
      Uploads tN.p12 to account tN of the gateway at GATEWAY (http://host:port) and maps it to
      URL_PREFIX + N for every prefix (service IDP), with the Bearer TOKEN.

Needs pyca/cryptography (scripts/test installs it into .venv).
"""

import base64
import datetime
import json
import os
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

PASSWORD = b"bench-secret"


def make(directory, count):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench tenants CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    with open(os.path.join(directory, "ca.pem"), "wb") as out:
        out.write(ca_pem)
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(2048)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(PASSWORD)
    )
    for n in range(1, count + 1):
        if n % 2:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"tenant-{n}")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        base = os.path.join(directory, f"t{n}")
        with open(base + ".key", "wb") as out:
            out.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        with open(base + ".chain.pem", "wb") as out:
            out.write(leaf.public_bytes(serialization.Encoding.PEM) + ca_pem)
        with open(base + ".p12", "wb") as out:
            out.write(pkcs12.serialize_key_and_certificates(f"t{n}".encode(), key, leaf, [ca], encryption))


def post(url, token, body):
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def register(directory, count, gateway, token, prefixes):
    def one(n):
        with open(os.path.join(directory, f"t{n}.p12"), "rb") as p12:
            encoded = base64.b64encode(p12.read()).decode()
        saved = post(
            f"{gateway}/mtls/account/t{n}/certificates",
            token,
            [{"name": f"t{n}", "p12": encoded, "password": PASSWORD.decode()}],
        )
        certificate = saved["successfulySavedCertificates"][0]["id"]
        mappings = [
            {
                "name": f"m{index}",
                "certificationId": str(certificate),
                "serviceId": "1",
                "url": f"{prefix}{n}",
                "siteId": f"t{n}",
                "enable": True,
            }
            for index, prefix in enumerate(prefixes)
        ]
        post(f"{gateway}/api/account/t{n}/configuration/ac-common/mtls?v=3.0", token, mappings)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(1, count + 1)))


def main(argv):
    if len(argv) >= 3 and argv[0] == "make":
        make(argv[1], int(argv[2]))
    elif len(argv) >= 6 and argv[0] == "register":
        register(argv[1], int(argv[2]), argv[3], argv[4], argv[5:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
