"""``glee serve``: start the REST and gRPC servers. Every flag is also an environment variable
(``GLEE_<NAME>``, read by ``Settings``); a flag given on the command line wins over the environment."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)


def _opt(env: str, help_text: str, *flags: str) -> typer.models.OptionInfo:
    return typer.Option(*flags, envvar=f"GLEE_{env}", show_envvar=True, help=help_text)


def serve_command(
    host: Annotated[str | None, _opt("HOST", "Bind address (default: 0.0.0.0).")] = None,
    http_port: Annotated[int | None, _opt("HTTP_PORT", "REST port (default: 8000).")] = None,
    grpc_port: Annotated[int | None, _opt("GRPC_PORT", "gRPC port (default: 50051).")] = None,
    model: Annotated[
        str | None, _opt("MODEL", "Converted weights directory (default: the embedded demo model).")
    ] = None,
    backend: Annotated[str | None, _opt("BACKEND", "Inference backend (default: torch).")] = None,
    device: Annotated[str | None, _opt("DEVICE", "Torch device (default: cpu).")] = None,
    redis_url: Annotated[
        str | None, _opt("REDIS_URL", "redis://host:port/db: keep video sessions in Redis.")
    ] = None,
    api_keys: Annotated[
        str | None, _opt("API_KEYS", "Comma-separated API keys; unset = no authentication.")
    ] = None,
    max_batch_size: Annotated[int | None, _opt("MAX_BATCH_SIZE", "Images per forward (default: 4).")] = None,
    max_queue_delay_ms: Annotated[
        float | None, _opt("MAX_QUEUE_DELAY_MS", "Longest wait for a fuller batch (default: 5).")
    ] = None,
    max_queue_size: Annotated[
        int | None,
        _opt(
            "MAX_QUEUE_SIZE", "Image requests and video frames waiting, together, before 429 (default: 64)."
        ),
    ] = None,
    session_ttl_s: Annotated[
        int | None, _opt("SESSION_TTL_S", "Video session lifetime after its last frame (default: 600).")
    ] = None,
    text_cache: Annotated[
        bool | None,
        _opt("TEXT_CACHE", "Cache text embeddings (default: on).", "--text-cache/--no-text-cache"),
    ] = None,
    log_level: Annotated[str | None, _opt("LOG_LEVEL", "debug, info, warning... (default: info).")] = None,
) -> None:
    """Serve the model over REST (FastAPI) and gRPC until SIGINT/SIGTERM."""
    import asyncio
    import logging

    from pydantic import ValidationError

    from glee.service.schemas import error_message, located
    from glee.service.settings import Settings

    flags = {
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "model": model,
        "backend": backend,
        "device": device,
        "redis_url": redis_url,
        "api_keys": api_keys,
        "max_batch_size": max_batch_size,
        "max_queue_delay_ms": max_queue_delay_ms,
        "max_queue_size": max_queue_size,
        "session_ttl_s": session_ttl_s,
        "text_cache": text_cache,
        "log_level": log_level,
    }
    try:
        settings = Settings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            typer.echo(f"error: {located(error['loc'], error_message(error))}", err=True)
        raise typer.Exit(2) from exc
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from glee.service.server import serve

    try:
        asyncio.run(serve(settings))
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
