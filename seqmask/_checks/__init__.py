"""Every argument check of seqmask, in one place.

Each public function checks its arguments with these helpers, so that one
mistake gets one exception type and one kind of message everywhere:
``TypeError`` for a wrong type or dtype, ``ValueError`` for a wrong shape or
value. A message starts with the public function's name (``where``), names
the argument, says what was expected and what was given, and ends with the
fix when there is an obvious one.

*Value* checks (lengths within the time axis, token ids within the
vocabulary, hyperparameters in range) need the values. When the values are
concrete (NumPy arrays, Python numbers, JAX arrays outside ``jit``) they
raise ``ValueError`` at once, naming the offending rows. When they are traced
(under ``jax.jit``, ``vmap``, ``scan``) they are registered with
:func:`jax.experimental.checkify.debug_check`: a no-op under plain ``jit``
(XLA removes the dead predicate), reported by ``checkify.checkify(f)``.

The checks live in private modules by kind: messages and concreteness
(``_core``), Python values (``_values``), value ranges and distributions
(``_ranges``), arrays (``_arrays``), pytrees (``_trees``), what a scan's
step function returns (``_steps``) and host data (``_host``); this module
re-exports them, so every caller writes ``_checks.<name>``.
"""

from __future__ import annotations

from seqmask._checks._arrays import array as array
from seqmask._checks._arrays import bool_array as bool_array
from seqmask._checks._arrays import floating_array as floating_array
from seqmask._checks._arrays import integer_array as integer_array
from seqmask._checks._arrays import min_rank as min_rank
from seqmask._checks._arrays import numeric_array as numeric_array
from seqmask._checks._arrays import same_shape as same_shape
from seqmask._checks._core import concrete as concrete
from seqmask._checks._core import describe as describe
from seqmask._checks._core import fail as fail
from seqmask._checks._core import is_traced as is_traced
from seqmask._checks._core import traced_check as traced_check
from seqmask._checks._host import host_array as host_array
from seqmask._checks._host import prng_key as prng_key
from seqmask._checks._host import representable as representable
from seqmask._checks._ranges import all_finite as all_finite
from seqmask._checks._ranges import distribution as distribution
from seqmask._checks._ranges import hyperparameter as hyperparameter
from seqmask._checks._ranges import in_range as in_range
from seqmask._checks._ranges import lengths as lengths
from seqmask._checks._ranges import token_ids as token_ids
from seqmask._checks._steps import promote_weak_init as promote_weak_init
from seqmask._checks._steps import scan_step as scan_step
from seqmask._checks._trees import broadcast_tree_like as broadcast_tree_like
from seqmask._checks._trees import leading_axes as leading_axes
from seqmask._checks._trees import mapping_with_keys as mapping_with_keys
from seqmask._checks._trees import params_like as params_like
from seqmask._checks._trees import tree_like as tree_like
from seqmask._checks._values import dtype as dtype
from seqmask._checks._values import flag as flag
from seqmask._checks._values import flag_or_int as flag_or_int
from seqmask._checks._values import function as function
from seqmask._checks._values import initializer as initializer
from seqmask._checks._values import instance as instance
from seqmask._checks._values import integer as integer
from seqmask._checks._values import non_negative_int as non_negative_int
from seqmask._checks._values import number as number
from seqmask._checks._values import one_of as one_of
from seqmask._checks._values import optional_dtype as optional_dtype
from seqmask._checks._values import optional_positive_int as optional_positive_int
from seqmask._checks._values import positive_int as positive_int
from seqmask._checks._values import shape_tuple as shape_tuple
