# TLS to the broker with the CA pinned: config.json `"broker": {"host": ..., "port": 8883,
# "tls": true, "ca": "ca.der"}` (the CA certificate file on the flash root, DER or PEM). The
# device then talks only to a broker whose certificate that CA signed, for that host name.
import binascii
import ssl


class TLSConfigError(Exception):
    pass


def _der(data):
    if data.startswith(b"-----BEGIN"):  # PEM: base64 of the DER between the markers
        lines = [line for line in data.split(b"\n") if line and not line.startswith(b"-----")]
        return binascii.a2b_base64(b"".join(lines))
    return data


def context(broker):
    """An SSLContext for this broker config, or None when TLS is off. Raises TLSConfigError."""
    if not broker.get("tls"):
        return None
    ca = broker.get("ca")
    if not isinstance(ca, str):
        raise TLSConfigError("broker.tls needs broker.ca: the CA certificate file on the device "
                             "(no TLS without a pinned CA)")
    try:
        with open(ca, "rb") as f:
            der = _der(f.read())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=der)
    except (OSError, ValueError) as e:
        raise TLSConfigError("broker.ca %s unusable: %s" % (ca, e))
    return ctx
