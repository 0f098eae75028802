"""Adapters: standard data-set schemas -> sdp's problem dict.

A problem source is a path (or `datasets` name) plus the format of its rows. A plain string
is a source already in sdp's format; a mapping `{path, format, fields, split, subset, domain, id_prefix}`
names an adapter from `ADAPTERS`:

| format     | raw row                                                  | problem                           |
|------------|----------------------------------------------------------|-----------------------------------|
| `sdp`      | sdp's own fields                                         | unchanged                         |
| `gsm8k`    | `question`, `answer` (rationale, then `#### gold`)       | math, gold after `####`           |
| `gsm8k_worked` | the same                                             | the gsm8k problem (same id) + its gold rationale as `completion` |
| `math`     | `problem` + `answer` or `solution` (gold in `\\boxed{}`)  | math (MATH, MATH-500, NuminaMath) |
| `humaneval`| `task_id`, `prompt`, `test`, `entry_point`               | code, `check(entry_point)` tests  |
| `mbpp`     | `task_id`, `text`/`prompt`, `test_list`, `test_setup_code`| code, asserts (shown in prompt)  |
| `apps`     | `problem_id`, `question`, `input_output` (JSON string)   | code: stdin/stdout `io`, or call-based tests when `fn_name` |
| `fields`   | anything: `fields: {prompt: question, answer: final}`    | the mapped fields (+ `domain`)    |

Gold answers inside worked solutions are found with the math verifier's own extraction
(`verifiers._math_extract.extract_answer`), so a gold is read exactly as a completion is.
Adapters raise `AdapterError(field, message)`; the loader adds file and line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields as dataclass_fields, replace
from pathlib import Path
from typing import Any

from verifiers._math_extract import extract_answer


class AdapterError(ValueError):
    """A raw row does not fit its adapter; `field` names the offending raw field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class ProblemSource:
    """One problem source: where the rows are and how to read them."""

    path: str = field(metadata={"help": "A .jsonl/.json/.parquet file, or a `datasets` name or directory."})
    format: str = field(default="sdp", metadata={"help": "Row schema: sdp, gsm8k, math, humaneval, mbpp, apps or fields."})
    fields: Mapping[str, str] = field(
        default_factory=dict,
        metadata={"help": "For format `fields`: problem field -> raw column, e.g. {prompt: question, answer: final}."},
    )
    split: str | None = field(
        default=None, metadata={"help": "`datasets` split of this source (default: the set's split)."}
    )
    subset: str | None = field(
        default=None, metadata={"help": "`datasets` configuration name, e.g. `main` for openai/gsm8k."}
    )
    domain: str | None = field(
        default=None, metadata={"help": "Domain of every problem (format `fields`; default: the row's `domain`)."}
    )
    id_prefix: str | None = field(
        default=None, metadata={"help": "Prefix of generated ids (default: the format and the file's stem)."}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"problem source: 'path' must be a non-empty string, got {self.path!r}")
        if self.format not in ADAPTERS:
            raise ValueError(
                f"problem source {self.path}: unknown format {self.format!r}; known formats: {', '.join(ADAPTERS)}"
            )
        if not isinstance(self.fields, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.fields.items()
        ):
            raise ValueError(f"problem source {self.path}: 'fields' must map problem fields to column names")
        if self.format == "fields" and "prompt" not in self.fields:
            raise ValueError(f"problem source {self.path}: format 'fields' needs fields.prompt (the prompt's column)")
        if self.fields and self.format != "fields":
            raise ValueError(f"problem source {self.path}: 'fields' is only used with format 'fields'")

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any] | ProblemSource) -> ProblemSource:
        """A source from a plain path, a `{path, format, ...}` mapping, or a `ProblemSource`."""
        if isinstance(spec, ProblemSource):
            return spec
        if isinstance(spec, str):
            return cls(path=spec)
        if isinstance(spec, Mapping):
            known = {f.name for f in dataclass_fields(cls)}
            unknown = sorted(set(spec) - known)
            if unknown:
                raise ValueError(
                    f"problem source {spec.get('path', spec)!r}: unknown keys {unknown}; expected {sorted(known)}"
                )
            if "path" not in spec:
                raise ValueError(f"problem source {dict(spec)!r}: missing 'path'")
            values = dict(spec)
            if values.get("format") is None:
                values.pop("format", None)
            values["fields"] = dict(values.get("fields") or {})
            return cls(**values)
        raise ValueError(f"problem source must be a path or a mapping with 'path', got {type(spec).__name__}")

    def to_spec(self) -> str | dict[str, Any]:
        """The config form: the plain path when nothing but the path is set, else a mapping."""
        out: dict[str, Any] = {"path": self.path, "format": self.format}
        for name in ("split", "subset", "domain", "id_prefix"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.fields:
            out["fields"] = dict(self.fields)
        return out if len(out) > 2 or self.format != "sdp" else self.path


@dataclass(frozen=True)
class RowContext:
    """What an adapter knows about a row besides its contents."""

    source: ProblemSource
    row: int  # 1-based row (or line) number
    split: str

    def make_id(self, own: Any = None) -> str:
        """`<format>/<own id>` when the row has an id, else `<format>/<file stem>-<row>` (or `id_prefix` + either)."""
        prefix = self.source.id_prefix
        if own not in (None, ""):
            own = str(own)
            if prefix is not None:
                return prefix + own
            return own if "/" in own else f"{self.source.format}/{own}"
        if prefix is not None:
            return f"{prefix}{self.row}"
        path = Path(self.source.path)
        stem = path.stem if path.suffix else f"{path.name}-{self.split}"
        # gsm8k_test.jsonl read as gsm8k: "gsm8k/test-1", not "gsm8k/gsm8k_test-1".
        for sep in ("_", "-", "."):
            if stem.startswith(self.source.format + sep) and len(stem) > len(self.source.format) + 1:
                stem = stem[len(self.source.format) + 1:]
                break
        return f"{self.source.format}/{stem}-{self.row}"


Adapter = Callable[[Mapping[str, Any], RowContext], dict]


def _text(row: Mapping[str, Any], *names: str, required: bool = True) -> str | None:
    """The first of `names` that holds a non-empty string."""
    for name in names:
        value = row.get(name)
        if isinstance(value, str) and value.strip():
            return value
        if value is not None and not isinstance(value, str):
            raise AdapterError(name, f"must be a string, got {type(value).__name__}")
    if required:
        raise AdapterError(" or ".join(names), "missing or empty")
    return None


def gold_from_solution(solution: str) -> str | None:
    """The gold final answer stated in a worked solution (the math verifier's extraction)."""
    return extract_answer(solution)


def sdp_row(row: Mapping[str, Any], ctx: RowContext) -> dict:
    return dict(row)


def gsm8k_row(row: Mapping[str, Any], ctx: RowContext) -> dict:
    question = _text(row, "question")
    answer = _text(row, "answer")
    cut = answer.rfind("####")
    if cut < 0:
        raise AdapterError("answer", "no '#### <gold>' line in the GSM8K answer")
    gold = gold_from_solution(answer[cut:])
    if not gold:
        raise AdapterError("answer", "empty gold after '####'")
    # GSM8K golds are numbers; "1,000" and "1000" are the same gold.
    return {"id": ctx.make_id(row.get("id")), "domain": "math", "prompt": question, "answer": gold.replace(",", "")}


def gsm8k_worked_row(row: Mapping[str, Any], ctx: RowContext) -> dict:
    """A GSM8K row as a worked example (the seed files' form): the `gsm8k` problem, same id, plus `completion`.

    The completion is the gold rationale with its `<<a*b=c>>` annotations kept (the math verifier's step
    check reads them) and the `#### N` line written as `\\boxed{N}`, the answer form the prompts ask for.
    """
    problem = gsm8k_row(row, replace(ctx, source=replace(ctx.source, format="gsm8k")))
    answer = row["answer"]
    rationale = answer[: answer.rfind("####")].rstrip()
    if not rationale:
        raise AdapterError("answer", "no rationale before the '#### <gold>' line")
    problem["completion"] = f"{rationale}\nThe final answer is \\boxed{{{problem['answer']}}}."
    return problem


def math_row(row: Mapping[str, Any], ctx: RowContext) -> dict:
    problem = _text(row, "problem", "question")
    gold = row.get("answer")
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not (isinstance(gold, str) and gold.strip()):
        solution = _text(row, "solution", required=False)
        if solution is None:
            raise AdapterError("answer or solution", "a MATH row needs 'answer' or a 'solution' with \\boxed{}")
        gold = gold_from_solution(solution)
        if not gold:
            raise AdapterError("solution", "no final answer (\\boxed{...}) in the solution")
    out = {"id": ctx.make_id(row.get("unique_id") or row.get("id")), "domain": "math", "prompt": problem,
           "answer": gold.strip()}  # fmt: skip
    for meta in ("level", "type", "subject", "source"):
        if isinstance(row.get(meta), (str, int)):
            out[meta] = row[meta]
    return out


def humaneval_row(row: Mapping[str, Any], ctx: RowContext) -> dict:
    return {
        "id": ctx.make_id(_text(row, "task_id")),
        "domain": "code",
        "prompt": _text(row, "prompt"),
        "tests": _text(row, "test"),
        "entry_point": _text(row, "entry_point"),
    }


def _string_list(row: Mapping[str, Any], name: str) -> list[str]:
    value = row.get(name)
    if value is None:
        return []
    if hasattr(value, "tolist"):  # numpy arrays from parquet readers
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise AdapterError(name, f"must be a list of strings, got {type(value).__name__}")
    return list(value)


def mbpp_row(row: Mapping[str, Any], ctx: RowContext) -> dict:
    text = _text(row, "text", "prompt")
    asserts = _string_list(row, "test_list")
    if not asserts:
        raise AdapterError("test_list", "missing or empty")
    setup = _text(row, "test_setup_code", required=False) or ""
    hidden = _string_list(row, "challenge_test_list")
    # MBPP's prompt format (Austin et al. 2021): the task and the asserts it must pass, which name the function.
    prompt = text.rstrip() + "\nYour code should pass these tests:\n\n" + "\n".join(asserts)
    tests = "\n".join(([setup] if setup.strip() else []) + asserts + hidden) + "\n"
    return {"id": ctx.make_id(row.get("task_id")), "domain": "code", "prompt": prompt, "tests": tests}


def _joined(value: Any) -> str:
    """An APPS stdin/stdout value: a string, or a list of lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value) + "\n"
    raise AdapterError("input_output", f"stdin/stdout case must be a string or list of lines, got {value!r:.80}")


CALL_TESTS = '''def _sdp_same(got, want):
    if isinstance(got, tuple):
        got = list(got)
    # APPS stores a call's expected value wrapped in a one-element list or bare.
    return got == want or (isinstance(want, list) and len(want) == 1 and got == want[0])


def check(candidate):
{cases}
'''


def apps_row(row: Mapping[str, Any], ctx: RowContext) -> dict:
    question = _text(row, "question")
    raw = row.get("input_output")
    try:
        spec = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise AdapterError("input_output", f"not valid JSON ({exc.msg})") from exc
    if not isinstance(spec, Mapping) or not isinstance(spec.get("inputs"), list) or not isinstance(
        spec.get("outputs"), list
    ):
        raise AdapterError("input_output", "must be a JSON object with lists 'inputs' and 'outputs'")
    inputs, outputs = spec["inputs"], spec["outputs"]
    if not inputs or len(inputs) != len(outputs):
        raise AdapterError("input_output", f"{len(inputs)} inputs for {len(outputs)} outputs")
    starter = _text(row, "starter_code", required=False)
    prompt = question.rstrip() + (f"\n\n{starter.rstrip()}\n" if starter else "")
    out: dict[str, Any] = {"id": ctx.make_id(row.get("problem_id")), "domain": "code", "prompt": prompt}
    fn_name = spec.get("fn_name")
    if fn_name:
        if not isinstance(fn_name, str) or not fn_name.isidentifier():
            raise AdapterError("input_output", f"fn_name must be an identifier, got {fn_name!r}")
        # LeetCode-style starters define a `Solution` class whose method is the entry point.
        call = f"Solution().{fn_name}" if starter and "class Solution" in starter else "candidate"
        lines = []
        for args, want in zip(inputs, outputs, strict=True):
            args = args if isinstance(args, list) else [args]
            lines.append(f"    assert _sdp_same({call}(*{args!r}), {want!r})")
        out["tests"] = CALL_TESTS.format(cases="\n".join(lines))
        if call == "candidate":
            out["entry_point"] = fn_name
        else:
            out["tests"] = out["tests"].replace("def check(candidate):", "def _sdp_calls():") + "\n_sdp_calls()\n"
    else:
        out["io"] = [{"input": _joined(i), "output": _joined(o)} for i, o in zip(inputs, outputs, strict=True)]
    if isinstance(row.get("difficulty"), str):
        out["difficulty"] = row["difficulty"]
    return out


def fields_row(row: Mapping[str, Any], ctx: RowContext) -> dict:
    """The generic mapping: each problem field from a named column; a `solution` yields the gold."""
    out: dict[str, Any] = {}
    for target, column in ctx.source.fields.items():
        if column not in row:
            raise AdapterError(column, f"missing (mapped to {target!r})")
        out[target] = row[column]
    solution = out.pop("solution", None)
    if out.get("answer") in (None, "") and solution is not None:
        if not isinstance(solution, str):
            raise AdapterError(ctx.source.fields["solution"], "the solution must be a string")
        gold = gold_from_solution(solution)
        if not gold:
            raise AdapterError(ctx.source.fields["solution"], "no final answer (\\boxed{...}) in the solution")
        out["answer"] = gold
    if ctx.source.domain is not None:
        out["domain"] = ctx.source.domain
    elif "domain" not in out:
        if "domain" not in row:
            raise AdapterError("domain", "not in the row; set the source's 'domain' or map it in 'fields'")
        out["domain"] = row["domain"]
    out["id"] = str(out["id"]) if out.get("id") not in (None, "") else ctx.make_id()
    return out


ADAPTERS: dict[str, Adapter] = {
    "sdp": sdp_row,
    "gsm8k": gsm8k_row,
    "gsm8k_worked": gsm8k_worked_row,
    "math": math_row,
    "humaneval": humaneval_row,
    "mbpp": mbpp_row,
    "apps": apps_row,
    "fields": fields_row,
}


def adapt(row: Any, ctx: RowContext) -> Any:
    """Convert one raw row with its source's adapter (non-mappings pass through to the validator)."""
    if not isinstance(row, Mapping):
        return row
    if ctx.source.format == "sdp" and ctx.source.domain is None and ctx.source.id_prefix is None:
        return row
    problem = ADAPTERS[ctx.source.format](row, ctx)
    if ctx.source.format == "sdp" and ctx.source.id_prefix is not None and isinstance(problem.get("id"), str):
        problem["id"] = ctx.source.id_prefix + problem["id"]
    if ctx.source.domain is not None:
        problem["domain"] = ctx.source.domain
    return problem
