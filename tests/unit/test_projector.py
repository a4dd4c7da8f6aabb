import numpy as np
import pytest
import torch

from workers.fusion.projector import Projector, ProjectorMeta, ProjectorMismatch, save_projector, soft_token_ids
from workers.fusion.train import TorchProjector

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
    from workers.fusion.inputs import load_image_projector

    _saved(tmp_path)
    settings = Settings(image_projector=str(tmp_path / "p.safetensors"))
    assert load_image_projector(settings, llm_sha256="ab" * 32, llm_dim=24) is not None
    with pytest.raises(ProjectorMismatch, match="train one for this model"):
        load_image_projector(settings, llm_sha256="ef" * 32, llm_dim=24)
    # The bundled projector only fits the default models: with others it is set aside, not fatal.
    assert load_image_projector(Settings(image_projector="bundled"), llm_sha256="ef" * 32, llm_dim=24) is None
    assert load_image_projector(Settings(image_projector="none"), llm_sha256="ab" * 32, llm_dim=24) is None
