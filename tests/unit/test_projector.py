import numpy as np
import pytest
import torch

from training.image_projector import TorchProjector
from workers.fusion.projector import Projector, ProjectorMeta, ProjectorMismatch, save_projector, soft_token_ids

META = ProjectorMeta(
    modality="image",
    encoder="mmstream-clip-tiny",
    encoder_dim=16,
    llm="model.gguf",
    llm_sha256="ab" * 32,
    llm_dim=24,
    k=3,
    hidden=32,
)


def _saved(tmp_path) -> tuple[Projector, TorchProjector]:
    torch.manual_seed(0)
    twin = TorchProjector(META.encoder_dim, META.hidden, META.k, META.llm_dim)
    path = tmp_path / "p.safetensors"
    save_projector(path, META, {n: t.detach().numpy() for n, t in twin.state_dict().items()})
    return Projector.load(path), twin


def test_numpy_inference_matches_the_torch_module_it_was_trained_as(tmp_path):
    projector, twin = _saved(tmp_path)
    assert projector.meta == META
    x = np.random.default_rng(0).normal(size=META.encoder_dim).astype(np.float32)
    want = twin(torch.from_numpy(x)[None]).detach().numpy()[0]
    got = projector(x)
    assert got.shape == (META.k, META.llm_dim)
    np.testing.assert_allclose(got, want, atol=2e-2)  # weights are stored as fp16


def test_a_projector_for_other_models_is_refused_with_the_reason(tmp_path):
    projector, _ = _saved(tmp_path)
    projector.meta.check(modality="image", llm_sha256="ab" * 32, llm_dim=24)
    with pytest.raises(ProjectorMismatch, match="trained for model.gguf"):
        projector.meta.check(modality="image", llm_sha256="cd" * 32, llm_dim=24)
    with pytest.raises(ProjectorMismatch, match="width 896"):
        projector.meta.check(modality="image", llm_sha256="ab" * 32, llm_dim=896)
    with pytest.raises(ProjectorMismatch, match="not an audio one"):
        projector.meta.check(modality="audio", llm_sha256="ab" * 32, llm_dim=24)
    with pytest.raises(ProjectorMismatch, match="expects mmstream-clip-tiny embeddings of width 16"):
        projector.meta.check_input("ViT-B-32", (512,))


def test_a_file_without_our_header_is_refused(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(path))
    with pytest.raises(ProjectorMismatch, match="not an mmstream projector"):
        Projector.load(path)


def test_soft_token_ids_are_negative_stable_and_follow_the_vector():
    rows = np.eye(3, dtype=np.float32)
    ids = soft_token_ids(rows)
    assert all(i < 0 for i in ids) and len(set(ids)) == 3
    assert soft_token_ids(rows.copy()) == ids
    assert soft_token_ids(rows * 2) != ids


def test_the_decoder_refuses_a_named_projector_that_does_not_fit(tmp_path):
    from shared.config import Settings
    from workers.fusion.inputs import load_projectors

    _saved(tmp_path)
    named = Settings(image_projector=str(tmp_path / "p.safetensors"), audio_projector="none")
    assert load_projectors(named, llm_sha256="ab" * 32, llm_dim=24).image is not None
    with pytest.raises(ProjectorMismatch, match="train one for this model"):
        load_projectors(named, llm_sha256="ef" * 32, llm_dim=24)
    # The bundled projectors only fit the default models: with others they are set aside, not fatal.
    bundled = load_projectors(Settings(), llm_sha256="ef" * 32, llm_dim=24)
    assert bundled.image is None and bundled.audio is None
    off = load_projectors(Settings(image_projector="none", audio_projector="none"), llm_sha256="ab" * 32, llm_dim=24)
    assert off.image is None and off.audio is None


def test_speech_projector_matches_its_torch_twin_and_collapses_runs(tmp_path):
    from training.speech_projector import TorchSpeechProjector
    from workers.fusion.speech import SpeechProjector

    torch.manual_seed(0)
    rows = torch.randn(4, 24)
    twin = TorchSpeechProjector(encoder_dim=8, stack=2, hidden=16, llm_dim=24, rows=rows)
    weights = {n: t.detach().numpy() for n, t in twin.state_dict().items() if n not in ("rows", "blank")}
    weights["vocab_rows"] = torch.cat([twin.blank[None], rows]).detach().numpy()
    weights["vocab_ids"] = np.asarray([-1, 5, 6, 7, 8], dtype=np.float32)
    meta = ProjectorMeta("audio", "whisper", 8, "model.gguf", "ab" * 32, 24, k=0, hidden=16, stack=2)
    save_projector(tmp_path / "s.safetensors", meta, weights)
    projector = SpeechProjector.load(tmp_path / "s.safetensors")

    states = np.random.default_rng(1).normal(size=(11, 8)).astype(np.float32)  # 11 frames -> 5 vectors
    want = twin(torch.from_numpy(states)[None]).detach().numpy()[0]
    np.testing.assert_allclose(projector.frames(states), want, atol=2e-2)
    soft = projector(states)
    assert soft.shape[1] == 24 and 0 <= len(soft) <= 5
    # Each soft token has the length of the vocabulary row it is nearest to.
    lengths = np.linalg.norm(weights["vocab_rows"][1:], axis=1)
    assert all(np.isclose(np.linalg.norm(v), lengths, rtol=1e-2).any() for v in soft)


@pytest.mark.parametrize("llm", ["qwen2.5-coder-0.5b-instruct-q4_k_m", "qwen2.5-coder-1.5b-instruct-q4_k_m"])
@pytest.mark.parametrize("modality", ["image", "audio"])
def test_each_bundled_language_model_has_both_projectors(llm: str, modality: str):
    from shared.models import BUNDLED, sha256_file
    from workers.fusion.bundled import bundled_projector
    from workers.fusion.projector import read_projector

    llm_sha256 = next(iter(BUNDLED[llm].files.values())).sha256
    shipped = bundled_projector(modality, llm_sha256)  # type: ignore[arg-type]
    assert shipped is not None and shipped.path.is_file(), f"no bundled {modality} projector for {llm}"
    assert sha256_file(shipped.path) == shipped.sha256
    meta = read_projector(shipped.path)[0]
    assert (meta.modality, meta.llm_sha256) == (modality, llm_sha256)
