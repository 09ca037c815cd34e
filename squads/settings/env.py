"""Settings read from ``SQUADS_*`` environment variables.

Everything has an embedded default so that Squads runs on a laptop with no
configuration: SQLite in the user's data directory and the offline runbook
brain.
"""

from __future__ import annotations

from functools import lru_cache
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Literal

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(user_data_dir("squads", appauthor=False))


class Settings(BaseSettings):
    """Runtime configuration; every field maps to ``SQUADS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="SQUADS_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    config_dir: Path | None = Field(
        default=None,
        description="Folder with site configuration: nodes.yaml and grants/*.yaml.",
    )
    default_timeout_s: float = 30.0
    max_output_bytes: int = 256 * 1024
    public_url: str = Field(
        default="http://127.0.0.1:8700",
        description="Where agents reach the control plane (shown in the install command); https:// off loopback.",
    )
    agent_heartbeat_s: float = Field(default=20.0, gt=0, description="How often agents say they are alive.")
    approval_ttl_s: float = Field(default=3600.0, gt=0, description="How long a held command may wait for approval.")
    lab: bool = Field(default=False, description="Add the bundled simulated lab nodes (squads demo turns it on).")
    local_node: Literal["off", "read-only", "on"] | None = Field(
        default=None,
        description="The node 'local' (the control-plane host itself): off, read-only (allow rules only; nothing "
        "that needs approval runs there) or on. Unset: off for squads serve, on for the command line.",
    )
    # The audit chain's key (docs/audit.md): kept out of the database so that writing the database is not enough
    # to rewrite the log. SQUADS_AUDIT_KEY (hex or base64, >= 32 bytes) wins over the key file.
    audit_key: SecretStr | None = Field(default=None, description="The audit key itself, hex or base64.")
    audit_key_file: Path | None = Field(default=None, description="The audit key file (default data_dir/audit.key).")
    audit_checkpoint_s: float = Field(default=300.0, gt=0, description="How often squads serve writes a checkpoint.")
    audit_checkpoint_file: Path | None = Field(
        default=None, description="Where signed head checkpoints are appended (default data_dir/audit-checkpoints.jsonl)."
    )
    audit_checkpoint_syslog: bool = Field(default=False, description="Also send each checkpoint to syslog.")
    # Sign-in throttling (squads/accounts/ratelimit.py explains the three counters and their numbers).
    signin_window_s: float = Field(default=900.0, gt=0, description="The window sign-in attempts are counted in.")
    signin_limit_account_address: int = Field(default=5, ge=1, description="Attempts per account from one address.")
    signin_limit_account: int = Field(default=30, ge=1, description="Attempts per account from all addresses.")
    signin_limit_address: int = Field(default=100, ge=1, description="Attempts from one address (password spraying).")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses or networks (comma-separated) whose X-Forwarded-For/-Proto are believed; none by default.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: object) -> list[str]:
        items = value.split(",") if isinstance(value, str) else list(value or [])  # type: ignore[call-overload]
        networks = []
        for item in (str(i).strip() for i in items):
            if not item:
                continue
            try:
                network = ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"SQUADS_TRUSTED_PROXIES: {item!r} is not an IP address or network; give the reverse proxy's "
                    "addresses, comma-separated, e.g. 127.0.0.1,10.0.0.0/24"
                ) from None
            if network.prefixlen == 0:
                # Every hop trusted: uvicorn then takes the first X-Forwarded-For entry, which the client writes.
                raise ValueError(
                    f"SQUADS_TRUSTED_PROXIES: {item!r} trusts every address, so any client could set its own "
                    "address; give the reverse proxy's addresses, e.g. 127.0.0.1,10.0.0.0/24"
                )
            networks.append(str(network))
        return networks

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or a SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'squads.sqlite3'}"

    @property
    def effective_config_dir(self) -> Path:
        return self.config_dir or (self.data_dir / "config")

    @property
    def effective_audit_key_file(self) -> Path:
        return self.audit_key_file or (self.data_dir / "audit.key")

    @property
    def effective_audit_checkpoint_file(self) -> Path:
        return self.audit_checkpoint_file or (self.data_dir / "audit-checkpoints.jsonl")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
