"""``learnable_initial_state``: a cell whose initial carry is a parameter."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import seqmask._checks as _checks
from seqmask.cells._base import Cell, Initializer, LinearRecurrence, label
from seqmask.cells._layout import looks_like


def learnable_initial_state(
    cell: Cell, *, carry_init: Initializer = jax.nn.initializers.zeros
) -> Cell:
    """Wrap ``cell`` so that its initial carry is a trained parameter.

    The wrapped cell's parameters are ``{"cell": <cell params>,
    "initial_carry": <one unbatched carry>}``; ``initial_carry(params,
    batch_shape)`` broadcasts the learned carry over ``batch_shape``, so every
    row that starts (or is reset, see ``seqmask.rnn``'s ``resets``) from it
    sends gradient to it. ``apply`` is the inner cell's.

    Args:
      cell: any :class:`Cell`.
      carry_init: initialiser for the learned carry (zeros by default, so the
        wrapped cell starts out identical to the inner one).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from seqmask.cells import learnable_initial_state, lstm
      >>> cell = learnable_initial_state(lstm(3))
      >>> params = cell.init(jax.random.key(0), 2)
      >>> params["initial_carry"].h.shape
      (3,)
      >>> cell.initial_carry(params, (5,)).c.shape
      (5, 3)
    """
    where = "learnable_initial_state"
    _checks.instance(
        cell, Cell, "cell", where, expected="a seqmask.cells.Cell (e.g. lstm(128))"
    )
    carry_init = _checks.initializer(carry_init, "carry_init", where)
    name = f"learnable_initial_state({cell.name})"
    owner = f"learnable_initial_state({label(cell)})"

    def init(key, input_size):
        _checks.prng_key(key, "key", f"{name}.init")
        input_size = _checks.positive_int(input_size, "input_size", f"{name}.init")
        k_cell, k_carry = jax.random.split(key)
        params = cell.init(k_cell, input_size)
        template = cell.initial_carry(params, ())
        leaves, treedef = jax.tree.flatten(template)
        keys = jax.random.split(k_carry, max(len(leaves), 1))
        learned = [
            carry_init(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)
        ]
        return {"cell": params, "initial_carry": jax.tree.unflatten(treedef, learned)}

    def check_params(params, where, input_size=None, name="params"):
        _check_params(cell, owner, params, where, input_size, name)

    def check_step(params, carry, x, where):
        """Parameters and a carry for inputs ``x`` ``[*batch, features]``."""
        check_params(params, where)
        batch_shape = jnp.shape(x)[:-1]
        _checks.tree_like(
            carry,
            _carry_template(cell, params, batch_shape),
            "carry",
            where,
            expected_from=f"{label(cell)}'s carry for batch shape {batch_shape}",
            dtype_error=TypeError,
        )

    def initial_carry(params, batch_shape=()):
        where = f"{name}.initial_carry"
        check_params(params, where)
        batch_shape = _checks.shape_tuple(batch_shape, "batch_shape", where)
        return jax.tree.map(
            lambda x: jnp.broadcast_to(x, (*batch_shape, *x.shape)),
            params["initial_carry"],
        )

    def apply(params, carry, x):
        check_step(params, carry, x, f"{name}.apply")
        return cell.apply(params["cell"], carry, x)

    inner_project, inner_apply = cell.project_inputs, cell.apply_projected
    split = inner_project is not None and inner_apply is not None

    def project_inputs(params, xs):
        assert inner_project is not None
        check_params(params, f"{name}.project_inputs")
        return inner_project(params["cell"], xs)

    def apply_projected(params, carry, projected):
        assert inner_apply is not None
        check_step(params, carry, projected, f"{name}.apply_projected")
        return inner_apply(params["cell"], carry, projected)

    return Cell(
        init=init,
        initial_carry=initial_carry,
        apply=apply,
        project_inputs=project_inputs if split else None,
        apply_projected=apply_projected if split else None,
        linear=None if cell.linear is None else _inner_linear(cell.linear),
        name=name,
        hidden_size=cell.hidden_size,
        check_params=check_params,
    )


def _check_params(cell: Cell, owner: str, params, where, input_size, name) -> None:
    """``params`` are ``{"cell": <cell's params>, "initial_carry": <carry>}``."""
    guess = looks_like(params)
    hint = (
        f"\nThese look like {guess} parameters; {owner} takes {{'cell': <the "
        "inner cell's params>, 'initial_carry': <a carry>}, as its init makes them."
        if guess is not None and not guess.startswith("learnable")
        else ""
    )
    _checks.mapping_with_keys(
        params,
        ("cell", "initial_carry"),
        name,
        where,
        expected=f"the parameters of {owner}: a dict with keys "
        "['cell', 'initial_carry']",
        hint=hint,
    )
    if cell.check_params is not None:
        cell.check_params(params["cell"], where, input_size, f"{name}['cell']")
    _checks.tree_like(
        params["initial_carry"],
        _carry_template(cell, params, ()),
        f"{name}['initial_carry']",
        where,
        expected_from=f"{label(cell)}'s carry for batch shape ()",
        dtype_error=TypeError,
    )


def _carry_template(cell: Cell, params, batch_shape):
    """The inner cell's carry for ``batch_shape``, as shapes and dtypes."""
    return jax.eval_shape(lambda p: cell.initial_carry(p, batch_shape), params["cell"])


def _inner_linear(linear: LinearRecurrence) -> LinearRecurrence:
    """``linear`` reading the inner cell's parameters, ``params["cell"]``."""
    inner_log = linear.log_coefficients

    def coefficients(params, projected):
        return linear.coefficients(params["cell"], projected)

    def log_coefficients(params, projected):
        assert inner_log is not None
        return inner_log(params["cell"], projected)

    return linear._replace(
        coefficients=coefficients,
        log_coefficients=None if inner_log is None else log_coefficients,
    )
