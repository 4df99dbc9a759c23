"""The one interface every generation backend implements, and the helpers they share.

A backend is given a ``BackendConfig`` (``generation.backends.types``) and knows tokens, not
jobs or Django models: the caller loads it through ``generation.backends.get_backend`` and calls
``generate``; whatever the backend, the caller's streaming, saving and cancelling are the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.backends.types import (
    CandidateOutput,
    OnDelta,
    Provenance,
    SamplingSettings,
    ShouldStop,
    TextScore,
    check_prompt_length,
    clean_text,
)


class Backend(ABC):
    """A loaded model behind one interface. Instances live for the worker process and serve
    several calls at once (each call of ``generate`` keeps its own state)."""

    name: str = ""
    load_seconds: float = 0.0
    context_length: int | None = None
    device: str = "cpu"

    @abstractmethod
    def provenance(self) -> Provenance:
        """Backend, version and weights checksum or revision: copied into every draft."""

    @abstractmethod
    def render_prompt(self, *, system: str, user: str) -> str:
        """The exact text the model sees (the chat template where there is one)."""

    @abstractmethod
    def count_tokens(self, prompt: str) -> int | None:
        """Prompt tokens, or None where only the server knows (it reports them later)."""

    @abstractmethod
    def generate(
        self,
        *,
        prompt: str,
        n: int,
        seeds: Sequence[int],
        settings: SamplingSettings,
        on_delta: OnDelta | None = None,
        should_stop: ShouldStop | None = None,
        temperatures: Sequence[float] | None = None,
        preamble: str = "",
    ) -> list[CandidateOutput]:
        """Write ``n`` candidates of ``prompt``, candidate i sampling with ``seeds[i]``.

        Streams through ``on_delta`` (one call per step, a list of ``n`` entries); polls
        ``should_stop`` and, when it says so, ends the unfinished candidates with finish reason
        "cancelled". Returns per candidate its text, token count (``completion_tokens``) and
        finish reason (eos | length | cancelled). Raises PromptTooLong or BackendError with a
        message people can act on. ``preamble``: what ``preamble(system=...)`` gave for the
        system text the prompt was rendered with (a backend that caches it prefills it once).
        """

    def preamble(self, *, system: str) -> str:
        """The opening every prompt rendered with this system text shares, up to the user's
        text (the chat template's system turn). "" for a backend that gains nothing from it."""
        return ""

    def score_text(self, *, prompt: str, text: str, max_tokens: int | None = None) -> TextScore:
        """The log-likelihood of ``text`` written after ``prompt`` (a rendered prompt), token by
        token as the model would have had to write it (teacher-forced): the perplexity of a real
        document under the model. The text is tokenised on its own; at most ``max_tokens`` of
        its tokens (and what fits the context) are scored. Raises NotImplementedError where the
        backend cannot tell (a remote server returns no log-probabilities of a given text)."""
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is None:
            raise NotImplementedError(f"the {self.name} backend returns no log-probabilities")
        prompt_ids = self.encode(prompt)  # type: ignore[attr-defined]
        ids, truncated = text_ids_to_score(
            tokenizer,
            prompt_ids=prompt_ids,
            text=text,
            context_length=self.context_length,
            max_tokens=max_tokens,
        )
        score = self.score_ids(prompt_ids=prompt_ids, ids=ids)
        score.truncated = truncated
        return score

    def score_ids(self, *, prompt_ids: list[int], ids: list[int]) -> TextScore:
        """The summed log-probability of the tokens ``ids`` after ``prompt_ids`` (teacher-forced,
        raw logits: the same values the sampler records for a written token)."""
        raise NotImplementedError(f"the {self.name} backend returns no log-probabilities")

    def check(self) -> str:
        """Generate a few tokens; a one-line report for the admin's check action."""
        prompt = self.render_prompt(system="", user="Write one sentence about the weather.")
        started = time.monotonic()
        out = self.generate(
            prompt=prompt,
            n=1,
            seeds=[0],
            settings=SamplingSettings(max_new_tokens=24, temperature=0.0),
        )[0]
        prov = self.provenance()
        context = f"; context {self.context_length} tokens" if self.context_length else ""
        return (
            f"Loaded in {self.load_seconds:.1f} s on {self.device} with {prov.get('backend')} "
            f"({prov.get('version')}; weights {prov.get('weights', '?')}){context}; test output "
            f"({out.completion_tokens} tokens in {time.monotonic() - started:.1f} s): "
            f"{out.text.strip()[:300]!r}"
        )


def render_chat_prompt(tokenizer: Any, *, system: str, user: str) -> str:
    """The exact text a local model sees: its chat template where the tokenizer has one, else
    the system and user texts joined by blank lines."""
    if getattr(tokenizer, "chat_template", None):
        messages = []
        if system.strip():
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": user})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [p.strip() for p in (system, user) if p.strip()]
    return "\n\n".join(parts) + "\n\n"


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a rendered prompt (the chat template already holds the special tokens)."""
    add_special = not getattr(tokenizer, "chat_template", None)
    return tokenizer(prompt, add_special_tokens=add_special)["input_ids"]


class LocalBackend(Backend):
    """A backend that runs the model in this process with the studio's tokenizer and sampler
    (transformers, ONNX, llama.cpp): the prompt, its tokens and the start of a call, once.
    Subclasses set ``tokenizer`` and ``_eos`` (the token ids that end a candidate)."""

    tokenizer: Any = None
    _eos: set[int]

    def render_prompt(self, *, system: str, user: str) -> str:
        return render_chat_prompt(self.tokenizer, system=system, user=user)

    def encode(self, prompt: str) -> list[int]:
        return encode_prompt(self.tokenizer, prompt)

    def count_tokens(self, prompt: str) -> int:
        return len(self.encode(prompt))

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def generate(
        self,
        *,
        prompt: str,
        n: int,
        seeds: Sequence[int],
        settings: SamplingSettings,
        on_delta: OnDelta | None = None,
        should_stop: ShouldStop | None = None,
        temperatures: Sequence[float] | None = None,
        preamble: str = "",
    ) -> list[CandidateOutput]:
        """As :meth:`Backend.generate`. A call starts here the same way on every local backend:
        the prompt's ids (checked against the context: raises PromptTooLong), the seeded sampler
        (``RowSampler``), and per candidate an empty output and an incremental decoder; the
        subclass decodes it (:meth:`decode_call`), and each candidate's text and counts are
        finished here (``finish_outputs``)."""
        from generation.backends.sampling import RowSampler, steer_ids

        prompt_ids = self.encode(prompt)
        if self.context_length is not None:
            check_prompt_length(
                prompt_tokens=len(prompt_ids),
                max_new_tokens=settings.max_new_tokens,
                context_length=self.context_length,
            )
        sampler = RowSampler(
            seeds=seeds,
            settings=settings,
            eos_ids=sorted(self._eos),
            temperatures=temperatures,
            steer=steer_ids(self.tokenizer, settings.steer_terms) if settings.steer_bias else (),
        )
        outputs = [CandidateOutput(index=i, seed=int(s)) for i, s in enumerate(seeds[:n])]
        call = Call(
            prompt_ids=prompt_ids,
            sampler=sampler,
            outputs=outputs,
            decoders=[IncrementalDecoder(self._decode) for _ in outputs],
            settings=settings,
            on_delta=on_delta,
            should_stop=should_stop,
            preamble=preamble,
        )
        cancelled = self.decode_call(call)
        return finish_outputs(
            outputs,
            call.decoders,
            prompt_tokens=len(prompt_ids),
            cancelled=cancelled,
            sampler=sampler,
        )

    @abstractmethod
    def decode_call(self, call: Call) -> bool:
        """Write ``call``'s candidates token by token into its outputs, streaming and polling as
        :meth:`Backend.generate` says; True when the call was cancelled."""


@dataclass
class Call:
    """One ``generate`` call of a local backend, as :meth:`LocalBackend.generate` starts it:
    the prompt's ids, the seeded sampler, per candidate its output and incremental decoder,
    and the caller's settings, streaming, cancelling and cached preamble."""

    prompt_ids: list[int]
    sampler: Any
    outputs: list[CandidateOutput]
    decoders: list[IncrementalDecoder]
    settings: SamplingSettings
    on_delta: OnDelta | None = None
    should_stop: ShouldStop | None = None
    preamble: str = ""


class IncrementalDecoder:
    """Token ids to text deltas for one candidate, never half a UTF-8 character.

    As in text-generation-inference: decode a short window and emit only complete characters.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self.ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, token: int) -> str:
        self.ids.append(int(token))
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        full = self._decode(self.ids[self._prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self._prefix_offset, self._read_offset = self._read_offset, len(self.ids)
            return clean_text(full[len(prefix) :])
        return ""

    def text(self) -> str:
        return clean_text(self._decode(self.ids))


def finish_outputs(
    outputs: list[CandidateOutput],
    decoders: list[IncrementalDecoder],
    *,
    prompt_tokens: int,
    cancelled: bool,
    sampler: Any = None,
) -> list[CandidateOutput]:
    """Each candidate's final text and counts; one still writing when the loop ended stopped at
    ``max_new_tokens`` ("length") or was stopped ("cancelled"). ``sampler`` (a ``RowSampler``)
    gives each its mean token log-probability."""
    now = time.monotonic()
    for out, decoder in zip(outputs, decoders, strict=True):
        if sampler is not None:
            out.mean_logprob = sampler.mean_logprob(out.index)
        out.text = decoder.text()
        out.completion_tokens = len(out.token_ids)
        out.prompt_tokens = prompt_tokens
        if not out.finished:
            out.finished, out.finished_at = True, now
            out.finish_reason = "cancelled" if cancelled else "length"
    return outputs


def file_checksum(path: Path, *, chunk: int = 1 << 22) -> str:
    """sha256 of a file, as "sha256:<hex>"."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


_checksums: dict[tuple[Any, ...], str] = {}
CHECKSUM_FILE = ".studio_weights_checksum.json"


def weights_checksum(directory: Path) -> str:
    """One checksum over a model directory's weight files.

    Hashing 500 MB takes seconds, so the result is kept per (name, size, mtime) of the files, in
    this process and in a small file beside the weights where the directory is writable.
    """
    names = sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix in {".safetensors", ".bin", ".onnx", ".data", ".gguf"}
    )
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in names)
    if stamp in _checksums:
        return _checksums[stamp]
    sidecar = directory / CHECKSUM_FILE
    try:
        stored = json.loads(sidecar.read_text())
        if [tuple(item) for item in stored["files"]] == list(stamp):
            _checksums[stamp] = str(stored["checksum"])
            return _checksums[stamp]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = hashlib.sha256()
    for p in names:
        digest.update(p.name.encode())
        digest.update(file_checksum(p).encode())
    checksum = f"sha256:{digest.hexdigest()}"
    _checksums[stamp] = checksum
    # A read-only model directory: the in-process cache still holds it.
    with contextlib.suppress(OSError):
        sidecar.write_text(json.dumps({"files": [list(x) for x in stamp], "checksum": checksum}))
    return checksum


