"""Codes and SMS texts sealed with a server secret (AES-256-GCM), so no code is ever in Redis in clear.

A sealed value is ``{kid}.{base64url(nonce | ciphertext | tag)}``: the key id names the secret it was made
with, so a rotation (a new secret listed first in ``SMSGW_VERIFY_SECRETS``, the previous ones after it) keeps
opening what the previous secrets sealed until those codes expire. Every value is bound to what it is for
(the associated data): a sealed code opens only as the code of its own verification, never as another's code
or as an SMS text.

A verification SMS is stored in the message record with its text sealed (the message is flagged sealed: see
``SendCommand.sealed``), and the worker opens it with ``open_sms_text`` right before the uBill call.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from smsgw.errors import SmsGatewayError

__all__ = [
    "Keyring",
    "SealError",
    "VerifyKey",
    "code_context",
    "derive_key",
    "open_sms_text",
    "seal_sms_text",
]

SMS_CONTEXT = "sms-text"
_NONCE = 12
_KEY_INFO = b"smsgw verify aes-256-gcm v1"
_KID_INFO = b"smsgw verify key id v1"


class SealError(SmsGatewayError):
    """A sealed value could not be opened: unknown key id (a secret removed too early), or tampered."""


@dataclass(frozen=True)
class VerifyKey:
    """One AES-256 key and its public id; the repr never shows the key."""

    kid: str
    key: bytes

    def __repr__(self) -> str:
        return f"VerifyKey(kid={self.kid!r}, key=**********)"


def _hkdf(material: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=SHA256(), length=length, salt=None, info=info).derive(material)


def derive_key(secret: str, purpose: bytes = b"") -> VerifyKey:
    """The key of a configured secret (HKDF-SHA256; ``purpose`` separates keys derived from other secrets,
    such as the callback key, from that secret's own use). The id is derived too: it tells nothing."""
    material = secret.encode() + (b"\x00" + purpose if purpose else b"")
    return VerifyKey(_hkdf(material, _KID_INFO, 4).hex(), _hkdf(material, _KEY_INFO, 32))


def code_context(verification_id: str) -> str:
    return f"code:{verification_id}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Keyring:
    """Seals with the first key; opens with whichever key's id the value names."""

    def __init__(self, keys: Sequence[VerifyKey]) -> None:
        self._keys = tuple(keys)
        self._ciphers = {k.kid: AESGCM(k.key) for k in reversed(self._keys)}

    def __repr__(self) -> str:
        return f"Keyring(kids={[k.kid for k in self._keys]})"

    def __bool__(self) -> bool:
        return bool(self._keys)

    def seal(self, plaintext: str, context: str) -> str:
        if not self._keys:
            raise SealError("no verification secret: set SMSGW_VERIFY_SECRETS (or SMSGW_CALLBACK_KEY)")
        current = self._keys[0]
        nonce = os.urandom(_NONCE)
        sealed = self._ciphers[current.kid].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{current.kid}.{_b64(nonce + sealed)}"

    def open(self, token: str, context: str) -> str:
        kid, _, blob = token.partition(".")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise SealError(
                f"sealed with key id {kid[:8]!r}, which is not configured (SMSGW_VERIFY_SECRETS lost it?)"
            )
        try:
            raw = _unb64(blob)
            return cipher.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode()).decode()
        except (InvalidTag, ValueError, binascii.Error, UnicodeDecodeError):
            raise SealError(
                f"a value sealed with key id {kid!r} does not open (tampered or misplaced)"
            ) from None


def seal_sms_text(keyring: Keyring, text: str) -> str:
    return keyring.seal(text, SMS_CONTEXT)


def open_sms_text(keyring: Keyring, sealed: str) -> str:
    """The worker's hook, right before the uBill call: a sealed SMS text opened."""
    return keyring.open(sealed, SMS_CONTEXT)
