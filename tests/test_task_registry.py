"""The task registry (rnncli/tasks/) and the cells' export forms, every task and cell walked, so
that a new one is covered without a test being edited. A task is an object resolved once from its
name; the code around never compares the name (checked over rnncli's own source)."""

import re
from pathlib import Path

import numpy as np
import pytest

from rnncli.config import ModelConfig
from rnncli.errors import ConfigError
from rnncli.kernels.cells import CELL_NAMES
from rnncli.tasks import TASKS, build_model, check_model, get_task
from rnncli.text.data import Corpus
from rnncli.text.tokenizers import EOS
from tests.conftest import CORPORA, ROOT

SAMPLE_FILES = {"classify": "sentiment.tsv", "tag": "ner.txt", "translate": "dates.tsv"}


def config_for(task, **kw):
    labels = ["a", "b"] if task.labelled else []
    return ModelConfig(cell="gru", vocab_size=9, embed=4, hidden=5, layers=1, task=task.name, labels=labels, **kw)


def test_the_registry_holds_the_four_tasks_and_refuses_others():
    assert set(TASKS) == {"lm", "classify", "tag", "translate"}
    with pytest.raises(KeyError, match="one of lm, classify, tag, translate"):
        get_task("summarize")
    with pytest.raises(ConfigError, match="task"):
        check_model(ModelConfig(task="summarize"))


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_describes_itself_and_builds_its_model(name):
    task = get_task(name)
    assert task.name == name and task.what and task.command.startswith("rnncli ") and task.unit
    assert "{out}" in task.next_hint
    cfg = config_for(task)
    check_model(cfg)
    model = build_model(cfg)
    shapes = model.param_shapes()
    assert "embed.weight" in shapes and shapes["embed.weight"] == (9, 4)
    names = [ours for ours, _ in task.torch_names(cfg)]
    assert all(n in shapes or n == "output.W" for n in names)  # output.W: absent only when tied
    assert [prefix for prefix, _, _ in task.stacks()][0] == ""


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_says_which_options_it_allows(name):
    task = get_task(name)
    for option, allowed in (("bidirectional", task.bidirectional), ("tie_weights", task.ties_weights)):
        cfg = config_for(task, **{option: True})
        if option == "tie_weights":
            cfg.embed = cfg.hidden
        if allowed:
            check_model(cfg)
        else:
            with pytest.raises(ConfigError, match=option):
                check_model(cfg)
    if task.labelled:
        with pytest.raises(ConfigError, match="labels"):
            check_model(ModelConfig(task=name, labels=["only"]))


@pytest.mark.parametrize("name", [n for n, t in TASKS.items() if not t.stream])
def test_every_example_task_reads_encodes_and_batches_its_own_file(name):
    from rnncli.text.tokenizers import WordTokenizer

    task = get_task(name)
    sources, targets = task.read(Corpus(str(CORPORA / SAMPLE_FILES[name])))
    assert len(sources) == len(targets) > 10
    texts = [t for s, y in zip(sources[:20], targets[:20], strict=True) for t in task.texts(s, y)]
    tokenizer = WordTokenizer.fit(["\n".join(texts) + "\n"])
    labels = task.label_set(targets)
    assert labels == [] or len(labels) >= 2
    index = {label: i for i, label in enumerate(labels)}
    encoded = [task.encode(s, y, tokenizer, index) for s, y in zip(sources[:3], targets[:3], strict=True)]
    length = len(encoded[0][0])
    same = [e for e in encoded if len(e[0]) == length]
    batch = task.batch(np.stack([e[0] for e in same], axis=1), [e[1] for e in same])
    assert batch.inputs.shape == (length, len(same))
    assert batch.targets.shape[-1] == len(same)
    if batch.decoder_inputs is not None:
        assert (batch.decoder_inputs[0] == EOS).all()


def test_no_module_outside_the_registry_compares_a_task_name():
    found = []
    for path in (ROOT / "rnncli").rglob("*.py"):
        if "tasks" in path.relative_to(ROOT / "rnncli").parts[:1]:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"task\s*(==|!=)|task in \(|task not in \(", line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_every_task_module_is_in_the_registry():
    """A module of rnncli/tasks/ that defines a TASK is registered under its own name."""
    modules = {p.stem for p in Path(ROOT / "rnncli" / "tasks").glob("*.py")
               if re.search(r"^TASK = ", p.read_text(encoding="utf-8"), flags=re.M)}
    assert modules == set(TASKS) and all(TASKS[m].name == m for m in modules)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_every_cell_has_an_export_form_or_a_reason_for_none(cell):
    """No silent fallback: each cell owns its mapping onto an ONNX operator and a PyTorch module
    (kernels/), or says why it has none and is refused with that reason (a new cell must say which)."""
    from rnncli.kernels.cells import get_cell
    from rnncli.kernels.recurrent import Cell

    c = get_cell(cell)
    has_onnx = type(c).onnx_layer is not Cell.onnx_layer
    assert has_onnx != bool(c.not_in_onnx)
    assert (c.torch_module is not None) != bool(c.not_in_torch)
    assert all(len(reason) > 20 for reason in (c.not_in_onnx, c.not_in_torch) if reason)
    if has_onnx:
        H = 3
        p = {k: np.ones(s, np.float32) for k, s in c.param_shapes(2, H).items()}
        op, arrays, _ = c.onnx_layer(p, H)
        assert op in ("LSTM", "GRU", "RNN") and arrays["W"].shape == (c.gates * H, 2)
        assert arrays["R"].shape == (c.gates * H, H) and arrays["B"].shape == (2 * c.gates * H,)
