"""A node's folder: its configuration, its community key and its database.

    DIR/config.toml      name, country, region, languages, listen address
    DIR/community.key    the community's Ed25519 key, PKCS#8 PEM, mode 0600
    DIR/fora.db          the SQLite database (WAL: also fora.db-wal, fora.db-shm)

The folder is the unit of backup: stop the node (or use ``fora backup``) and copy it.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import signing

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_PORT",
    "NodeConfig",
    "NodeError",
    "backup_node",
    "default_dir",
    "load_config",
    "read_key",
    "write_config",
    "write_key",
]

DEFAULT_PORT = 8470
CONFIG_NAME = "config.toml"
KEY_NAME = "community.key"
DB_NAME = "fora.db"
SECRETS_NAME = "secrets"  # panel secrets until their draw (fora post … panel)


class NodeError(Exception):
    """A problem the user can fix (missing folder, bad key file, bad argument)."""


def default_dir() -> Path:
    """``$FORA_DIR``, else ``$XDG_DATA_HOME/fora`` (``~/.local/share/fora``)."""
    env = os.environ.get("FORA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fora"


@dataclass
class NodeConfig:
    dir: Path
    name: str
    country: str = ""
    region: str = ""
    languages: list[str] = field(default_factory=lambda: ["en"])
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT

    @property
    def db_path(self) -> Path:
        return self.dir / DB_NAME

    @property
    def key_path(self) -> Path:
        return self.dir / KEY_NAME

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_NAME


def _toml_str(value: str) -> str:
    # A JSON string with only these escapes is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=False)


def write_config(config: NodeConfig) -> None:
    langs = ", ".join(_toml_str(lang) for lang in config.languages)
    text = (
        "# Fora node configuration. Edit, then restart the node.\n"
        f"name = {_toml_str(config.name)}\n"
        f"country = {_toml_str(config.country)}\n"
        f"region = {_toml_str(config.region)}\n"
        f"languages = [{langs}]\n"
        "\n[listen]\n"
        f"host = {_toml_str(config.host)}\n"
        f"port = {config.port}\n"
    )
    config.config_path.write_text(text, encoding="utf-8")


def load_config(directory: str | Path) -> NodeConfig:
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise NodeError(
            f"{directory} is not a Fora node folder (no {CONFIG_NAME}); run 'fora init'"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NodeError(f"{path}: {exc}") from exc
    listen = data.get("listen", {})
    try:
        return NodeConfig(
            dir=directory,
            name=str(data["name"]),
            country=str(data.get("country", "")),
            region=str(data.get("region", "")),
            languages=[str(x) for x in data.get("languages", ["en"])],
            host=str(listen.get("host", "127.0.0.1")),
            port=int(listen.get("port", DEFAULT_PORT)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise NodeError(f"{path}: missing or bad setting: {exc}") from exc


def write_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write a private key as PKCS#8 PEM, readable by the owner only; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise NodeError(f"{path} exists already; not overwriting a key") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(signing.private_key_to_pem(key))
        f.flush()
        os.fsync(f.fileno())


def read_key(path: str | Path) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NodeError(f"cannot read key file {path}: {exc.strerror}") from exc
    try:
        return signing.private_key_from_pem(data)
    except signing.KeyFormatError as exc:
        raise NodeError(f"{path}: {exc}") from exc


def backup_node(config: NodeConfig, dest: Path) -> int:
    """A consistent copy of a node folder, safe while the node runs.

    The database goes through SQLite's online backup (a snapshot of one moment, WAL
    included); the config, the community key and the panel secrets not yet revealed by
    a draw (``secrets/``, all mode 0600) are copied beside it. Returns the number of
    database pages copied. ``dest`` must not exist yet.
    """
    import shutil
    import sqlite3

    try:
        dest.mkdir(parents=True, exist_ok=False)
    except FileExistsError as exc:
        raise NodeError(f"{dest} exists already; back up into a new folder") from exc
    dest.chmod(0o700)
    source = sqlite3.connect(f"file:{config.db_path}?mode=ro", uri=True)
    target = sqlite3.connect(dest / DB_NAME)
    try:
        source.backup(target)
        pages = int(target.execute("PRAGMA page_count").fetchone()[0])
        target.execute("PRAGMA journal_mode = WAL")
    finally:
        target.close()
        source.close()
    shutil.copyfile(config.config_path, dest / CONFIG_NAME)
    write_key(dest / KEY_NAME, read_key(config.key_path))
    secrets_dir = config.dir / SECRETS_NAME
    if secrets_dir.is_dir():
        target_dir = dest / SECRETS_NAME
        target_dir.mkdir(mode=0o700)
        for path in sorted(secrets_dir.iterdir()):
            if path.is_file() and not path.name.startswith("pending-"):
                data = path.read_bytes()
                fd = os.open(target_dir / path.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
    return pages
