"""A throwaway certificate authority for TLS tests: a CA, a server certificate for 127.0.0.1
and localhost, made with the openssl command."""
import subprocess
from pathlib import Path


def make_ca(workdir):
    """Returns dict of paths: ca (PEM), ca_der, cert, key."""
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=wisp test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    run("x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der")
    return {"ca": d / "ca.pem", "ca_der": d / "ca.der", "cert": d / "server.pem", "key": d / "server.key"}


def tls_listener_conf(port, paths, host="127.0.0.1"):
    return (f"listener {port} {host}\ncafile {paths['ca']}\ncertfile {paths['cert']}\n"
            f"keyfile {paths['key']}\nrequire_certificate false\n")
