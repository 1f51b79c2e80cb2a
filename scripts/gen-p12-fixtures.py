#!/usr/bin/env python3
"""Writes PKCS#12 fixtures made by other programs, and a manifest of what each must give.

Usage: scripts/gen-p12-fixtures.py OUT_DIR

Files come from `openssl pkcs12` (OpenSSL 3 defaults and -legacy, with and without chain,
empty and non-ASCII passwords, no MAC, unencrypted certificates, AES-128 with a SHA-512 MAC,
PBES2 with 3DES, every key type), from Java `keytool` (default and legacy stores), and, when the
Python package `cryptography` is importable, from pyca/cryptography (expired, not-yet-valid,
mismatched key, no password at all). OUT_DIR/manifest.json lists every case:

    {"file": ..., "password": ..., "expect": "ok" | "<error code>", "key_type": ..., ...}

Nothing here is secret: the keys are throw-away test keys, made fresh on every run.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

NON_ASCII = "pässwörd-日本-🔐"
PASSWORD = "fixture-secret"


def run(*args, cwd, stdin=None):
    subprocess.run(args, cwd=cwd, check=True, input=stdin, capture_output=True)


def openssl(cwd, *args):
    run("openssl", *args, cwd=cwd)


def make_ca(out):
    openssl(out, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "root.key",
            "-out", "root.pem", "-days", "3650", "-subj", "/CN=Fixture Root CA/O=mtls-gateway tests",
            "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign")
    openssl(out, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "int.key", "-out", "int.csr",
            "-subj", "/CN=Fixture Intermediate CA/O=mtls-gateway tests")
    (out / "ca.ext").write_text(
        "basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign\n")
    openssl(out, "x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key",
            "-CAcreateserial", "-out", "int.pem", "-days", "3650", "-extfile", "ca.ext")
    (out / "chain.pem").write_text((out / "int.pem").read_text() + (out / "root.pem").read_text())
    (out / "leaf.ext").write_text(
        "basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")


KEYGEN = {
    "rsa2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "rsa4096": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
    "rsa1024": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    "p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "p384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "ed25519": ["-algorithm", "ED25519"],
}

KEY_TYPE = {"rsa2048": "RSA-2048", "rsa4096": "RSA-4096", "p256": "ECDSA-P256",
            "p384": "ECDSA-P384", "ed25519": "Ed25519"}


def make_leaf(out, name):
    openssl(out, "genpkey", *KEYGEN[name], "-out", f"{name}.key")
    openssl(out, "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/O=mtls-gateway tests/CN=client-{name}")
    openssl(out, "x509", "-req", "-in", f"{name}.csr", "-CA", "int.pem", "-CAkey", "int.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "825", "-extfile", "leaf.ext")


def export(out, file, key, cert, password, *extra, chain=True):
    args = ["pkcs12", "-export", "-out", file, "-name", "fixture"]
    if key:
        args += ["-inkey", key]
    if cert:
        args += ["-in", cert]
    if chain:
        args += ["-certfile", "chain.pem"]
    pw_file = out / f"{file}.pw"
    pw_file.write_bytes(password.encode("utf-8"))
    args += ["-passout", f"file:{pw_file.name}"] if password else ["-passout", "pass:"]
    openssl(out, *args, *extra)
    pw_file.unlink()


def openssl_cases(out):
    cases = []
    make_ca(out)
    for name in ["rsa2048", "rsa4096", "p256", "p384", "ed25519", "rsa1024"]:
        make_leaf(out, name)

    def case(file, expect, password=PASSWORD, **facts):
        cases.append({"file": file, "password": password, "expect": expect, "source": "openssl", **facts})

    for name in ["rsa2048", "rsa4096", "p256", "p384", "ed25519"]:
        export(out, f"openssl-default-{name}.p12", f"{name}.key", f"{name}.pem", PASSWORD)
        case(f"openssl-default-{name}.p12", "ok", key_type=KEY_TYPE[name], chain_length=3,
             subject=f"CN=client-{name},O=mtls-gateway tests")
        export(out, f"openssl-legacy-{name}.p12", f"{name}.key", f"{name}.pem", PASSWORD, "-legacy")
        case(f"openssl-legacy-{name}.p12", "ok", key_type=KEY_TYPE[name], chain_length=3, legacy=True)
    export(out, "openssl-nochain.p12", "p256.key", "p256.pem", PASSWORD, chain=False)
    case("openssl-nochain.p12", "ok", key_type="ECDSA-P256", chain_length=1, warning="chain_incomplete")
    export(out, "openssl-empty-password.p12", "rsa2048.key", "rsa2048.pem", "")
    case("openssl-empty-password.p12", "ok", password="", key_type="RSA-2048", password_form="Bmp")
    export(out, "openssl-empty-password-legacy.p12", "rsa2048.key", "rsa2048.pem", "", "-legacy")
    case("openssl-empty-password-legacy.p12", "ok", password="", key_type="RSA-2048", legacy=True)
    export(out, "openssl-nonascii.p12", "p384.key", "p384.pem", NON_ASCII)
    case("openssl-nonascii.p12", "ok", password=NON_ASCII, key_type="ECDSA-P384")
    export(out, "openssl-nonascii-legacy.p12", "p384.key", "p384.pem", NON_ASCII, "-legacy")
    case("openssl-nonascii-legacy.p12", "ok", password=NON_ASCII, key_type="ECDSA-P384", legacy=True)
    case("openssl-nonascii.p12", "p12_wrong_password", password="passwörd")
    export(out, "openssl-nomac.p12", "rsa2048.key", "rsa2048.pem", PASSWORD, "-nomac")
    case("openssl-nomac.p12", "ok", key_type="RSA-2048", warning="no_integrity_mac")
    case("openssl-nomac.p12", "p12_wrong_password", password="not-the-password")
    export(out, "openssl-nocertenc.p12", "rsa2048.key", "rsa2048.pem", PASSWORD, "-certpbe", "NONE")
    case("openssl-nocertenc.p12", "ok", key_type="RSA-2048")
    export(out, "openssl-noenc-nomac.p12", "ed25519.key", "ed25519.pem", PASSWORD,
           "-certpbe", "NONE", "-keypbe", "NONE", "-nomac")
    case("openssl-noenc-nomac.p12", "ok", password="anything at all", key_type="Ed25519",
         warning="key_not_encrypted")
    export(out, "openssl-aes128-sha512.p12", "p256.key", "p256.pem", PASSWORD,
           "-keypbe", "AES-128-CBC", "-certpbe", "AES-128-CBC", "-macalg", "sha512")
    case("openssl-aes128-sha512.p12", "ok", key_type="ECDSA-P256")
    export(out, "openssl-pbes2-3des.p12", "rsa2048.key", "rsa2048.pem", PASSWORD,
           "-keypbe", "DES-EDE3-CBC", "-certpbe", "DES-EDE3-CBC")
    case("openssl-pbes2-3des.p12", "ok", key_type="RSA-2048")
    case("openssl-default-rsa2048.p12", "p12_wrong_password", password="wrong")
    case("openssl-default-rsa2048.p12", "p12_wrong_password", password="")
    export(out, "openssl-nokey.p12", None, "rsa2048.pem", PASSWORD, "-nokeys")
    case("openssl-nokey.p12", "p12_no_private_key")
    export(out, "openssl-nocert.p12", "rsa2048.key", None, PASSWORD, "-nocerts", chain=False)
    case("openssl-nocert.p12", "p12_no_certificate")
    export(out, "openssl-rsa1024.p12", "rsa1024.key", "rsa1024.pem", PASSWORD)
    case("openssl-rsa1024.p12", "p12_unsupported_key")
    openssl(out, "genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "dsa_paramgen_bits:2048",
            "-out", "dsa.params")
    openssl(out, "genpkey", "-paramfile", "dsa.params", "-out", "dsa.key")
    openssl(out, "req", "-x509", "-key", "dsa.key", "-out", "dsa.pem", "-days", "30",
            "-subj", "/CN=client-dsa")
    export(out, "openssl-dsa.p12", "dsa.key", "dsa.pem", PASSWORD, chain=False)
    case("openssl-dsa.p12", "p12_unsupported_key")
    export(out, "openssl-camellia.p12", "rsa2048.key", "rsa2048.pem", PASSWORD,
           "-keypbe", "CAMELLIA-256-CBC", "-certpbe", "CAMELLIA-256-CBC")
    case("openssl-camellia.p12", "p12_unsupported_algorithm")
    export(out, "openssl-costly.p12", "p256.key", "p256.pem", PASSWORD, "-iter", "1100000",
           chain=False)
    case("openssl-costly.p12", "p12_too_costly")
    data = (out / "openssl-default-rsa2048.p12").read_bytes()
    (out / "truncated.p12").write_bytes(data[: len(data) // 2])
    case("truncated.p12", "p12_malformed")
    (out / "not-pkcs12.p12").write_bytes((out / "rsa2048.pem").read_bytes())
    case("not-pkcs12.p12", "p12_malformed")
    return cases


def keytool(out, *args):
    run("keytool", *args, cwd=out)


def keytool_cases(out):
    if shutil.which("keytool") is None:
        print("keytool not found: skipping Java keytool fixtures", file=sys.stderr)
        return []
    cases = []
    for name, alg in [("rsa", ["-keyalg", "RSA", "-keysize", "2048"]),
                      ("ec", ["-keyalg", "EC", "-groupname", "secp256r1"]),
                      ("ed25519", ["-keyalg", "Ed25519"])]:
        for legacy in [False, True]:
            file = f"keytool-{name}{'-legacy' if legacy else ''}.p12"
            extra = ["-J-Dkeystore.pkcs12.legacy"] if legacy else []
            keytool(out, *extra, "-genkeypair", "-alias", "client", *alg, "-storetype", "PKCS12",
                    "-keystore", file, "-storepass", PASSWORD, "-dname", f"CN=keytool-{name}",
                    "-validity", "365", "-ext", "EKU=clientAuth")
            key_type = {"rsa": "RSA-2048", "ec": "ECDSA-P256", "ed25519": "Ed25519"}[name]
            cases.append({"file": file, "password": PASSWORD, "expect": "ok", "source": "keytool",
                          "key_type": key_type, "subject": f"CN=keytool-{name}", "chain_length": 1})
    keytool(out, "-genkeypair", "-alias", "first", "-keyalg", "EC", "-groupname", "secp256r1",
            "-storetype", "PKCS12", "-keystore", "keytool-two-keys.p12", "-storepass", PASSWORD,
            "-dname", "CN=first", "-validity", "365")
    keytool(out, "-genkeypair", "-alias", "second", "-keyalg", "EC", "-groupname", "secp256r1",
            "-storetype", "PKCS12", "-keystore", "keytool-two-keys.p12", "-storepass", PASSWORD,
            "-dname", "CN=second", "-validity", "365")
    cases.append({"file": "keytool-two-keys.p12", "password": PASSWORD, "expect": "p12_multiple_keys",
                  "source": "keytool"})
    return cases


def pyca_cases(out):
    try:
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, NoEncryption
        from cryptography.hazmat.primitives.serialization.pkcs12 import serialize_key_and_certificates
        from cryptography.x509.oid import NameOID
    except ImportError:
        print("python package 'cryptography' not found: skipping pyca fixtures", file=sys.stderr)
        return []
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)

    def cert(key, name, not_before, not_after):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .sign(key, hashes.SHA256()))

    cases = []

    def write(file, key, certificate, cas, encryption, password, expect, **facts):
        data = serialize_key_and_certificates(b"fixture", key, certificate, cas, encryption)
        (out / file).write_bytes(data)
        cases.append({"file": file, "password": password, "expect": expect, "source": "pyca", **facts})

    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    enc = BestAvailableEncryption(PASSWORD.encode())
    write("pyca-best.p12", key, cert(key, "pyca-best", now - day, now + 400 * day), None, enc,
          PASSWORD, "ok", key_type="ECDSA-P256")
    write("pyca-no-password.p12", key, cert(key, "pyca-none", now - day, now + 400 * day), None,
          NoEncryption(), "", "ok", key_type="ECDSA-P256")
    write("pyca-expired.p12", key, cert(key, "pyca-expired", now - 400 * day, now - day), None, enc,
          PASSWORD, "certificate_expired")
    write("pyca-not-yet-valid.p12", key, cert(key, "pyca-later", now + 10 * day, now + 400 * day),
          None, enc, PASSWORD, "certificate_not_yet_valid")
    write("pyca-expires-soon.p12", key, cert(key, "pyca-soon", now - day, now + 10 * day), None, enc,
          PASSWORD, "ok", warning="expires_soon")
    write("pyca-key-mismatch.p12", key, None, [cert(other, "pyca-other", now - day, now + 400 * day)],
          enc, PASSWORD, "p12_key_mismatch")
    return cases


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    work = out.with_name(out.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cases = openssl_cases(work) + keytool_cases(work) + pyca_cases(work)
    for case in cases:
        assert (work / case["file"]).exists(), case
    (work / "manifest.json").write_text(json.dumps(cases, indent=1, ensure_ascii=False))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(work, out)
    print(f"{len(cases)} cases written to {out}")


if __name__ == "__main__":
    main()
