"""The encoder without a transport: validate, decode off the model thread, batch, embed.

:class:`EncoderCore` is what the gRPC servicer (and later a Ray deployment) wraps. A call
goes: cheap checks of every input (empty, too long, not UTF-8, not an allowed image
format) -> admission into the bounded queue (RESOURCE_EXHAUSTED at once when full) ->
image decode and tokenization in a thread pool -> the dynamic batcher -> one
L2-normalized float32 vector per input, in order. Errors are ``clipsearch.errors``
exceptions naming ``inputs[i]``.

With :class:`~encoder_service.device_images.DeviceImages` (``--image-decode device``), the
pool only reads each image's header: plain JPEGs then go, a batch at a time, through a
second batcher whose thread decodes, resizes and normalizes them on the model's device, and
reach the model queue as device tensors. Every other image, and any the device fails on,
is decoded by the CPU decoder in the pool, which keeps the last word on what is accepted.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from clipsearch.errors import ClipsearchError, DeadlineExceededError, InvalidArgumentError
from clipsearch.types import ModelInfo
from encoder_service.batching import Admission, BatchPolicy, DynamicBatcher
from encoder_service.device_images import DeviceImages, DeviceJpeg, plan_jpeg
from encoder_service.fingerprint import preprocessing_policy
from encoder_service.images import ImageLimits, check_image_bytes, decode_image
from encoder_service.metrics import EncoderMetrics
from encoder_service.model import EncoderModel
from encoder_service.query_cache import QueryCache

#: Calls with at most this many images read their headers on the event loop (~40 µs each).
INLINE_PLANS = 4
#: Calls of at most this many texts (and no image) are tokenized on the event loop: ~20 µs a
#: product query (encoder_service/tokens.py) against ~100 µs of hops to the pool and back.
INLINE_TEXTS = 4


@dataclass(frozen=True)
class TextInput:
    #: ``bytes`` are checked to be UTF-8 here (gRPC requests arrive that way, see servicer).
    text: str | bytes


@dataclass(frozen=True)
class ImageInput:
    data: bytes


#: None stands for an input with neither text nor image set.
Input = TextInput | ImageInput | None


@dataclass(frozen=True)
class InputLimits:
    max_text_bytes: int = 16 * 1024
    image: ImageLimits = field(default_factory=ImageLimits)


@dataclass(frozen=True)
class _Valid:
    index: int
    kind: str  # "text" | "image"
    #: ``str`` for text, ``bytes`` for an image.
    payload: Any


class EncoderCore:
    def __init__(
        self,
        model: EncoderModel,
        *,
        policy: BatchPolicy,
        limits: InputLimits = InputLimits(),
        decode_workers: int = 2,
        metrics: EncoderMetrics | None = None,
        device_images: DeviceImages | None = None,
        query_cache: QueryCache | None = None,
    ):
        self.model = model
        #: Vectors of texts already embedded by ``embed`` (None: off, ``--query-cache-mib 0``).
        self.query_cache = query_cache
        self.limits = limits
        self.metrics = metrics if metrics is not None else EncoderMetrics()
        self.batcher = DynamicBatcher(self._run_batch, policy, observer=self.metrics, name="encoder-model")
        self.metrics.admitted.set_function(lambda: self.batcher.admitted)
        self._pool = ThreadPoolExecutor(decode_workers, thread_name_prefix="encoder-decode")
        #: Decodes vetted JPEGs on the model's device, a batch at a time (None: every image on the CPU).
        self.device_images = device_images
        self._jpegs = (
            DynamicBatcher(self._decode_jpegs, policy, kinds=("jpeg",), name="encoder-jpeg-decode")
            if device_images is not None
            else None
        )

    @property
    def image_decode(self) -> str:
        """Where JPEGs are decoded: ``device`` or ``cpu``."""
        return "cpu" if self.device_images is None else "device"

    @functools.cached_property
    def identity(self) -> ModelInfo:
        """The model's identity, with how this core turns image bytes into pixels (read per call)."""
        return replace(self.model.identity, preprocessing=self.preprocessing)

    @property
    def preprocessing(self) -> str:
        """How this core turns image bytes into pixels (decode rules and background); not in the
        fingerprint, see `encoder_service.fingerprint`."""
        image = self.limits.image
        return preprocessing_policy(image.background, image.max_pixels if image.reduce_to else None)

    async def start(self, *, warm_up: bool = True) -> None:
        """Warms the model up at batch sizes 1 and max (off the loop), then starts the batcher."""
        if warm_up:
            sizes = (1, self.batcher.policy.max_batch_size)
            await asyncio.get_running_loop().run_in_executor(self._pool, self._warm_up, sizes)
        if self._jpegs is not None:
            self._jpegs.start()
        self.batcher.start()

    def _warm_up(self, sizes: tuple[int, ...]) -> None:
        self.model.warm_up(sizes)
        if self.device_images is not None:
            jpeg = plan_jpeg(warm_up_jpeg(), self.limits.image)
            assert jpeg is not None, "the warm-up JPEG must take the device path"
            for size in sorted(set(sizes)):
                pixels = self.device_images.decode([jpeg] * size)
                failed = [p for p in pixels if not isinstance(p, torch.Tensor)]
                if failed:
                    raise RuntimeError(f"device image decode failed at warm-up: {failed[0]}")
                self.model.encode_images(pixels)  # type: ignore[arg-type]

    def close(self, timeout_s: float = 30.0) -> None:
        """Stops the device decoder and the batcher (waiting at most ``timeout_s`` for a batch in
        the model) and the pool."""
        if self._jpegs is not None:
            self._jpegs.close()
        self.batcher.close(timeout_s)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def embed(self, inputs: Sequence[Input], *, deadline: float | None = None) -> np.ndarray:
        """(n, dim) vectors in input order; the first bad input (lowest index) fails the call."""
        outcomes = await self._embed(inputs, deadline=deadline, per_item=False)
        if not outcomes:
            return np.zeros((0, self.identity.embedding_dim), np.float32)
        return np.stack(outcomes)  # type: ignore[arg-type]

    async def embed_each(
        self, inputs: Sequence[Input], *, deadline: float | None = None
    ) -> list[np.ndarray | ClipsearchError]:
        """One vector or InvalidArgumentError per input; waits for queue room (bulk streams).

        Overload never fails a chunk here: the caller is flow-controlled instead.
        Deadline and model failures still raise for the whole call.
        """
        return await self._embed(inputs, deadline=deadline, per_item=True)

    # -- the pipeline ---------------------------------------------------------------------

    async def _embed(
        self, inputs: Sequence[Input], *, deadline: float | None, per_item: bool
    ) -> list[np.ndarray | ClipsearchError]:
        if len(inputs) > self.batcher.policy.max_queue:  # before any per-input work
            raise InvalidArgumentError(
                f"inputs: {len(inputs)} inputs in one call, more than the queue holds "
                f"({self.batcher.policy.max_queue}, --max-queue); send fewer per call",
                field="inputs",
            )
        outcomes: list[np.ndarray | ClipsearchError | None] = [None] * len(inputs)
        valid: list[_Valid] = []
        counts = {"text": 0, "image": 0}
        for index, item in enumerate(inputs):
            kind = "image" if isinstance(item, ImageInput) else "text"
            counts[kind] += 1
            try:
                valid.append(self._check(index, item))
            except InvalidArgumentError as error:
                self.metrics.invalid(kind)
                if not per_item:
                    self.metrics.request(counts)
                    raise
                outcomes[index] = error
        self.metrics.request(counts)
        cached: list[tuple[_Valid, str]] = []
        if self.query_cache is not None and not per_item:
            valid, cached = self._from_cache(valid, outcomes)
        if not valid:
            return outcomes  # type: ignore[return-value]
        admission = (
            await self.batcher.admit_waiting(len(valid)) if per_item else self.batcher.admit(len(valid))
        )
        with admission:
            prepared = await self._prepare(valid, outcomes, per_item=per_item)
            _check_deadline(deadline)
            vectors = await self._submit(prepared, admission, deadline)
        for (index, _), vector in zip(prepared, vectors, strict=True):
            outcomes[index] = vector
        if cached:
            self._to_cache(cached, outcomes)
        return outcomes  # type: ignore[return-value]

    def _from_cache(
        self, valid: list[_Valid], outcomes: list
    ) -> tuple[list[_Valid], list[tuple[_Valid, str]]]:
        """Texts found in the query cache go straight into ``outcomes``; returns the inputs still
        to embed and the (input, key) of the texts missed, to store once embedded."""
        assert self.query_cache is not None
        fingerprint = self.model.identity.fingerprint
        cache_key = self.model.tokenizer.cache_key
        rest: list[_Valid] = []
        missed: list[tuple[_Valid, str]] = []
        for item in valid:
            if item.kind != "text":
                rest.append(item)
                continue
            key = cache_key(item.payload)
            vector = self.query_cache.get(fingerprint, key)
            if vector is None:
                rest.append(item)
                missed.append((item, key))
            else:
                outcomes[item.index] = vector
        self.metrics.query_cache(len(valid) - len(rest), len(missed))
        return rest, missed

    def _to_cache(self, missed: list[tuple[_Valid, str]], outcomes: list) -> None:
        assert self.query_cache is not None
        fingerprint = self.model.identity.fingerprint
        for item, key in missed:
            vector = outcomes[item.index]
            if isinstance(vector, np.ndarray):
                self.query_cache.put(fingerprint, key, vector)

    def _check(self, index: int, item: Input) -> _Valid:
        """Cheap checks on the event loop, before any input takes room in the queue."""
        if isinstance(item, ImageInput):
            check_image_bytes(item.data, self.limits.image, field=f"inputs[{index}].image")
            return _Valid(index, "image", item.data)
        if isinstance(item, TextInput):
            field = f"inputs[{index}].text"
            raw = item.text
            size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
            if size > self.limits.max_text_bytes:
                raise InvalidArgumentError(
                    f"{field}: text of {size} bytes is over the limit of {self.limits.max_text_bytes}",
                    field=field,
                )
            text = raw
            if isinstance(raw, bytes):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InvalidArgumentError(
                        f"{field}: not valid UTF-8 (byte {exc.start}: {exc.reason})", field=field
                    ) from None
            if not isinstance(text, str) or not text.strip():
                raise InvalidArgumentError(f"{field}: empty text", field=field)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidArgumentError(f"{field}: text has unpaired surrogates", field=field) from None
            return _Valid(index, "text", text)
        raise InvalidArgumentError(
            f"inputs[{index}]: neither text nor image is set", field=f"inputs[{index}]"
        )

    async def _prepare(
        self, valid: list[_Valid], outcomes: list, *, per_item: bool
    ) -> list[tuple[int, tuple[str, torch.Tensor]]]:
        """Decodes images and tokenizes texts: [(index, (kind, tensor))] in order."""
        loop = asyncio.get_running_loop()
        texts = [v for v in valid if v.kind == "text"]
        images = [v for v in valid if v.kind == "image"]
        tokens: asyncio.Future | None = None
        if texts and not images and len(texts) <= INLINE_TEXTS:
            tokens = loop.create_future()  # a few texts cost less on the loop than a hop to the pool
            tokens.set_result(self.model.tokenize([v.payload for v in texts]))
        elif texts:
            tokens = loop.run_in_executor(self._pool, self.model.tokenize, [v.payload for v in texts])
        try:
            results = await self._image_tensors(images) if images else []
        except BaseException:
            if tokens is not None:
                tokens.cancel()
            raise
        prepared: dict[int, tuple[str, torch.Tensor]] = {}
        for item, result in zip(images, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, InvalidArgumentError):
                    raise result
                self.metrics.invalid("image")
                if not per_item:
                    if tokens is not None:
                        tokens.cancel()
                    raise _lowest_index_error(images, results)
                outcomes[item.index] = result
            else:
                prepared[item.index] = ("image", result)
        if tokens is not None:
            for item, row in zip(texts, await tokens, strict=True):
                prepared[item.index] = ("text", row)
        return sorted(prepared.items())

    async def _image_tensors(self, images: list[_Valid]) -> list[torch.Tensor | BaseException]:
        """One model input (or the error that refused it) per image, in order."""
        loop = asyncio.get_running_loop()
        if self._jpegs is None:
            return await self._on_cpu(images)
        plans: list[DeviceJpeg | None] = (
            self._plan(images)  # a few header reads cost less on the loop than a hop to the pool
            if len(images) <= INLINE_PLANS
            else await loop.run_in_executor(self._pool, self._plan, images)
        )
        on_device = [p for p, plan in enumerate(plans) if plan is not None]
        on_cpu = [p for p, plan in enumerate(plans) if plan is None]
        results: list[torch.Tensor | BaseException | None] = [None] * len(images)
        cpu_job = asyncio.ensure_future(self._on_cpu([images[p] for p in on_cpu])) if on_cpu else None
        try:
            if on_device:
                admission = self._jpegs.admit(len(on_device))
                with admission:
                    decoded = await self._jpegs.submit("jpeg", [plans[p] for p in on_device], admission)
                failed = [
                    p for p, pixels in zip(on_device, decoded, strict=True) if isinstance(pixels, Exception)
                ]
                for position, pixels in zip(on_device, decoded, strict=True):
                    results[position] = pixels
                self.metrics.decode_path("device", len(on_device) - len(failed))
                if failed:  # the CPU decoder decides: it decodes the file or refuses it
                    fallback = await self._on_cpu([images[p] for p in failed], path="fallback")
                    for position, pixels in zip(failed, fallback, strict=True):
                        results[position] = pixels
            if cpu_job is not None:
                for position, pixels in zip(on_cpu, await cpu_job, strict=True):
                    results[position] = pixels
        finally:
            if cpu_job is not None:
                cpu_job.cancel()
        return results  # type: ignore[return-value]

    async def _on_cpu(self, images: list[_Valid], path: str = "cpu") -> list[torch.Tensor | BaseException]:
        """Decoded by the CPU decoder in the pool, one job per image (they run in parallel)."""
        self.metrics.decode_path(path, len(images))
        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(self._pool, self._image_tensor, v.payload, v.index) for v in images]
        return await asyncio.gather(*jobs, return_exceptions=True)

    def _plan(self, images: list[_Valid]) -> list[DeviceJpeg | None]:
        """In the pool: which images the device decodes (header checks only, no pixels)."""
        limits = self.limits.image
        return [plan_jpeg(v.payload, limits, field=f"inputs[{v.index}].image") for v in images]

    def _decode_jpegs(self, kind: str, jpegs: list[DeviceJpeg]) -> list[torch.Tensor | Exception]:
        """On the device-decode thread: one batch of JPEGs -> model inputs on the device."""
        assert self.device_images is not None
        started = time.perf_counter()
        try:
            return self.device_images.decode(jpegs)
        except Exception as exc:  # never fail the callers: the CPU decoder takes over
            return [exc] * len(jpegs)
        finally:
            self.metrics.decoded(time.perf_counter() - started, len(jpegs))

    def _image_tensor(self, data: bytes, index: int) -> torch.Tensor:
        started = time.perf_counter()
        image = decode_image(data, self.limits.image, field=f"inputs[{index}].image")
        try:
            return self.model.preprocess_image(image)
        finally:
            self.metrics.decoded(time.perf_counter() - started)

    async def _submit(
        self,
        prepared: list[tuple[int, tuple[str, torch.Tensor]]],
        admission: Admission,
        deadline: float | None,
    ) -> list[np.ndarray]:
        if not prepared:  # every input failed to decode (a stream chunk reports each of them)
            admission.release()
            return []
        by_kind: dict[str, list[int]] = {"text": [], "image": []}
        for position, (_, (kind, _)) in enumerate(prepared):
            by_kind[kind].append(position)
        admission.release_beyond(len(prepared))
        if not by_kind["text"] or not by_kind["image"]:  # one kind: no tasks to run side by side
            kind = "text" if by_kind["text"] else "image"
            payloads = [payload for _, (_, payload) in prepared]
            return await self.batcher.submit(kind, payloads, admission, deadline=deadline)
        tasks = {
            kind: asyncio.ensure_future(
                self.batcher.submit(
                    kind, [prepared[p][1][1] for p in positions], admission, deadline=deadline
                )
            )
            for kind, positions in by_kind.items()
            if positions
        }
        try:
            done, _ = await asyncio.wait(tasks.values(), return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            results: list[np.ndarray | None] = [None] * len(prepared)
            for kind, positions in by_kind.items():
                if positions:
                    for position, vector in zip(positions, tasks[kind].result(), strict=True):
                        results[position] = vector
            return results  # type: ignore[return-value]
        finally:
            for task in tasks.values():
                task.cancel()

    def _run_batch(self, kind: str, payloads: list[torch.Tensor]) -> list[np.ndarray]:
        """On the model thread: one forward pass for the whole batch."""
        if kind == "image":
            return list(self.model.encode_images(payloads))
        return list(self.model.encode_texts(payloads))


def warm_up_jpeg(side: int = 96) -> bytes:
    """A small plain JPEG (smooth colours and edges) that takes the device path."""
    import io

    from PIL import Image

    ramp = np.linspace(0, 255, side, dtype=np.float32)
    pixels = np.stack(
        [ramp[None, :].repeat(side, 0), ramp[:, None].repeat(side, 1), 255 - ramp[None, :].repeat(side, 0)],
        -1,
    )
    pixels[side // 4 : side // 2, side // 4 : 3 * side // 4] = (200, 30, 30)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceededError("deadline passed before the inputs reached the model queue")


def _lowest_index_error(items: list[_Valid], results: list) -> BaseException:
    for _, result in sorted(zip((v.index for v in items), results, strict=False), key=lambda pair: pair[0]):
        if isinstance(result, BaseException):
            return result
    raise AssertionError("no error among the results")
