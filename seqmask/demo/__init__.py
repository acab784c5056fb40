"""The demo's job, in public: tasks, data, metrics, and the train-and-decode run.

``seqmask demo`` (the command line, :mod:`seqmask.cli`) parses its options
and calls :func:`run`; everything it uses is here, so that a notebook or a
user can reuse it piece by piece:

* the tasks (:data:`TASKS`: human-written dates to ISO 8601, numbers to
  English words), made in code: :func:`date_example`, :func:`number_example`,
  and the held-out split (:func:`is_held_out`, :func:`make_examples`);
* token arrays with random ids at padded positions (:func:`encode`,
  :class:`Batch`) and decoded text (:func:`decode_text`); exact match is
  :func:`seqmask.metrics.exact_match` against a batch's targets;
* the model (:func:`make_model`, an attention encoder-decoder from
  :mod:`seqmask.seq2seq`), the optimiser (:func:`make_optimizer`) and the
  job (:func:`make_config`, :func:`run`).

Token ids ``0, 1, 2`` are PAD, BOS and EOS (:data:`SPECIALS`) in both
vocabularies.

Examples:
  >>> from seqmask import demo
  >>> task = demo.TASKS["numbers"]
  >>> task.target_vocabulary[:4]
  ('<pad>', '<bos>', '<eos>', 'zero')
"""

from seqmask.demo._batches import Batch as Batch
from seqmask.demo._batches import decode_text as decode_text
from seqmask.demo._batches import encode as encode
from seqmask.demo._job import DEFAULTS as DEFAULTS
from seqmask.demo._job import QUICK_DEFAULTS as QUICK_DEFAULTS
from seqmask.demo._job import SEED_LIMIT as SEED_LIMIT
from seqmask.demo._job import DemoConfig as DemoConfig
from seqmask.demo._job import DemoResult as DemoResult
from seqmask.demo._job import make_config as make_config
from seqmask.demo._job import make_model as make_model
from seqmask.demo._job import make_optimizer as make_optimizer
from seqmask.demo._job import run as run
from seqmask.demo._tasks import BOS as BOS
from seqmask.demo._tasks import EOS as EOS
from seqmask.demo._tasks import HELD_OUT_PERCENT as HELD_OUT_PERCENT
from seqmask.demo._tasks import PAD as PAD
from seqmask.demo._tasks import SPECIALS as SPECIALS
from seqmask.demo._tasks import TASKS as TASKS
from seqmask.demo._tasks import Task as Task
from seqmask.demo._tasks import date_example as date_example
from seqmask.demo._tasks import is_held_out as is_held_out
from seqmask.demo._tasks import make_examples as make_examples
from seqmask.demo._tasks import number_example as number_example
from seqmask.demo._tasks import number_words as number_words

__all__ = [
    "PAD",
    "BOS",
    "EOS",
    "SPECIALS",
    "HELD_OUT_PERCENT",
    "Task",
    "TASKS",
    "date_example",
    "number_example",
    "number_words",
    "is_held_out",
    "make_examples",
    "Batch",
    "encode",
    "decode_text",
    "DEFAULTS",
    "QUICK_DEFAULTS",
    "SEED_LIMIT",
    "DemoConfig",
    "make_config",
    "make_model",
    "make_optimizer",
    "DemoResult",
    "run",
]
