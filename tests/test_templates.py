"""Prompt templates: the default renders what sdp always rendered; system, few-shot, fields, ChatML."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdp.sources import templates as T
from sdp.sources.templates import PromptTemplate, TemplateError, encode_prompt, render_prompt

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PROBLEM = {"id": "p1", "domain": "math", "prompt": "What is 2 + 3?", "answer": "5", "level": "Level 1"}
SHOT = {"prompt": "What is 1 + 1?", "completion": "1 + 1 = 2. \\boxed{2}", "level": "Level 1"}


def _tokenizer(chat_template: str | None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|eos|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(["What is 2 + 3? The answer is \\boxed{5}."] * 10, trainer)
    out = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>", pad_token="<|eos|>", bos_token="<|eos|>")
    out.chat_template = chat_template
    return out


@pytest.fixture(scope="module")
def plain():
    return _tokenizer(None)


@pytest.fixture(scope="module")
def chatml(tmp_path_factory):
    """A tiny Llama saved with a ChatML tokenizer, loaded back as a user's model would be."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out: Path = tmp_path_factory.mktemp("chatml-model")
    tok = _tokenizer(CHATML)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=256)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out, AutoTokenizer.from_pretrained(out)


def test_default_renders_exactly_what_the_sampler_renders(plain, chatml):
    from sdp.stages import sample

    _, chat = chatml
    assert T.PLAIN_PROMPT_TEMPLATE == sample.PLAIN_PROMPT_TEMPLATE
    for tok in (plain, chat):
        for prompt in ("Hi?", PROBLEM["prompt"], "Use \\boxed{} and {braces} {{x}}\n"):
            assert render_prompt(tok, {"prompt": prompt}) == sample.render_prompt(tok, prompt)
            assert render_prompt(tok, prompt) == sample.render_prompt(tok, prompt)
            rendered = render_prompt(tok, prompt)
            assert encode_prompt(tok, rendered) == sample.encode_prompt(tok, rendered)
    assert render_prompt(plain, "Hi?") == "Hi?\n"


def test_chatml_with_system_and_few_shot(chatml):
    model_dir, tok = chatml
    template = PromptTemplate(system_prompt="Reason step by step.", few_shot=(SHOT,),
                              prompt_template="{prompt}\nPut your final answer within \\boxed{}.")  # fmt: skip
    text = render_prompt(tok, PROBLEM, template)
    assert text == (
        "<|im_start|>system\nReason step by step.<|im_end|>\n"
        "<|im_start|>user\nWhat is 1 + 1?\nPut your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>assistant\n1 + 1 = 2. \\boxed{2}<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 3?\nPut your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = encode_prompt(tok, text, template)
    assert tok.convert_tokens_to_ids("<|im_start|>") in ids and ids[0] != tok.bos_token_id  # no BOS added
    assert tok.decode(ids) == text
    # The tiny model takes the rendered prompt (the chat special tokens are in its vocabulary).
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tok))


def test_plain_text_with_system_few_shot_and_fields(plain):
    template = PromptTemplate(system_prompt="Be brief.", prompt_template="[{level}] {prompt}", few_shot=(SHOT,))
    assert render_prompt(plain, PROBLEM, template) == (
        "Be brief.\n\n[Level 1] What is 1 + 1?\n1 + 1 = 2. \\boxed{2}\n\n[Level 1] What is 2 + 3?\n"
    )


def test_use_chat_template_forced_either_way(plain, chatml):
    _, chat = chatml
    off = PromptTemplate(use_chat_template=False)
    assert render_prompt(chat, PROBLEM, off) == "What is 2 + 3?\n"
    # Plain text on a chat tokenizer is encoded as plain text is (with the tokenizer's special tokens).
    assert encode_prompt(chat, "What?\n", off) == chat("What?\n", add_special_tokens=True)["input_ids"]
    with pytest.raises(TemplateError, match="no chat template"):
        render_prompt(plain, PROBLEM, PromptTemplate(use_chat_template=True))
    assert PromptTemplate.from_config(use_chat_template="false") == off
    assert PromptTemplate.from_config() == T.DEFAULT_TEMPLATE and T.DEFAULT_TEMPLATE.is_default


# (template kwargs, words the error must contain)
BAD_TEMPLATES = [
    ({"prompt_template": "{prompt} (gold: {answer})"}, ["gold", "answer"]),
    ({"prompt_template": "{prompt}\n{tests}"}, ["gold", "tests"]),
    ({"few_shot": ({"prompt": "x"},)}, ["few_shot[0]", "completion"]),
    ({"few_shot": ({"prompt": "x", "completion": "y"},), "prompt_template": "{level}: {prompt}"}, ["few_shot[0]", "{level}"]),
    ({"use_chat_template": "maybe"}, ["use_chat_template"]),
]


@pytest.mark.parametrize(("kwargs", "words"), BAD_TEMPLATES)
def test_bad_templates_are_rejected(kwargs, words):
    with pytest.raises(TemplateError) as err:
        PromptTemplate(**kwargs)
    for word in words:
        assert word in str(err.value)


def test_missing_field_names_the_problem(plain):
    with pytest.raises(TemplateError, match=r"problem 'p1'.*\{source\}"):
        render_prompt(plain, PROBLEM, PromptTemplate(prompt_template="{source}: {prompt}"))
