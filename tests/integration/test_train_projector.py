"""`mmstream train projector` with the real CLIP and LLM files: reproducible from its seed, loadable."""

from shared.config import Settings
from training.image_projector import SLOTS, ProjectorTrainConfig, train_image_projector
from workers.fusion.projector import Projector


def test_a_short_training_is_reproducible_and_fits_the_decoder(tmp_path):
    config = ProjectorTrainConfig(seed=3, train_images=128, eval_images=32, epochs=2, threads=1)
    first = train_image_projector(config, Settings(), out=tmp_path / "a.safetensors", log=False)
    second = train_image_projector(config, Settings(), out=tmp_path / "b.safetensors", log=False)
    assert first.sha256 == second.sha256
    assert set(first.held_out_word_accuracy) == set(SLOTS)
    meta = Projector.load(tmp_path / "a.safetensors").meta
    assert (meta.modality, meta.encoder, meta.k, meta.slots) == ("image", "mmstream-clip-tiny", 5, " ".join(SLOTS))
    assert meta.llm_sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def test_a_short_speech_projector_training_is_reproducible(tmp_path):
    from training.speech_projector import SpeechTrainConfig, train_speech_projector
    from workers.fusion.speech import SpeechProjector

    config = SpeechTrainConfig(seed=3, train_utterances=16, eval_utterances=4, epochs=1, threads=1)
    first = train_speech_projector(config, Settings(), out=tmp_path / "a.safetensors", log=False)
    second = train_speech_projector(config, Settings(), out=tmp_path / "b.safetensors", log=False)
    assert first.sha256 == second.sha256
    meta = SpeechProjector.load(tmp_path / "a.safetensors").meta
    assert (meta.modality, meta.encoder, meta.stack) == ("audio", "bundled:whisper-tiny.en", 4)
