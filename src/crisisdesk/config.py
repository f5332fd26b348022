"""Settings, read from the environment (prefix ``CRISISDESK_``) or a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_SECRET = "demo-secret-change-me"  # noqa: S105 - refused outside demo mode


class Settings(BaseSettings):
    """Every setting crisisdesk reads; README.md documents each one."""

    model_config = SettingsConfigDict(env_prefix="CRISISDESK_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///./crisisdesk.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    secret_key: str = Field(default=DEMO_SECRET, description="Signs tokens; must be changed outside demo mode.")
    demo: bool = Field(default=False, description="Demo mode allows the default secret key.")
    base_url: str = Field(default="http://127.0.0.1:8000", description="Public URL of this installation.")
    page_name: str = Field(default="Acme Cloud", description="Name shown on the status page.")
    page_time_zone: str = Field(default="Etc/UTC", description="Time zone of the status page.")
    secure_cookies: bool = Field(default=False, description="Mark session cookies Secure (set true behind HTTPS).")
    session_hours: int = Field(default=12, ge=1, description="Console session lifetime.")
    public_max_age: int = Field(default=30, ge=0, description="Cache-Control max-age of public paths.")
    public_swr: int = Field(default=60, ge=0, description="Cache-Control stale-while-revalidate of public paths.")
    poll_interval: float = Field(
        default=0.25,
        gt=0,
        description="Seconds between checks for changes made by other processes.",
    )
    run_workers: bool = Field(default=True, description="Run the background workers inside the web process.")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="Largest request body accepted.")

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if not self.demo and self.secret_key == DEMO_SECRET:
            raise ValueError(
                "CRISISDESK_SECRET_KEY must be set to a long random value outside demo mode "
                "(or set CRISISDESK_DEMO=true)"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
