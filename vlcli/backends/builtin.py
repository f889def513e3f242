"""Registers the built-in backends; each module imports its heavy library only when built."""

from __future__ import annotations

from typing import Any

from vlcli.backends.base import register


@register("embedder", "transformers")
def _transformers_embedder(**options: Any) -> Any:
    from vlcli.backends.dinov2 import TransformersEmbedder

    return TransformersEmbedder(**options)


@register("nsfw", "nudenet")
def _nudenet_scorer(**options: Any) -> Any:
    from vlcli.backends.nudenet_backend import NudeNetScorer

    return NudeNetScorer(**options)


@register("nsfw", "hf")
def _hf_nsfw_classifier(**options: Any) -> Any:
    from vlcli.backends.hf_classifier import HFNsfwClassifier

    return HFNsfwClassifier(**options)


@register("detector", "ultralytics")
def _ultralytics_detector(**options: Any) -> Any:
    from vlcli.backends.yolo import UltralyticsDetector

    return UltralyticsDetector(**options)


@register("captioner", "transformers")
def _transformers_captioner(**options: Any) -> Any:
    from vlcli.backends.captioner import TransformersCaptioner

    return TransformersCaptioner(**options)


@register("clip", "open_clip")
def _open_clip_scorer(**options: Any) -> Any:
    from vlcli.backends.clip import OpenClipScorer

    return OpenClipScorer(**options)


@register("ocr", "rapidocr")
def _rapidocr_reader(**options: Any) -> Any:
    from vlcli.backends.ocr import RapidOcrReader

    return RapidOcrReader(**options)


@register("ocr", "paddleocr")
def _paddleocr_reader(**options: Any) -> Any:
    from vlcli.backends.ocr import PaddleOcrReader

    return PaddleOcrReader(**options)


@register("generator", "openai")
def _openai_generator(**options: Any) -> Any:
    from vlcli.backends.openai_backend import OpenAICompatibleGenerator

    return OpenAICompatibleGenerator(**options)


@register("generator", "vllm")
def _vllm_generator(**options: Any) -> Any:
    from vlcli.backends.vllm_backend import VllmGenerator

    return VllmGenerator(**options)


@register("generator", "transformers")
def _transformers_generator(**options: Any) -> Any:
    from vlcli.backends.transformers_generator import TransformersGenerator

    return TransformersGenerator(**options)


@register("generator", "stub")
def _stub_generator(**options: Any) -> Any:
    from vlcli.backends.stub_generator import StubGenerator

    return StubGenerator(**options)