def text_ids_to_score(
    tokenizer: Any,
    *,
    prompt_ids: list[int],
    text: str,
    context_length: int | None,
    max_tokens: int | None,
) -> tuple[list[int], bool]:
    """The tokens of ``text`` to score after ``prompt_ids``: what fits the context (and the cap),
    and whether some were left out. The text is tokenised on its own (no special tokens), as
    the model would have written it after the prompt."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    limit = len(ids)
    if context_length is not None:
        limit = min(limit, context_length - len(prompt_ids))
    if max_tokens is not None:
        limit = min(limit, max_tokens)
    limit = max(0, limit)
    return ids[:limit], limit < len(ids)


def take_token(
    out: CandidateOutput,
    token: int,
    *,
    eos: set[int],
    decoder: IncrementalDecoder,
    settings: SamplingSettings,
    now: float,
) -> str:
    """Record ``token`` as what candidate ``out`` writes next and return its text delta: at
    end-of-text the candidate ends (delta ""), at ``max_new_tokens`` it ends after the token."""
    if token in eos:
        out.finished, out.finish_reason, out.finished_at = True, "eos", now
        return ""
    out.token_ids.append(token)
    delta = decoder.push(token)
    if len(out.token_ids) >= settings.max_new_tokens:
        out.finished, out.finish_reason, out.finished_at = True, "length", now
    return delta


def step_candidates(
    generator: Any,
    call: Call,
    *,
    eos: set[int],
    drops_rows: bool = True,
    prefix: int = 0,
    step_lock: Any = None,
) -> bool:
    """The decoding loop the local backends share, on a generator that holds the KV cache.

    The generator takes the prompt once for its rows, one per candidate of ``call``
    (``append_tokens``), gives each row's next-token logits (``get_logits``: rows x 1 x vocab,
    the forward pass running there), and is told the tokens chosen (``set_next_tokens``). One
    that ``drops_rows`` is told which rows go on (``keep_rows``) when a candidate ends; one that
    does not computes a finished row to the end and is forced to the chosen tokens by one-hot
    logits (``set_logits`` and ``generate_next_token``: ONNX Runtime GenAI's generator).
    ``prefix``: how many of the prompt's first tokens a cached preamble holds. Streams through
    the call's ``on_delta``, polls its ``should_stop``; returns whether the loop was
    cancelled."""
    import numpy as np

    prompt_ids, outputs, decoders = call.prompt_ids, call.outputs, call.decoders
    sampler, settings, on_delta = call.sampler, call.settings, call.on_delta
    lock = step_lock if step_lock is not None else contextlib.nullcontext()
    n = len(outputs)
    eos_token = min(eos) if eos else 0
    rows = list(range(n))
    ids = np.array([prompt_ids] * n, dtype=np.int32)
    with lock:
        if drops_rows:
            generator.append_tokens(ids, prefix=prefix)
        else:
            generator.append_tokens(ids)
    for step in range(settings.max_new_tokens):
        if call.should_stop is not None and call.should_stop():
            return True
        with lock:  # the forward pass runs here (lazily)
            logits = generator.get_logits()  # (rows, 1, vocab)
        now = time.monotonic()
        deltas: list[str | None] = [None] * n
        tokens = [eos_token] * len(rows)
        for position, index in enumerate(rows):
            out = outputs[index]
            if out.finished:
                continue
            if out.first_token_at is None:
                out.first_token_at = now
            history = prompt_ids + out.token_ids
            token = sampler.choose(index, logits[position, -1], history, step)
            tokens[position] = token
            deltas[index] = take_token(
                out, token, eos=eos, decoder=decoders[index], settings=settings, now=now
            )
        if on_delta is not None:
            on_delta(deltas)
        if all(out.finished for out in outputs):
            break
        if drops_rows:
            keep = [p for p, index in enumerate(rows) if not outputs[index].finished]
            generator.keep_rows(keep)
            rows = [rows[p] for p in keep]
            generator.set_next_tokens([tokens[p] for p in keep])
        else:
            forced = np.full_like(logits, -np.inf)
            forced[np.arange(len(rows)), -1, tokens] = 0.0
            generator.set_logits(forced)
            generator.generate_next_token()
    return False
