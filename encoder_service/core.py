"""The encoder without a transport: validate, decode off the model thread, batch, embed.

:class:`EncoderCore` is what the gRPC servicer (and later a Ray deployment) wraps. A call
goes: cheap checks of every input (empty, too long, not UTF-8, not an allowed image
format) -> admission into the bounded queue (RESOURCE_EXHAUSTED at once when full) ->
image decode and tokenization in a thread pool -> the dynamic batcher -> one
L2-normalized float32 vector per input, in order. Errors are ``clipsearch.errors``
exceptions naming ``inputs[i]``.
"""

from __future__ import annotations

import asyncio
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
from encoder_service.fingerprint import preprocessing_policy
from encoder_service.images import ImageLimits, check_image_bytes, decode_image
from encoder_service.metrics import EncoderMetrics
from encoder_service.model import EncoderModel


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
    ):
        self.model = model
        self.limits = limits
        self.metrics = metrics if metrics is not None else EncoderMetrics()
        self.batcher = DynamicBatcher(self._run_batch, policy, observer=self.metrics, name="encoder-model")
        self.metrics.admitted.set_function(lambda: self.batcher.admitted)
        self._pool = ThreadPoolExecutor(decode_workers, thread_name_prefix="encoder-decode")

    @property
    def identity(self) -> ModelInfo:
        """The model's identity, with how this core turns image bytes into pixels."""
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
            await asyncio.get_running_loop().run_in_executor(self._pool, self.model.warm_up, sizes)
        self.batcher.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Stops the batcher (waiting at most ``timeout_s`` for a batch in the model) and the pool."""
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
        return outcomes  # type: ignore[return-value]

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
        """Decodes images and tokenizes texts in the pool: [(index, (kind, tensor))] in order."""
        loop = asyncio.get_running_loop()
        texts = [v for v in valid if v.kind == "text"]
        images = [v for v in valid if v.kind == "image"]
        jobs = [loop.run_in_executor(self._pool, self._image_tensor, v.payload, v.index) for v in images]
        if texts:
            jobs.append(loop.run_in_executor(self._pool, self.model.tokenize, [v.payload for v in texts]))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        prepared: dict[int, tuple[str, torch.Tensor]] = {}
        for item, result in zip(images, results, strict=False):
            if isinstance(result, BaseException):
                if not isinstance(result, InvalidArgumentError):
                    raise result
                self.metrics.invalid("image")
                if not per_item:
                    raise _lowest_index_error(images, results)
                outcomes[item.index] = result
            else:
                prepared[item.index] = ("image", result)
        if texts:
            tokens = results[-1]
            if isinstance(tokens, BaseException):
                raise tokens
            for item, row in zip(texts, tokens, strict=True):
                prepared[item.index] = ("text", row)
        return sorted(prepared.items())

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


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceededError("deadline passed before the inputs reached the model queue")


def _lowest_index_error(items: list[_Valid], results: list) -> BaseException:
    for _, result in sorted(zip((v.index for v in items), results, strict=False), key=lambda pair: pair[0]):
        if isinstance(result, BaseException):
            return result
    raise AssertionError("no error among the results")
