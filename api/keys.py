"""API keys: 32 random bytes shown once, stored as a SHA-256 hash behind a short lookup prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_SCHEME = "ak"
PREFIX_BYTES = 6


@dataclass(frozen=True)
class NewKey:
    prefix: str
    secret_hash: str
    plaintext: str


def hash_secret(secret: str) -> str:
    # The secret has 256 bits of entropy, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> NewKey:
    prefix = secrets.token_hex(PREFIX_BYTES)
    secret = secrets.token_urlsafe(32)
    return NewKey(prefix=prefix, secret_hash=hash_secret(secret), plaintext=f"{KEY_SCHEME}_{prefix}_{secret}")


def split_key(presented: str) -> tuple[str, str] | None:
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or len(parts[1]) != PREFIX_BYTES * 2 or not parts[2]:
        return None
    return parts[1], parts[2]


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
