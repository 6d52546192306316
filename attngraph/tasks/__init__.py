"""Built-in tasks; importing this package registers them and the ``task:`` section."""
from . import act_tasks, copy, images, jsonl, ntm_tasks, pointer_tasks, program_tasks, section, seq2seq  # noqa: F401  (registration side effects)
from .base import TASKS, Task, task
from .section import TaskSection

__all__ = ["TASKS", "Task", "task", "TaskSection"]
