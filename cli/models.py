"""`mmstream models`: resolve every configured model and show where it is and its sha256."""

from __future__ import annotations

import json

from shared.config import Settings
from shared.errors import ModelError
from shared.models import resolve_model


def list_models(settings: Settings, *, as_json: bool) -> int:
    from workers.image.bundled import BUNDLED_SHA256, BUNDLED_WEIGHTS

    clip = (
        (str(BUNDLED_WEIGHTS), BUNDLED_SHA256)
        if settings.clip_pretrained == "bundled"
        else (settings.clip_pretrained, settings.clip_pretrained_sha256)
    )
    configured = {
        "decoder": (settings.decoder_model, settings.decoder_model_sha256),
        "hearing": (settings.asr_model, settings.asr_model_sha256),
        "image": clip,
        "voice": (settings.tts_voice, settings.tts_voice_sha256),
        "turns": (settings.turn_model, settings.turn_model_sha256),
    }
    if settings.turn_text_model:
        configured["turn words"] = (settings.turn_text_model, settings.turn_text_model_sha256)
    rows = []
    failed = False
    for role, (spec, sha) in configured.items():
        if role == "image" and not spec.endswith((".safetensors", ".pt", ".bin")):
            rows.append(
                {
                    "role": role,
                    "spec": f"{settings.clip_model} / {spec}",
                    "path": "(open_clip hub)",
                    "sha256": "-",
                    "source": "hub",
                }
            )
            continue
        try:
            m = resolve_model(
                spec,
                settings.models_dir,
                allow_downloads=settings.allow_downloads,
                expected_sha256=sha,
                wheels_dir=settings.wheels_dir,
            )
            rows.append({"role": role, "spec": spec, "path": str(m.path), "sha256": m.sha256, "source": m.source})
        except ModelError as exc:
            failed = True
            rows.append({"role": role, "spec": spec, "error": str(exc)})
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            detail = f"{r['path']}\n    sha256 {r['sha256']} ({r['source']})" if "path" in r else f"ERROR {r['error']}"
            print(f"{r['role']:<10} {r['spec']}\n    {detail}")
    return 1 if failed else 0
