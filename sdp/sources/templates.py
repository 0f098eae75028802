"""Prompt templates: the one place a problem becomes the text the model sees.

Sampling, SFT (the prompts of `sft.jsonl`) and evaluation all call `render_prompt(tokenizer,
problem, template)`, so the model is trained on exactly the prompts it is sampled and scored on.

A `PromptTemplate` has a `system_prompt`, a `prompt_template` (the user turn: `{prompt}` and any
of the problem's fields, e.g. `"{prompt}\\nPut your final answer within \\boxed{}."`), optional
`few_shot` examples (`{prompt, completion}` plus fields, rendered through the same template) and
`use_chat_template` (`auto`: the tokenizer's chat template when it has one). Placeholders are
`{name}` with `name` an identifier; any other brace is literal (so `\\boxed{}` needs no escaping),
and `{{`/`}}` are literal braces. Gold fields cannot be placeholders: a template must not show the
model what it is checked against. Each verifier declares its own (`gold_fields = ("answer",)`,
`verifiers.registry.gold_fields`): the template is checked against those of every registered
verifier when it is built, and each problem against those of its own `domain` (a dotted-path
plugin included) when it is rendered.

The default template renders exactly what sdp always did: with a chat template, one user message
with `add_generation_prompt=True`; without one, `PLAIN_PROMPT_TEMPLATE = "{prompt}\\n"`.
Without a chat template, a system prompt and few-shot examples are joined as plain text:
`system\\n\\n` + `user\\ncompletion\\n\\n` per example + `user\\n`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

PLAIN_PROMPT_TEMPLATE = "{prompt}\n"
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*)\}")


class TemplateError(ValueError):
    """A template that cannot render a problem (unknown field, gold field, no chat template)."""


def placeholders(text: str) -> list[str]:
    """The field names `text` substitutes, in order."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(text) if m.group(1)]


def _fill(text: str, values: Mapping[str, Any], what: str) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name is None:
            return m.group()[0]
        if name not in values or values[name] is None:
            raise TemplateError(f"{what}: prompt_template uses {{{name}}}, which the problem does not have")
        return str(values[name])

    return _PLACEHOLDER.sub(sub, text)


@dataclass(frozen=True)
class PromptTemplate:
    """How a problem is shown to the model (see the module docstring)."""

    system_prompt: str | None = field(default=None, metadata={"help": "System message (None: no system turn)."})
    prompt_template: str = field(
        default="{prompt}", metadata={"help": "The user turn: `{prompt}` and the problem's fields as `{field}`."}
    )
    few_shot: tuple[Mapping[str, Any], ...] = field(
        default=(), metadata={"help": "Worked examples {prompt, completion, ...} shown before the problem."}
    )
    use_chat_template: Literal["auto", True, False] = field(
        default="auto", metadata={"help": "Use the tokenizer's chat template: auto (if it has one), true, false."}
    )

    def __post_init__(self) -> None:
        if self.use_chat_template not in ("auto", True, False):
            raise TemplateError(f"use_chat_template must be auto, true or false, got {self.use_chat_template!r}")
        if not isinstance(self.prompt_template, str):
            raise TemplateError("prompt_template must be a string")
        from verifiers.registry import gold_fields

        gold = sorted(set(placeholders(self.prompt_template)) & gold_fields())
        if gold:
            raise TemplateError(f"prompt_template must not show gold fields to the model: {gold}")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise TemplateError("system_prompt must be a string or null")
        shots = tuple(self.few_shot or ())
        for i, shot in enumerate(shots):
            if not isinstance(shot, Mapping) or not all(isinstance(shot.get(k), str) for k in ("prompt", "completion")):
                raise TemplateError(f"few_shot[{i}] must be a mapping with string 'prompt' and 'completion'")
            _fill(self.prompt_template, shot, f"few_shot[{i}]")
        object.__setattr__(self, "few_shot", tuple(dict(s) for s in shots))

    @classmethod
    def from_config(
        cls,
        system_prompt: str | None = None,
        prompt_template: str | None = None,
        few_shot: Sequence[Mapping[str, Any]] | None = None,
        use_chat_template: str | bool = "auto",
    ) -> PromptTemplate:
        """A template from config values (None: the default), e.g. RoundConfig's fields of the same names."""
        if isinstance(use_chat_template, str) and use_chat_template.lower() in ("true", "false"):
            use_chat_template = use_chat_template.lower() == "true"
        return cls(
            system_prompt=system_prompt,
            prompt_template="{prompt}" if prompt_template is None else prompt_template,
            few_shot=tuple(few_shot or ()),
            use_chat_template=use_chat_template,  # type: ignore[arg-type]
        )

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_TEMPLATE


DEFAULT_TEMPLATE = PromptTemplate()


def uses_chat_template(tokenizer: Any, template: PromptTemplate = DEFAULT_TEMPLATE) -> bool:
    """Whether `render_prompt` applies the tokenizer's chat template (then the text carries its own BOS)."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if template.use_chat_template is True and not has:
        raise TemplateError("use_chat_template is true but the tokenizer has no chat template")
    return has if template.use_chat_template == "auto" else bool(template.use_chat_template)


def user_text(problem: Mapping[str, Any], template: PromptTemplate = DEFAULT_TEMPLATE) -> str:
    """The user turn of `problem` (the template filled with its fields)."""
    domain = problem.get("domain")
    if isinstance(domain, str) and not template.is_default:
        from verifiers.registry import UnknownVerifierError, gold_fields

        try:
            gold = sorted(set(placeholders(template.prompt_template)) & gold_fields(domain))
        except UnknownVerifierError:
            gold = []  # an unknown domain is reported by the problem loader, naming file and line
        if gold:
            raise TemplateError(f"problem {problem.get('id', '?')!r}: prompt_template must not show the gold "
                                f"fields of verifier {domain!r} to the model: {gold}")
    return _fill(template.prompt_template, problem, f"problem {problem.get('id', '?')!r}")


def render_prompt(
    tokenizer: Any, problem: Mapping[str, Any] | str, template: PromptTemplate = DEFAULT_TEMPLATE
) -> str:
    """The text the model sees for `problem` (a problem dict, or a bare prompt string)."""
    if isinstance(problem, str):
        problem = {"prompt": problem}
    shots = [(user_text(s, template), s["completion"]) for s in template.few_shot]
    user = user_text(problem, template)
    if uses_chat_template(tokenizer, template):
        messages = [{"role": "system", "content": template.system_prompt}] if template.system_prompt is not None else []
        for shot_user, shot_completion in shots:
            messages += [{"role": "user", "content": shot_user}, {"role": "assistant", "content": shot_completion}]
        messages.append({"role": "user", "content": user})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    parts = [template.system_prompt + "\n\n"] if template.system_prompt is not None else []
    parts += [f"{shot_user}\n{shot_completion}\n\n" for shot_user, shot_completion in shots]
    parts.append(PLAIN_PROMPT_TEMPLATE.format(prompt=user))
    return "".join(parts)


def encode_prompt(tokenizer: Any, rendered: str, template: PromptTemplate = DEFAULT_TEMPLATE) -> list[int]:
    """Token ids of a rendered prompt: chat-templated text carries its own BOS, plain text gets the tokenizer's."""
    add_special = not uses_chat_template(tokenizer, template)
    return list(tokenizer(rendered, add_special_tokens=add_special)["input_ids"])
