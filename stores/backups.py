"""Where backups are kept, and how their parts are sealed (AES-256-GCM).

A backup is a folder (a local directory, or a prefix in an S3 bucket) holding an encrypted
manifest and encrypted parts. Nothing in it is readable without the key, and nothing in it
can be changed unseen: every chunk is authenticated, with the backup's id, the part's name
and the chunk's number bound in as associated data, so chunks cannot be swapped between
parts or backups, reordered or cut short.

The key is 32 random bytes, base64 in a file that only its owner may read (mode 0600,
checked on every use). Keep a copy away from the machine: a backup is only as good as the
key that opens it.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mimamori.core.errors import InvalidInput, Misconfigured

MAGIC = b"MIMAMORI-BACKUP-1\n"
NONCE_BYTES = 12
HEADER = struct.Struct(">IB")  # ciphertext length, last-chunk flag


class BackupCorrupt(InvalidInput):
    """A part or manifest that does not decrypt, or does not match the manifest: never restored."""


# --- the key -------------------------------------------------------------------------------------

def create_key(path: Path) -> None:
    """Write a new random key to ``path`` (mode 0600); an existing file is never overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")


def load_key(path: Path | None) -> bytes:
    """The 32-byte key from ``path``, refused unless only its owner can read it."""
    if path is None:
        raise Misconfigured("backup_key_missing", "no backup key: set backup.key_file "
                            "(make one with `mimamori backup key FILE`)")
    if not path.exists():
        raise Misconfigured("backup_key_missing", f"backup key file {path} does not exist "
                            "(make one with `mimamori backup key FILE`)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise Misconfigured("backup_key_mode", f"backup key file {path} has mode {mode:04o}: "
                            "others may read it; chmod 600 it")
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise Misconfigured("backup_key_invalid", f"{path} does not hold a base64 32-byte key")
    return key


# --- sealing -------------------------------------------------------------------------------------

def _associated(backup_id: str, part: str, index: int, last: bool) -> bytes:
    return f"{backup_id}\0{part}\0{index}\0{int(last)}".encode()


def seal(key: bytes, backup_id: str, part: str, source: BinaryIO, sink: BinaryIO, chunk_bytes: int) -> None:
    """Encrypt ``source`` into ``sink`` in authenticated chunks of ``chunk_bytes``."""
    aead = AESGCM(key)
    sink.write(MAGIC)
    index = 0
    chunk = source.read(chunk_bytes)
    while True:
        following = source.read(chunk_bytes)
        last = not following
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = aead.encrypt(nonce, chunk, _associated(backup_id, part, index, last))
        sink.write(HEADER.pack(len(sealed), last) + nonce + sealed)
        if last:
            return
        chunk, index = following, index + 1


def unseal(key: bytes, backup_id: str, part: str, source: BinaryIO, sink: BinaryIO) -> None:
    """Decrypt what ``seal`` wrote; any change, truncation or mix-up raises ``BackupCorrupt``."""
    aead = AESGCM(key)
    if source.read(len(MAGIC)) != MAGIC:
        raise BackupCorrupt("backup_corrupt", f"{part}: not a mimamori backup part")
    index = 0
    while True:
        header = source.read(HEADER.size)
        if len(header) != HEADER.size:
            raise BackupCorrupt("backup_corrupt", f"{part}: cut short at chunk {index}")
        length, last = HEADER.unpack(header)
        nonce, sealed = source.read(NONCE_BYTES), source.read(length)
        try:
            sink.write(aead.decrypt(nonce, sealed, _associated(backup_id, part, index, bool(last))))
        except InvalidTag:
            raise BackupCorrupt("backup_corrupt", f"{part}: chunk {index} does not decrypt with this key "
                                "(a wrong key, or the part was changed)") from None
        if last:
            if source.read(1):
                raise BackupCorrupt("backup_corrupt", f"{part}: data after the last chunk")
            return
        index += 1


# --- where backups are kept ----------------------------------------------------------------------

class BackupTarget(Protocol):
    """A place for backups: folders of files, by backup id."""

    def describe(self) -> str: ...
    def backup_ids(self) -> list[str]: ...
    def put(self, backup_id: str, name: str, path: Path) -> None: ...
    def get(self, backup_id: str, name: str, path: Path) -> None: ...
    def names(self, backup_id: str) -> list[str]: ...
    def delete(self, backup_id: str) -> None: ...


@dataclass
class DirectoryTarget:
    root: Path

    def describe(self) -> str:
        return str(self.root)

    def backup_ids(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.enc").exists())

    def put(self, backup_id: str, name: str, path: Path) -> None:
        folder = self.root / backup_id
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = folder / f".{name}.partial"
        shutil.copyfile(path, partial)
        os.chmod(partial, 0o600)
        partial.replace(folder / name)  # a reader never sees half a file

    def get(self, backup_id: str, name: str, path: Path) -> None:
        source = self.root / backup_id / name
        if not source.exists():
            raise BackupCorrupt("backup_corrupt", f"{source} is missing")
        shutil.copyfile(source, path)

    def names(self, backup_id: str) -> list[str]:
        return sorted(p.name for p in (self.root / backup_id).iterdir() if not p.name.startswith("."))

    def delete(self, backup_id: str) -> None:
        shutil.rmtree(self.root / backup_id, ignore_errors=True)


@dataclass
class BucketTarget:
    """An S3 bucket (MinIO, or S3 itself) through the same client as the object store's."""

    client: object  # minio.Minio
    bucket: str
    prefix: str

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, backup_id: str, name: str) -> str:
        return f"{self.prefix}{backup_id}/{name}"

    def backup_ids(self) -> list[str]:
        if not self.client.bucket_exists(self.bucket):
            return []
        found = set()
        for obj in self.client.list_objects(self.bucket, prefix=self.prefix, recursive=True):
            backup_id, _, name = obj.object_name.removeprefix(self.prefix).partition("/")
            if name == "manifest.enc":
                found.add(backup_id)
        return sorted(found)

    def put(self, backup_id: str, name: str, path: Path) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)
        self.client.fput_object(self.bucket, self._key(backup_id, name), str(path))

    def get(self, backup_id: str, name: str, path: Path) -> None:
        from minio.error import S3Error

        try:
            self.client.fget_object(self.bucket, self._key(backup_id, name), str(path))
        except S3Error as error:
            raise BackupCorrupt("backup_corrupt", f"{self.describe()}{backup_id}/{name}: {error.code}") from None

    def names(self, backup_id: str) -> list[str]:
        prefix = self._key(backup_id, "")
        return sorted(o.object_name.removeprefix(prefix)
                      for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True))

    def delete(self, backup_id: str) -> None:
        prefix = self._key(backup_id, "")
        for obj in list(self.client.list_objects(self.bucket, prefix=prefix, recursive=True)):
            self.client.remove_object(self.bucket, obj.object_name)

