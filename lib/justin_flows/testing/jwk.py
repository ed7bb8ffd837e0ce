"""JSON Web Keys built from real keys, for tests of the JWKS refresh (and a CILogon double)."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["b64url_uint", "new_rsa_key", "rsa_jwk"]


def b64url_uint(value: int) -> str:
    """RFC 7518 §2 Base64urlUInt: big-endian bytes, no padding, no leading zero bytes."""
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def rsa_jwk(
    key: rsa.RSAPrivateKey | rsa.RSAPublicKey, kid: str, *, alg: str = "RS256", use: str = "sig"
) -> dict[str, str]:
    """The public JWK of ``key`` as an OpenID provider publishes it."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    numbers = public.public_numbers()
    return {"kty": "RSA", "kid": kid, "alg": alg, "use": use, "n": b64url_uint(numbers.n), "e": b64url_uint(numbers.e)}
