"""Settings read from ``SQUADS_*`` environment variables.

Everything has an embedded default so that Squads runs on a laptop with no
configuration: SQLite in the user's data directory and the offline runbook
brain.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or a SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'squads.sqlite3'}"

    @property
    def effective_config_dir(self) -> Path:
        return self.config_dir or (self.data_dir / "config")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
