"""The task registry: what a model is trained to do, one module per task, each an object resolved
once from its name (`get_task`) that the rest of rnncli asks instead of comparing names:

  lm         a language model: the next token of one stream (lm.py)
  classify   one label per text (classify.py)
  tag        a tag at every token (tag.py)
  translate  an encoder and a decoder (translate.py)

A task's interface is base.Task; the models of the tasks besides the language model are in
models.py. Adding a task = one module here + one line in TASKS (the tests walk the registry).
"""

from __future__ import annotations

from rnncli.tasks import classify, lm, tag, translate
from rnncli.tasks.base import Task

TASKS: dict[str, Task] = {t.name: t for t in (lm.TASK, classify.TASK, tag.TASK, translate.TASK)}


def get_task(name: str) -> Task:
    """The task of a name; an unknown one raises KeyError naming those that exist."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown task {name!r}: one of {', '.join(TASKS)}") from None


def check_model(config) -> None:
    """A model configuration checked whole: its task's name, its own fields (ModelConfig.check),
    then what its task asks of it (bidirectional or not, labels, tied weights)."""
    from rnncli.errors import ConfigError

    if not isinstance(config.task, str) or config.task not in TASKS:
        raise ConfigError("task", f"must be one of {', '.join(TASKS)}, not {config.task!r}")
    config.check(TASKS[config.task].check_config)


def build_model(config):
    """The model of a configuration's task."""
    return get_task(config.task).build(config)


def model_layout(config):
    """What a stored configuration implies: parameter shapes and arrays per layer state."""
    check_model(config)
    model = build_model(config)
    return model.param_shapes(), model.state_arrays()


def load_model_checkpoint(path: str, training_state: bool = True, allow_nonfinite: bool = False,
                          int8_in_memory: bool = False):
    """A checkpoint of any task's model, checked against the layout its configuration implies."""
    from rnncli.formats.checkpoint import load_checkpoint

    return load_checkpoint(path, model_layout, training_state, allow_nonfinite, int8_in_memory)

