"""Service settings: every field is also an environment variable ``GLEE_<FIELD>`` (pydantic-settings)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"

# Lists in the environment are comma-separated (GLEE_API_KEYS=key1,key2), not JSON.
CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Runtime configuration of ``glee serve``; CLI flags override the environment."""

    model_config = SettingsConfigDict(env_prefix="GLEE_", env_file=None, extra="ignore")

    host: str = "0.0.0.0"
    http_port: int = Field(8000, ge=1, le=65535)
    grpc_port: int = Field(50051, ge=1, le=65535)
    model: str | None = Field(None, description="Model name or path; None = the embedded demo model.")
    backend: str = "torch"
    device: str = "cpu"
    redis_url: str | None = Field(None, description="redis://...; switches video sessions to Redis.")
    api_keys: CommaList = Field(default_factory=list, description="Accepted API keys; empty = no auth.")
    max_batch_size: int = Field(4, ge=1)
    max_queue_delay_ms: float = Field(5.0, ge=0)
    max_queue_size: int = Field(64, ge=1)
    session_ttl_s: int = Field(600, ge=1)
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(4096 * 4096, ge=1)
    text_cache: bool = Field(True, description="Cache text embeddings of category lists and expressions.")
    warmup: bool = Field(True, description="Run one inference before reporting ready.")
    allow_remote_images: bool = Field(False, description="Accept http(s) image URLs in requests.")
    remote_image_hosts: CommaList = Field(
        default_factory=list, description="Host names remote images may come from (exact match)."
    )
    remote_image_timeout_s: float = Field(5.0, gt=0)
    log_level: str = Field("info", description="One of LOG_LEVELS, in any case.")

    @field_validator("api_keys", "remote_image_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        """An empty string is an empty list; one of only commas and spaces is refused, since
        ``--api-keys ","`` reading as "no keys" would silently turn authentication off."""
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            if value.strip() and not items:
                raise ValueError(f"{value!r} lists nothing but commas and spaces")
            return items
        return value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        """Both ``logging`` and uvicorn take the level; an unknown one would crash the server on start."""
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
        return value.lower()
