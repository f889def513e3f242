"""Tiny random-weight models built offline from configs: for the demo, the offline preset and tests.

Their outputs are not meaningful; they exist so the whole pipeline runs with no model hub. Each builder
writes a folder laid out like a hub checkpoint, loaded through the same code path as real model names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vlcli.backends.base import require

BANNER = (
    "offline models: tiny random-weight stand-ins are used, so crops, scores and other model outputs are "
    "NOT meaningful; use the real models (the default outside `vl demo`) for real data"
)


def tiny_dinov2(folder: str | os.PathLike[str], image_size: int = 56, seed: int = 0) -> str:
    """A 2-layer random DINOv2 with its image processor in `folder` (reused if already there)."""
    path = Path(folder)
    if (path / "config.json").exists() and (path / "preprocessor_config.json").exists():
        return str(path)
    torch = require("torch")
    transformers = require("transformers")
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = transformers.Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=image_size,
        patch_size=14,
    )
    processor = transformers.BitImageProcessor(
        size={"shortest_edge": image_size + image_size // 7},
        crop_size={"height": image_size, "width": image_size},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    path.mkdir(parents=True, exist_ok=True)
    transformers.Dinov2Model(config).save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def tiny_image_classifier(
    folder: str | os.PathLike[str],
    labels: tuple[str, ...] = ("normal", "nsfw"),
    seed: int = 0,
    problem_type: str | None = None,
) -> str:
    """A 2-layer random ViT image classifier with `labels` and its processor in `folder`."""
    path = Path(folder)
    if (path / "config.json").exists() and (path / "preprocessor_config.json").exists():
        return str(path)
    torch = require("torch")
    transformers = require("transformers")
    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type=problem_type,
    )
    processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    path.mkdir(parents=True, exist_ok=True)
    transformers.ViTForImageClassification(config).save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


TOKENIZER_CORPUS = (
    "a photo of a dog running on the beach",
    "two cats sleeping on a red couch",
    "a man riding a bike down a busy street",
    "a plate of food with rice and green vegetables",
    "a sign with white text on a brick wall",
    "a group of people standing in a field",
    "a bus parked next to a tall building at night",
    "a close up of a bird sitting on a tree branch",
)


def _tiny_wordpiece() -> Any:
    """A BERT-style uncased WordPiece tokenizer over the words and letters of a few captions, with BLIP's
    `[DEC]` bos token. Its vocabulary is listed, not trained: `tokenizers`' trainer breaks ties in another
    order in each process, so the demo's captions (and all that follows from them) changed from run to run."""
    transformers = require("transformers")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    words = sorted({word for caption in TOKENIZER_CORPUS for word in caption.split()})
    letters = sorted({letter for word in words for letter in word})
    tokens = dict.fromkeys([*specials, *letters, *(f"##{letter}" for letter in letters), *words])
    return transformers.BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, bos_token="[DEC]")


def _tiny_vit_config(image_size: int) -> dict[str, Any]:
    # A wider init than the default 0.02, so different images give different captions.
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": 8,
        "initializer_range": 0.1,
    }


def tiny_blip(folder: str | os.PathLike[str], image_size: int = 32, seed: int = 0) -> str:
    """A 2-layer random BLIP captioner with its processor and WordPiece tokenizer in `folder`."""
    path = Path(folder)
    if (path / "config.json").exists() and (path / "processor_config.json").exists():
        return str(path)
    torch = require("torch")
    transformers = require("transformers")
    transformers.utils.logging.disable_progress_bar()
    tokenizer = _tiny_wordpiece()
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "encoder_hidden_size": 32,
        "max_position_embeddings": 64,
        "initializer_range": 0.1,
        # BLIP's generate reads these ids from the config, not from the tokenizer
        "bos_token_id": tokenizer.bos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "sep_token_id": tokenizer.sep_token_id,
        "eos_token_id": tokenizer.sep_token_id,
    }
    config = transformers.BlipConfig(
        vision_config=_tiny_vit_config(image_size), text_config=text, projection_dim=32, initializer_range=0.1
    )
    image_processor = transformers.BlipImageProcessor(size={"height": image_size, "width": image_size})
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    transformers.BlipForConditionalGeneration(config).save_pretrained(path)
    transformers.BlipProcessor(image_processor, tokenizer).save_pretrained(path)
    return str(path)


def tiny_blip2(folder: str | os.PathLike[str], image_size: int = 32, seed: int = 0) -> str:
    """A 2-layer random BLIP-2 (Q-Former + OPT decoder) with its processor and tokenizer in `folder`."""
    path = Path(folder)
    if (path / "config.json").exists() and (path / "processor_config.json").exists():
        return str(path)
    torch = require("torch")
    transformers = require("transformers")
    transformers.utils.logging.disable_progress_bar()
    num_query_tokens = 4
    image_processor = transformers.BlipImageProcessor(size={"height": image_size, "width": image_size})
    # the processor adds the `<image>` token the query outputs are written into
    processor = transformers.Blip2Processor(
        image_processor, _tiny_wordpiece(), num_query_tokens=num_query_tokens
    )
    tokenizer = processor.tokenizer
    qformer = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    text = {
        "model_type": "opt",
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "word_embed_proj_dim": 32,
        "ffn_dim": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "init_std": 0.1,
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = transformers.Blip2Config(
        vision_config=_tiny_vit_config(image_size),
        qformer_config={**qformer, "encoder_hidden_size": 32, "vocab_size": len(tokenizer)},
        text_config=text,
        num_query_tokens=num_query_tokens,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        initializer_range=0.1,
    )
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    transformers.Blip2ForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def tiny_clip(folder: str | os.PathLike[str], seed: int = 0) -> str:
    """A 2-layer random open_clip model (its BPE vocabulary ships with open_clip) as a checkpoint folder."""
    path = Path(folder)
    config_file, weights_file = path / "open_clip_config.json", path / "open_clip_model.safetensors"
    if config_file.exists() and weights_file.exists():
        return str(path)
    torch = require("torch")
    open_clip = require("open_clip")
    safetensors_torch = require("safetensors.torch")
    model_cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    safetensors_torch.save_file(open_clip.CLIP(**model_cfg).state_dict(), weights_file)
    # written last: a folder with this file is complete
    config_file.write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}, indent=2))
    return str(path)


CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CAUSAL_LM_CORPUS = (
    *TOKENIZER_CORPUS,
    "Question: how many dogs are on the beach? Answer: two. Reasoning: step 1, count the dogs.",
    '{"question": "What colour is the couch?", "options": ["A", "B", "C", "D"], "answer": "B"}',
    "Write two hard multiple-choice questions about the image, with four options and the answer.",
)


def _tiny_byte_bpe() -> Any:
    """A byte-level BPE tokenizer (any text round-trips) trained on a few sentences, with a ChatML template."""
    transformers = require("transformers")
    tokenizers = require("tokenizers")
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CAUSAL_LM_CORPUS, trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def tiny_causal_lm(folder: str | os.PathLike[str], seed: int = 0) -> str:
    """A 2-layer random Qwen2 chat model with a byte-level BPE tokenizer and chat template in `folder`."""
    path = Path(folder)
    if (path / "config.json").exists() and (path / "tokenizer_config.json").exists():
        return str(path)
    torch = require("torch")
    transformers = require("transformers")
    transformers.utils.logging.disable_progress_bar()
    tokenizer = _tiny_byte_bpe()
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        # A wider init than the default 0.02: peaked logits make greedy replies varied and padding-stable.
        initializer_range=0.2,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    transformers.Qwen2ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)  # written last: a folder with tokenizer_config.json is complete
    return str(path)
