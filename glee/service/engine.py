"""The engine: the one object behind both protocols. It owns the model, the dynamic batcher, the
session store, image decoding and output encoding, and speaks typed requests/responses (``schemas``).

Threads: all model work (image batches, video frames, loading, warm-up) runs on one dedicated model
thread, so forwards never compete for the CPU/GPU and the batcher can fill the next batch while the
current one runs. Image decoding and mask encoding run on asyncio's default thread pool, off the event
loop. The event loop itself only routes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel

from glee.model import (
    FrameResult,
    GleePredictor,
    ImageResult,
    ImageTask,
    InputError,
    PromptError,
    TrackState,
    VideoPredictor,
)
from glee.model.prompts import validate_prompt
from glee.service.batcher import BatchTiming, DynamicBatcher
from glee.service.encoding import decode_rle, encode_box, encode_mask, encode_score
from glee.service.errors import InvalidInputError, QueueFullError, UnavailableError
from glee.service.images import RemoteImageFetcher, decode_base64, decode_image, is_url
from glee.service.metrics import Metrics
from glee.service.schemas import (
    Detection,
    DetectParams,
    DetectResponse,
    FrameParams,
    FrameResponse,
    GroundParams,
    GroundResponse,
    GroundResult,
    ImageSize,
    MaskPrompt,
    ModelInfo,
    ModelsResponse,
    OutputOptions,
    SegmentParams,
    SegmentResponse,
    SegmentResult,
    SessionConfig,
    SessionInfo,
    Timing,
    TrackOut,
)
from glee.service.sessions import SessionStore, open_session_store
from glee.service.settings import Settings

log = logging.getLogger(__name__)

#: Encoded image bytes (upload, gRPC) or a string: base64 / data URI, or an http(s) URL.
ImageInput = bytes | str

# Warm-up input: a mid-grey square at the model's smallest test size, detect mode.
_WARMUP_SIZE = 256

T = TypeVar("T")


class Engine:
    """Serves image tasks and video sessions for one model; see the module docstring for threading."""

    def __init__(self, settings: Settings, store: SessionStore | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store = store or open_session_store(settings.redis_url, settings.session_ttl_s)
        self._fetcher = RemoteImageFetcher(
            enabled=settings.allow_remote_images,
            hosts=settings.remote_image_hosts,
            timeout_s=settings.remote_image_timeout_s,
            max_bytes=settings.max_body_bytes,
        )
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glee-model")
        self._predictor: GleePredictor | None = None
        self._video: VideoPredictor | None = None
        self._batcher: DynamicBatcher[ImageTask, list[ImageResult]] | None = None
        self._ready = False
        self._frames_waiting = 0
        self._session_locks: dict[str, tuple[asyncio.Lock, int]] = {}

    # ------------------------------------------------------------------ lifecycle
    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def model_name(self) -> str:
        if self._predictor is not None:
            return self._predictor.model_name
        return self.settings.model or "glee-demo"

    async def start(self) -> None:
        """Load the model on the model thread, start the batcher, warm up, then report ready."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self._predictor = await loop.run_in_executor(self._model_thread, self._load_predictor)
        self._video = VideoPredictor(self._predictor)
        self._batcher = DynamicBatcher(
            self._predictor.run_batch,
            self._predictor.batch_key,
            self._model_thread,
            max_batch_size=self.settings.max_batch_size,
            max_queue_delay_s=self.settings.max_queue_delay_ms / 1000,
            on_batch=self.metrics.observe_batch,
        )
        self._batcher.start()
        self.metrics.track_queue_depth(self._waiting)
        if self.settings.warmup:
            warmup = ImageTask(
                "detect", np.full((_WARMUP_SIZE, _WARMUP_SIZE, 3), 128, np.uint8), categories=["object"]
            )
            await loop.run_in_executor(self._model_thread, self._predictor.run_batch, [warmup])
        self._ready = True
        self.metrics.ready.set(1)
        log.info("model %s ready in %.1f s", self.model_name, time.perf_counter() - started)

    def _load_predictor(self) -> GleePredictor:
        predictor = GleePredictor.load(
            self.settings.model, backend=self.settings.backend, device=self.settings.device
        )
        predictor.text_cache_enabled = self.settings.text_cache
        return predictor

    async def stop(self) -> None:
        self._ready = False
        self.metrics.ready.set(0)
        if self._batcher is not None:
            await self._batcher.stop()
        await self._fetcher.aclose()
        await self.store.close()
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    def models(self) -> ModelsResponse:
        info = ModelInfo(name=self.model_name, backend=self.settings.backend, ready=self._ready)
        return ModelsResponse(models=[info])

    def _require_ready(self) -> None:
        if not self._ready:
            raise UnavailableError("the model is not loaded yet", code="not_ready")

    # ------------------------------------------------------------------ image tasks
    async def detect(self, image: ImageInput, params: DetectParams) -> DetectResponse:
        started = time.perf_counter()
        pixels = await self._pixels(image)
        task = ImageTask(
            "detect",
            pixels,
            categories=list(params.categories),
            score_threshold=params.score_threshold,
            max_detections=params.max_detections,
        )
        (result,), timing = await self._infer(task)
        detections = await asyncio.to_thread(self._detections, result, params)
        return DetectResponse(
            model=self.model_name,
            image=_size(pixels),
            detections=detections,
            timing_ms=_timing(timing, started),
        )

    async def ground(self, image: ImageInput, params: GroundParams) -> GroundResponse:
        started = time.perf_counter()
        pixels = await self._pixels(image)
        task = ImageTask("ground", pixels, expressions=list(params.expressions), max_detections=1)
        results, timing = await self._infer(task)

        def encode() -> list[GroundResult]:
            return [
                GroundResult(expression=text, detection=(self._detections(r, params) or [None])[0])
                for text, r in zip(params.expressions, results, strict=True)
            ]

        return GroundResponse(
            model=self.model_name,
            image=_size(pixels),
            results=await asyncio.to_thread(encode),
            timing_ms=_timing(timing, started),
        )

    async def segment(self, image: ImageInput, params: SegmentParams) -> SegmentResponse:
        started = time.perf_counter()
        pixels = await self._pixels(image)
        prompts = _model_prompts(params.prompts, pixels.shape[:2])
        task = ImageTask("segment", pixels, prompts=prompts, max_detections=1)
        results, timing = await self._infer(task)

        def encode() -> list[SegmentResult]:
            out = []
            for r in results:
                mask = r.masks[0] if len(r) else np.zeros(pixels.shape[:2], bool)
                box = r.boxes[0] if len(r) else np.zeros(4, np.float32)
                score = float(r.scores[0]) if len(r) else 0.0
                out.append(
                    SegmentResult(
                        score=encode_score(score),
                        box=encode_box(box, params.box_format),
                        mask=encode_mask(mask, params.mask_format),
                    )
                )
            return out

        return SegmentResponse(
            model=self.model_name,
            image=_size(pixels),
            results=await asyncio.to_thread(encode),
            timing_ms=_timing(timing, started),
        )

    async def _pixels(self, image: ImageInput) -> np.ndarray:
        self._require_ready()
        if isinstance(image, str) and is_url(image):
            image = await self._fetcher.fetch(image)
        return await asyncio.to_thread(self._decode, image)

    def _decode(self, image: ImageInput) -> np.ndarray:
        data = decode_base64(image) if isinstance(image, str) else image
        return decode_image(data, self.settings.max_image_pixels)

    def _waiting(self) -> int:
        """Image requests and video frames waiting for the model (not the batch or frame it runs)."""
        assert self._batcher is not None
        return len(self._batcher) + self._frames_waiting

    def _admit(self) -> None:
        """Refuse work at once when ``max_queue_size`` requests already wait: image requests and video
        frames share the one model thread, so they share the bound."""
        if self._waiting() >= self.settings.max_queue_size:
            self.metrics.rejected.inc()
            raise QueueFullError(f"the request queue is full ({self._waiting()} waiting); retry later")

    async def _infer(self, task: ImageTask) -> tuple[list[ImageResult], BatchTiming]:
        assert self._batcher is not None
        self._admit()
        try:
            results, timing = await self._batcher.submit(task)
        except (InputError, PromptError) as exc:
            raise _model_input_error(exc) from exc
        self.metrics.queue_seconds.observe(timing.queue_s)
        return results, timing

    @staticmethod
    def _detections(result: ImageResult, options: OutputOptions) -> list[Detection]:
        return [
            Detection(
                id=i,
                label=result.labels[i],
                score=encode_score(result.scores[i]),
                box=encode_box(result.boxes[i], options.box_format),
                mask=encode_mask(result.masks[i], options.mask_format),
            )
            for i in range(len(result))
        ]

    # ------------------------------------------------------------------ video sessions
    async def create_session(self, config: SessionConfig) -> SessionInfo:
        self._require_ready()
        assert self._video is not None
        options = {
            name: value
            for name, value in (
                ("score_threshold", config.score_threshold),
                ("max_detections", config.max_detections),
            )
            if value is not None
        }
        try:
            state = self._video.start(
                task=config.task, categories=config.categories, expression=config.expression, **options
            )
        except InputError as exc:
            raise _model_input_error(exc) from exc
        session_id = uuid.uuid4().hex
        meta = {"task": config.task, "mask_format": config.mask_format, "box_format": config.box_format}
        await self.store.create(session_id, state.to_bytes(), meta)
        return SessionInfo(session_id=session_id, task=config.task, frames=0, expires_in_s=self.store.ttl_s)

    async def require_session(self, session_id: str) -> None:
        """Raise ``NotFoundError`` for an unknown or expired session: one store read, so the REST adapter
        answers 404 before reading (and judging) a frame's body."""
        await self.store.load(session_id)

    async def get_session(self, session_id: str) -> SessionInfo:
        record = await self.store.load(session_id)
        frames = TrackState.from_bytes(record.state).frame_index
        return SessionInfo(
            session_id=session_id, task=record.meta["task"], frames=frames, expires_in_s=record.expires_in_s
        )

    async def delete_session(self, session_id: str) -> None:
        await self.store.delete(session_id)

    async def add_frame(self, session_id: str, image: ImageInput, params: FrameParams) -> FrameResponse:
        """Advance a session by one frame. Frames of one session are serialized in this process; the
        store's version check catches a second replica advancing the same session concurrently."""
        started = time.perf_counter()
        self._require_ready()
        pixels = await self._pixels(image)
        async with self._session_lock(session_id):
            record = await self.store.load(session_id)
            state = TrackState.from_bytes(record.state)
            prompts = _video_prompts(state, params, pixels.shape[:2])
            (state, result), timing = await self._run_video_step(state, pixels, prompts)
            await self.store.commit(session_id, record.version, state.to_bytes())
        self.metrics.frames.labels(state.config.task).inc()
        options = OutputOptions(mask_format=record.meta["mask_format"], box_format=record.meta["box_format"])
        tracks = await asyncio.to_thread(_tracks, result, options)
        return FrameResponse(
            session_id=session_id,
            frame_index=result.frame_index,
            tracks=tracks,
            timing_ms=_timing(timing, started),
        )

    async def _run_video_step(
        self, state: TrackState, pixels: np.ndarray, prompts: dict[int, dict] | None
    ) -> tuple[tuple[TrackState, FrameResult], BatchTiming]:
        assert self._video is not None
        self._admit()
        self._frames_waiting += 1
        waiting = True

        def running() -> None:  # on the event loop: when the frame starts, or if it never does
            nonlocal waiting
            if waiting:
                waiting = False
                self._frames_waiting -= 1

        try:
            step = self._video.step
            output, timing = await self._on_model_thread(step, state, pixels, prompts, on_start=running)
        except (InputError, PromptError) as exc:
            raise _model_input_error(exc) from exc
        finally:
            running()
        self.metrics.queue_seconds.observe(timing.queue_s)
        self.metrics.inference_seconds.labels("video_frame").observe(timing.inference_s)
        return output, timing

    async def _on_model_thread(
        self, fn: Callable[..., T], *args: Any, on_start: Callable[[], None] | None = None
    ) -> tuple[T, BatchTiming]:
        """Run ``fn(*args)`` on the model thread; ``on_start`` is called on the event loop when it begins."""
        loop = asyncio.get_running_loop()
        submitted = time.perf_counter()

        def timed() -> tuple[T, float, float]:
            begin = time.perf_counter()
            if on_start is not None:
                loop.call_soon_threadsafe(on_start)
            return fn(*args), begin, time.perf_counter()

        output, begin, end = await loop.run_in_executor(self._model_thread, timed)
        return output, BatchTiming(begin - submitted, end - begin, 1)

    @asynccontextmanager
    async def _session_lock(self, session_id: str) -> AsyncIterator[None]:
        lock, users = self._session_locks.get(session_id, (asyncio.Lock(), 0))
        self._session_locks[session_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._session_locks[session_id]
            if users == 1:
                del self._session_locks[session_id]
            else:
                self._session_locks[session_id] = (lock, users - 1)


def _video_prompts(state: TrackState, params: FrameParams, size: tuple[int, int]) -> dict[int, dict] | None:
    """Check a frame against its session (the API's rules, so clients get a precise 400) and convert
    the prompts to the model's ``{object_id: prompt}`` (RLE masks decoded to bool arrays at the frame
    size; a prompt without ``object_id`` adds an object under the session's next id)."""
    task = state.config.task
    if state.image_size is not None and tuple(state.image_size) != size:
        (h, w), (session_h, session_w) = size, state.image_size
        message = f"frame is {w}x{h} but this session's frames are {session_w}x{session_h}"
        raise InvalidInputError(message, code="frame_size_mismatch")
    if params.prompts and task != "vos":
        raise InvalidInputError(
            f"prompts are only accepted by task 'vos', not {task!r}", code="invalid_prompt"
        )
    if task == "vos" and state.frame_index == 0 and not params.prompts:
        raise InvalidInputError(
            "task 'vos' needs prompts (one per object) on the first frame", code="invalid_prompt"
        )
    if not params.prompts:
        return None
    return dict(zip(_object_ids(state, params.prompts), _model_prompts(params.prompts, size), strict=True))


def _object_ids(state: TrackState, prompts: Sequence[BaseModel]) -> list[int]:
    """The object each prompt is for: its ``object_id``, which must be an object the session follows
    (prompted at most once per frame), or else the next new id, in prompt order."""
    followed = sorted(t.track_id for t in state.tracks)
    ids: list[int] = []
    fresh = state.next_id
    for index, prompt in enumerate(prompts):
        obj_id = getattr(prompt, "object_id", None)
        if obj_id is None:
            obj_id, fresh = fresh, fresh + 1
        elif obj_id not in followed:
            objects = f"its objects: {', '.join(map(str, followed))}" if followed else "it has none yet"
            message = f"prompts[{index}]: object_id {obj_id} is not an object of this session ({objects})"
            raise InvalidInputError(message, code="invalid_prompt")
        elif obj_id in ids:
            message = f"prompts[{index}]: object {obj_id} is prompted twice in this frame"
            raise InvalidInputError(message, code="invalid_prompt")
        ids.append(obj_id)
    return ids


def _model_prompts(prompts: Sequence[BaseModel], size: tuple[int, int]) -> list[dict]:
    """API prompts -> the model's dicts (RLE masks decoded at the image size), each checked against the
    image here, where its index is known, so a 400 says which one is wrong: ``prompts[1]: ...``."""
    height, width = size
    converted = []
    for index, prompt in enumerate(prompts):
        try:
            if isinstance(prompt, MaskPrompt):
                model_prompt = {"mask": decode_rle(prompt.mask, height, width)}
            else:
                model_prompt = prompt.model_dump(exclude={"object_id"})
            validate_prompt(model_prompt, width, height)
        except (InvalidInputError, PromptError) as exc:
            raise InvalidInputError(f"prompts[{index}]: {exc}", code="invalid_prompt") from exc
        converted.append(model_prompt)
    return converted


def _tracks(result: FrameResult, options: OutputOptions) -> list[TrackOut]:
    return [
        TrackOut(
            track_id=int(result.track_ids[i]),
            label=result.labels[i],
            score=encode_score(result.scores[i]),
            box=encode_box(result.boxes[i], options.box_format),
            mask=encode_mask(result.masks[i], options.mask_format),
        )
        for i in range(len(result))
    ]


def _model_input_error(exc: ValueError) -> InvalidInputError:
    code = "invalid_prompt" if isinstance(exc, PromptError) else "invalid_input"
    return InvalidInputError(str(exc), code=code)


def _size(pixels: np.ndarray) -> ImageSize:
    return ImageSize(width=int(pixels.shape[1]), height=int(pixels.shape[0]))


def _timing(timing: BatchTiming, started: float) -> Timing:
    return Timing(
        queue=round(timing.queue_s * 1000, 3),
        inference=round(timing.inference_s * 1000, 3),
        total=round((time.perf_counter() - started) * 1000, 3),
    )
