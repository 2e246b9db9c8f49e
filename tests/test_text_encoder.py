"""CLIP tokenizer ids, HF-compatible parameter names and the masking semantics of the text tower."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from glee.model.config import TextConfig
from glee.model.text_encoder import BOS_ID, EOS_ID, CLIPTextEncoder, ClipTokenizer

DATA = Path(__file__).parent / "data"
SMALL = TextConfig(vocab_size=100, width=32, layers=2, heads=4, mlp_dim=64, context_length=20)

# Ids of openai/clip-vit-base-patch32's tokenizer, as recorded in the GLEE-Lite parity fixture.
KNOWN_IDS = {
    "a photo of a cat": [320, 1125, 539, 320, 2368],
    "cat": [2368],
    "green triangle": [1901, 14615],
    "yellow star": [4481, 1565],
    "car": [1615],
    "person": [2533],
    "the blue square on the right": [518, 1746, 3999, 525, 518, 1155],
    "object": [14115],
}


@pytest.fixture(scope="module")
def tokenizer() -> ClipTokenizer:
    return ClipTokenizer()


@pytest.mark.parametrize("text", sorted(KNOWN_IDS))
def test_known_ids_padded_to_77(tokenizer: ClipTokenizer, text: str) -> None:
    ids, mask = tokenizer([text])
    expected = [BOS_ID, *KNOWN_IDS[text], EOS_ID]
    assert ids.dtype == torch.long and mask.dtype == torch.long
    assert ids.shape == mask.shape == (1, 77)
    assert ids[0, : len(expected)].tolist() == expected
    assert ids[0, len(expected) :].eq(EOS_ID).all()
    assert mask[0].tolist() == [1] * len(expected) + [0] * (77 - len(expected))


def test_lower_cases_like_clip(tokenizer: ClipTokenizer) -> None:
    upper, _ = tokenizer(["The Blue SQUARE on the right"])
    lower, _ = tokenizer(["the blue square on the right"])
    assert torch.equal(upper, lower)


def test_pad_to_none_pads_to_longest_real_length(tokenizer: ClipTokenizer) -> None:
    ids, mask = tokenizer(["cat", "green triangle", "the blue square on the right"], pad_to=None)
    assert ids.shape == (3, 8)
    assert mask.sum(1).tolist() == [3, 4, 8]
    assert ids[0].tolist() == [BOS_ID, 2368, EOS_ID] + [EOS_ID] * 5
    assert mask[0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]


def test_truncation_keeps_bos_first_and_eos_last(tokenizer: ClipTokenizer) -> None:
    long_text = "a photo of a cat " * 40
    for pad_to in (77, None):
        ids, mask = tokenizer([long_text, "cat"], pad_to=pad_to)
        assert ids.shape == (2, 77)
        assert mask[0].all()
        assert ids[0, 0] == BOS_ID and ids[0, -1] == EOS_ID
        assert ids[0, 1:6].tolist() == KNOWN_IDS["a photo of a cat"]
        assert ids[0, -2] != EOS_ID


def test_short_pad_to_truncates(tokenizer: ClipTokenizer) -> None:
    ids, mask = tokenizer(["the blue square on the right"], pad_to=4)
    assert ids.tolist() == [[BOS_ID, 518, 1746, EOS_ID]]
    assert mask.tolist() == [[1, 1, 1, 1]]


@pytest.mark.parametrize("bad", [[], "cat", ["cat", None], [3]])
def test_rejects_bad_texts(tokenizer: ClipTokenizer, bad: object) -> None:
    with pytest.raises(ValueError):
        tokenizer(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("pad_to", [1, 78])
def test_rejects_pad_to_outside_context(tokenizer: ClipTokenizer, pad_to: int) -> None:
    with pytest.raises(ValueError):
        tokenizer(["cat"], pad_to=pad_to)


def _reference_keys() -> dict[str, tuple[int, ...]]:
    keys = {}
    for line in (DATA / "glee-lite-statedict-keys.tsv").read_text().splitlines():
        if line.startswith("text_encoder."):
            name, shape, _ = line.split("\t")
            keys[name] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return keys


def test_state_dict_matches_official_text_encoder_keys() -> None:
    with torch.device("meta"):
        encoder = CLIPTextEncoder(TextConfig())
    ours = {f"text_encoder.{k}": tuple(v.shape) for k, v in encoder.state_dict().items()}
    reference = _reference_keys()
    assert len(reference) == 196
    assert ours == reference


def test_matches_hf_clip_text_model_golden() -> None:
    """Golden output of a tiny transformers-4.36.2 ``CLIPTextModel`` (random weights, padded batch)."""
    golden = load_file(DATA / "clip_text_tiny_hf.safetensors")
    cfg = TextConfig(vocab_size=64, width=32, layers=2, heads=4, mlp_dim=64, context_length=16)
    encoder = CLIPTextEncoder(cfg).eval()
    state = {k.removeprefix("model."): v for k, v in golden.items() if k.startswith("model.")}
    encoder.load_state_dict(state, strict=True)
    with torch.no_grad():
        out = encoder(golden["input_ids"], golden["attention_mask"])
    # Padding positions included: GLEE's early fusion consumes them.
    torch.testing.assert_close(out, golden["last_hidden_state"], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def small_encoder() -> CLIPTextEncoder:
    torch.manual_seed(0)
    return CLIPTextEncoder(SMALL).eval()


def _batch(lengths: list[int], total: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(0, SMALL.vocab_size, (len(lengths), total), generator=gen)
    mask = (torch.arange(total)[None] < torch.tensor(lengths)[:, None]).long()
    return ids, mask


def test_output_shape_and_finite(small_encoder: CLIPTextEncoder) -> None:
    ids, mask = _batch([20, 6, 1], 20)
    with torch.no_grad():
        out = small_encoder(ids, mask)
    assert out.shape == (3, 20, SMALL.width)
    assert torch.isfinite(out).all()


def test_fully_masked_rows_stay_finite(small_encoder: CLIPTextEncoder) -> None:
    ids, mask = _batch([5], 8)
    mask[0, 0] = 0
    with torch.no_grad():
        assert torch.isfinite(small_encoder(ids, mask)).all()


def test_real_length_equals_padded_prefix(small_encoder: CLIPTextEncoder) -> None:
    ids, mask = _batch([6, 3], 20)
    with torch.no_grad():
        padded = small_encoder(ids, mask)
        short = small_encoder(ids[:, :6], mask[:, :6])
        exact = small_encoder(ids[1:, :3], mask[1:, :3])
    torch.testing.assert_close(short[0], padded[0, :6], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short[1, :3], padded[1, :3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(exact[0], padded[1, :3], atol=1e-5, rtol=1e-5)


def test_causal_later_token_does_not_change_earlier_outputs(small_encoder: CLIPTextEncoder) -> None:
    ids, mask = _batch([12], 12)
    changed = ids.clone()
    changed[0, 7] = (ids[0, 7] + 1) % SMALL.vocab_size
    with torch.no_grad():
        a, b = small_encoder(ids, mask), small_encoder(changed, mask)
    torch.testing.assert_close(a[0, :7], b[0, :7], atol=0, rtol=0)
    assert not torch.allclose(a[0, 7:], b[0, 7:])


def test_padding_keys_are_invisible(small_encoder: CLIPTextEncoder) -> None:
    """A padding token only changes its own output: later padding queries must not attend to it."""
    ids, mask = _batch([4], 12)
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % SMALL.vocab_size
    with torch.no_grad():
        a, b = small_encoder(ids, mask), small_encoder(changed, mask)
    assert not torch.allclose(a[0, 6], b[0, 6])
    others = [i for i in range(12) if i != 6]
    torch.testing.assert_close(a[0, others], b[0, others], atol=1e-6, rtol=1e-6)


def test_rejects_sequences_longer_than_context(small_encoder: CLIPTextEncoder) -> None:
    ids, mask = _batch([3], SMALL.context_length + 1)
    with pytest.raises(ValueError):
        small_encoder(ids, mask)
