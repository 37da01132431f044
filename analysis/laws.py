"""Named scaling laws: functional form, parameters, search box and starting points.

A law's function takes `x`, an array of shape (len(inputs), n), then its parameters in order,
and returns n predictions. Written with numpy broadcasting only, so that parameters may also be
arrays of shape (B, 1) to evaluate B parameter sets at once (the bootstrap does).
Fitters (analysis.fitting) read `init_grid` (local optimisers start from every point) and `bounds`
(the box for global optimisers such as differential evolution).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import brentq

from analysis.errors import AnalysisError
from analysis.registry import Registry

Params = Mapping[str, float]


@dataclass(frozen=True, repr=False)
class Law:
    name: str
    formula: str
    inputs: tuple[str, ...]  # symbols: N params, D tokens, M = D/N, C = 6ND, L loss
    params: tuple[str, ...]
    function: Callable[..., np.ndarray]
    bounds: tuple[tuple[float, float], ...]
    init_grid: tuple[tuple[float, ...], ...]
    # an equivalent parametrisation worth reporting, e.g. the compute form of the over-training law
    derived: Callable[[Params], dict[str, float]] | None = None
    derived_formula: str = ""
    # searched on a log scale by the L-BFGS and differential-evolution fitters (positive bounds)
    log_scale: tuple[str, ...] = ()
    # Separable laws: `linear` names the parameters the law is linear in once the others are fixed,
    # and basis(x, *others) gives the design matrix, shape (len(others[0]), n, len(linear)), with the
    # other parameters as 1-d arrays, so that prediction = basis @ linear. The bootstrap uses it to
    # refit a thousand resamples at once (analysis.separable).
    linear: tuple[str, ...] = ()
    basis: Callable[..., np.ndarray] | None = None
    # Physical constraints besides the signs its bounds imply (a positive lower bound: positive; a lower
    # bound 0: >= 0; an upper bound <= 0: negative): `floor` names a parameter that must lie below every
    # observed value (an irreducible loss E), `output_range` the range of a bounded metric (an error),
    # `in_range` parameters that are values of the law (an asymptote) and so must lie in output_range.
    floor: str = ""
    output_range: tuple[float, float] | None = None
    in_range: tuple[str, ...] = ()
    # the input is a loss (Err(L)): at the text's entropy, the lowest loss a model can reach, the law's value
    # must still lie in output_range (an error law that reaches 0 above it predicts negative errors there)
    loss_input: bool = False

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.params) or any(len(p) != len(self.params) for p in self.init_grid):
            raise ValueError(f"law {self.name}: bounds and init_grid need one value per parameter")
        if not set(self.log_scale) <= set(self.params) or any(self.bound(p)[0] <= 0 for p in self.log_scale):
            raise ValueError(f"law {self.name}: log_scale parameters need positive lower bounds")
        if (self.basis is None) != (not self.linear) or not set(self.linear) <= set(self.params):
            raise ValueError(f"law {self.name}: a separable law needs both `linear` and `basis`")
        if self.in_range and (self.output_range is None or not set(self.in_range) <= set(self.params)):
            raise ValueError(f"law {self.name}: `in_range` names parameters of a law with an output_range")

    @property
    def nonlinear(self) -> tuple[str, ...]:
        """The parameters a separable law is not linear in."""
        return tuple(p for p in self.params if p not in self.linear)

    def bound(self, param: str) -> tuple[float, float]:
        return self.bounds[self.params.index(param)]

    def violations(
        self, params: Params, observed: np.ndarray | Sequence = (), entropy: float | None = None
    ) -> list[str]:
        """The physical constraints `params` break, one phrase each: signs (from the bounds), the floor
        parameter not below every `observed` value, or below `entropy`, the measured text's entropy under
        its generator where known (no model's expected loss is lower). output_range is checked where a law
        is predicted."""
        out = []
        for name, value in params.items():
            low, high = self.bound(name)
            if low > 0 and value <= 0:
                out.append(f"{name} = {value:.4g} should be positive")
            elif low == 0 and value < 0:
                out.append(f"{name} = {value:.4g} should be >= 0")
            elif high <= 0 and value >= 0:
                out.append(f"{name} = {value:.4g} should be negative")
        for name in self.in_range:
            low, high = self.output_range or (-np.inf, np.inf)
            if name in params and not low <= params[name] <= high:
                out.append(f"{name} = {params[name]:.4g} is outside [{low:g}, {high:g}], the range of the law's values")
        values = np.asarray(observed, dtype=float)
        values = values[np.isfinite(values)]
        if self.floor and self.floor in params and values.size and params[self.floor] >= values.min():
            out.append(f"{self.floor} = {params[self.floor]:.4g} is not below every observed value "
                       f"(lowest {values.min():.4g})")  # fmt: skip
        if self.floor in params and entropy is not None and np.isfinite(entropy) and params[self.floor] < entropy:
            out.append(f"{self.floor} = {params[self.floor]:.4g} is below the text's entropy {entropy:.4g} "
                       "(its generator's: no model's loss can be lower)")  # fmt: skip
        if self.loss_input and self.output_range and entropy is not None and np.isfinite(entropy):
            out += self._range_at_entropy(params, entropy)
        return out

    def _range_at_entropy(self, params: Params, entropy: float) -> list[str]:
        """A phrase when the law's value at the text's entropy lies outside output_range, with the loss at
        which it leaves the range."""
        low, high = self.output_range or (-np.inf, np.inf)

        def values(losses: np.ndarray) -> np.ndarray:
            return self.function((losses,), *(params[p] for p in self.params))

        # the entropy, then losses above it: the first inside the range brackets where the law re-enters it
        losses = entropy + np.concatenate([[0.0], np.geomspace(1e-6, 20.0, 400)])
        law = values(losses)
        if low <= law[0] <= high:
            return []
        edge = low if law[0] < low else high
        inside = np.flatnonzero((law >= low) & (law <= high))
        where = ""
        if inside.size:
            i = inside[0]
            crossing = brentq(lambda loss: values(np.asarray([loss]))[0] - edge, losses[i - 1], losses[i])
            where = f": it reaches {edge:g} at loss {crossing:.4g}, above the entropy"
        return [f"its value at the text's entropy {entropy:.4g} (the lowest loss a model can reach) is "
                f"{law[0]:.4g}, outside [{low:g}, {high:g}]{where}"]  # fmt: skip

    def __repr__(self) -> str:
        return f"Law({self.name!r})"

    def fixed(self, **values: float) -> Law:
        """This law with some parameters held at given values, the others left to fit: e.g. the error
        law's epsilon at a task's chance error. The result is not separable (its bootstrap refits
        every resample locally) and not registered; its name and formula say what was fixed."""
        if unknown := sorted(set(values) - set(self.params)):
            known = ", ".join(self.params)
            raise AnalysisError(f"law {self.name} has no parameter {', '.join(unknown)}; it has {known}")
        free = [i for i, p in enumerate(self.params) if p not in values]
        if not free:
            raise AnalysisError(f"law {self.name}: fixing every parameter leaves nothing to fit")
        function, names = self.function, self.params
        held = ", ".join(f"{p} = {v:.4g}" for p, v in values.items())

        def partial(x, *free_values):
            given = dict(zip((names[i] for i in free), free_values, strict=True))
            return function(x, *(given[p] if p in given else values[p] for p in names))

        return replace(
            self,
            name=f"{self.name}[{held.replace(' ', '')}]",
            formula=f"{self.formula} ({held} fixed)",
            params=tuple(names[i] for i in free),
            function=partial,
            bounds=tuple(self.bounds[i] for i in free),
            init_grid=tuple(dict.fromkeys(tuple(start[i] for i in free) for start in self.init_grid)),
            derived=None,
            derived_formula="",
            log_scale=tuple(p for p in self.log_scale if p not in values),
            linear=(),
            basis=None,
            floor="" if self.floor in values else self.floor,
            in_range=tuple(p for p in self.in_range if p not in values),
        )

    def as_inputs(self, x: np.ndarray | Sequence) -> np.ndarray:
        """x as a float array of shape (len(inputs), n); a 1-d array is one input."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[0] != len(self.inputs):
            raise ValueError(f"law {self.name} takes inputs {self.inputs}, got an array of shape {x.shape}")
        return x

    def __call__(self, x: np.ndarray | Sequence, params: Params) -> np.ndarray:
        return self.function(self.as_inputs(x), *(params[p] for p in self.params))

    def describe(self, params: Params) -> str:
        """The formula with its fitted values; a second line for the derived parametrisation."""
        text = f"{self.formula} with {_values(params)}"
        if self.derived is not None:
            text += f"\n{self.derived_formula} with {_values(self.derived(params))}"
        return text


def _values(params: Params) -> str:
    return ", ".join(f"{name}={value:.4g}" for name, value in params.items())


def grid(*values: Sequence[float]) -> tuple[tuple[float, ...], ...]:
    """Every combination of per-parameter starting values, in parameter order."""
    return tuple(itertools.product(*values))


LAWS: Registry[Law] = Registry("law", AnalysisError)


def register(law: Law) -> Law:
    """Add a law under its name (a name already taken is refused)."""
    return LAWS.register(law.name, law)


def get_law(name: str) -> Law:
    """The law called `name`; an unknown name is an AnalysisError listing the known ones."""
    return LAWS.get(name)


# --- Gadre et al. 2024: over-training ---------------------------------------------------------


def _overtrain(x, alpha, beta, e, E):
    N, M = x
    return E + alpha * N**e + beta * 6 ** (e / 2) * (M * N) ** e


def _overtrain_basis(x, e):
    N, M = x
    e = e[:, None]
    return np.stack(np.broadcast_arrays(N**e, 6 ** (e / 2) * (M * N) ** e, 1.0), axis=-1)


def _overtrain_compute_form(p: Params) -> dict[str, float]:
    eta = -p["e"] / 2
    return {"E": p["E"], "a": p["alpha"] * 6**eta, "b": p["beta"], "eta": eta}


register(
    Law(
        name="overtrain",
        formula="L(N,M) = E + alpha N^e + beta 6^(e/2) (M N)^e",
        inputs=("N", "M"),
        params=("alpha", "beta", "e", "E"),
        function=_overtrain,
        bounds=((1e-3, 1e6), (1e-3, 1e6), (-2.0, 0.0), (0.0, 10.0)),
        # the released code's 128 starts, in its loop order (ties keep the first)
        init_grid=grid((1e2, 3e2, 1e3, 3e3), (1e2, 3e2, 1e3, 3e3), (-0.1, -0.3), (0.0, 1.0, 2.0, 10.0)),
        derived=_overtrain_compute_form,
        derived_formula="L(C,M) = E + (a M^eta + b M^-eta) C^-eta",
        log_scale=("alpha", "beta"),
        linear=("alpha", "beta", "E"),
        basis=_overtrain_basis,
        floor="E",
    )
)


def _loss_to_error(x, epsilon, k, gamma):
    (L,) = x
    return epsilon - k * np.exp(-gamma * L)


def _loss_to_error_basis(x, gamma):
    (L,) = x
    decay = np.exp(-gamma[:, None] * L)
    return np.stack([np.ones_like(decay), -decay], axis=-1)


register(
    Law(
        name="loss_to_error",
        formula="Err(L) = epsilon - k exp(-gamma L)",
        inputs=("L",),
        params=("epsilon", "k", "gamma"),
        function=_loss_to_error,
        # Lourie et al.'s differential-evolution box (they bound ln k in [0, 20])
        bounds=((0.0, 1.0), (1.0, float(np.exp(20))), (0.0, 20.0)),
        init_grid=((1.0, 1.0, 1.0),),  # curve_fit's default p0, as in the released code
        log_scale=("k",),
        linear=("epsilon", "k"),
        basis=_loss_to_error_basis,
        output_range=(0.0, 1.0),
        in_range=("epsilon",),  # the error at infinite loss
        loss_input=True,
    )
)


# --- Chinchilla and its relatives -------------------------------------------------------------

# Besiroglu et al.'s grid: A = exp(a), B = exp(b), E = exp(e); 5400 starts, meant for L-BFGS.
_EXP_A = tuple(float(np.exp(v)) for v in range(0, 30, 5))
_EXP_E = tuple(float(np.exp(v)) for v in np.arange(-1.0, 2.0, 0.5))
_EXPONENTS = (0.0, 0.5, 1.0, 1.5, 2.0)


def _chinchilla(x, E, A, alpha, B, beta):
    N, D = x
    return E + A / N**alpha + B / D**beta


register(
    Law(
        name="chinchilla",
        formula="L(N,D) = E + A / N^alpha + B / D^beta",
        inputs=("N", "D"),
        params=("E", "A", "alpha", "B", "beta"),
        function=_chinchilla,
        bounds=((0.0, 10.0), (1.0, 1e12), (0.0, 3.0), (1.0, 1e12), (0.0, 3.0)),
        init_grid=grid(_EXP_E, _EXP_A, _EXPONENTS, _EXP_A, _EXPONENTS),
        log_scale=("A", "B"),
        floor="E",
    )
)


def _power_law(x, E, A, alpha):
    (D,) = x
    return E + A / D**alpha


def _power_law_basis(x, alpha):
    (D,) = x
    decay = D ** -alpha[:, None]
    return np.stack([np.ones_like(decay), decay], axis=-1)


register(
    Law(
        name="power_law",
        formula="L(D) = E + A / D^alpha",
        inputs=("D",),
        params=("E", "A", "alpha"),
        function=_power_law,
        bounds=((0.0, 10.0), (1e-6, 1e12), (0.0, 3.0)),
        init_grid=grid(_EXP_E, _EXP_A, _EXPONENTS),
        log_scale=("A",),
        linear=("E", "A"),
        basis=_power_law_basis,
        floor="E",
    )
)


def _log_law(x, c, D0, beta):
    (D,) = x
    # below its onset D0 the law is 0 (a log of a non-positive number has no power)
    return c * np.maximum(np.log(D / D0), 1e-12) ** beta


def _isik_form(params: Params) -> dict[str, float]:
    # in logs: near beta = 0 (a flat fit) c^(1/beta) overflows a float, and alpha is then inf, said as such
    log_alpha = float(np.log(params["c"])) / params["beta"] if params["beta"] > 0 else float("nan")
    alpha = float("inf") if log_alpha > 709.0 else float(np.exp(log_alpha))  # exp(709) is near float's max
    return {"alpha": alpha, "log_A": -alpha * float(np.log(params["D0"]))}  # A itself may underflow


def log_law_params(A: float, alpha: float, beta: float) -> dict[str, float]:
    """The registry's log_law parameters (c, D0, beta) of Isik et al.'s (log(A D^alpha))^beta, e.g. for the
    values a paper reports: c = alpha^beta, D0 = A^(-1/alpha) (alpha > 0)."""
    if alpha <= 0:
        raise AnalysisError(f"log_law: alpha = {alpha:g} must be positive (at 0 the law is a constant)")
    return {"c": alpha**beta, "D0": float(np.exp(-np.log(A) / alpha)), "beta": beta}


register(
    Law(
        name="log_law",
        # Isik et al.'s (log(A D^alpha))^beta, fitted as c (log(D/D0))^beta: the same curves (alpha = c^(1/beta),
        # A = D0^-alpha), but an onset D0 far below the data, which BLEU's slow rise asks for, needs an alpha
        # and a 1/A beyond any fixed box in Isik's coordinates; in these it is an ordinary value of D0
        formula="f(D) = c (log(D/D0))^beta",
        inputs=("D",),
        params=("c", "D0", "beta"),
        function=_log_law,
        bounds=((1e-30, 1e30), (1e-30, 1e15), (0.0, 10.0)),
        init_grid=grid((1e-4, 0.1, 10.0), (1e-10, 1e2, 1e5, 1e8), (0.5, 1.0, 2.0, 4.0)),
        log_scale=("c", "D0"),
        derived=_isik_form,
        derived_formula="f(D) = (log(A D^alpha))^beta",
    )
)


def _sigmoid(x, a, k, L0, b):
    (L,) = x
    return a / (1 + np.exp(-k * (L - L0))) + b


register(
    Law(
        name="sigmoid",
        formula="acc(L) = a / (1 + exp(-k (L - L0))) + b",
        inputs=("L",),
        params=("a", "k", "L0", "b"),
        function=_sigmoid,
        bounds=((0.0, 1.0), (-100.0, 100.0), (0.0, 20.0), (0.0, 1.0)),
        # k < 0: accuracy rises as loss falls (OLMo ladder step 2)
        init_grid=grid((0.5, 1.0), (-10.0, -3.0, -1.0), (2.0, 3.0, 4.0), (0.0, 0.25)),
    )
)


def _linear_in_exp(x, a, b):
    (L,) = x
    return a + b * np.exp(-L)


def _linear_in_exp_basis(x):
    (L,) = x
    return np.stack([np.ones_like(L), np.exp(-L)], axis=-1)[None]


register(
    Law(
        name="linear_in_exp",
        formula="y(L) = a + b exp(-L)",
        inputs=("L",),
        params=("a", "b"),
        function=_linear_in_exp,
        bounds=((-10.0, 10.0), (-1e3, 1e3)),
        # linear after the monotone transform exp(-L) (Lourie et al.'s "predictable"); the
        # classifier lets the transform's rate vary: exp(-gamma L), as in loss_to_error
        init_grid=grid((0.0, 0.5, 1.0), (-10.0, -1.0, 1.0, 10.0)),
        linear=("a", "b"),
        basis=_linear_in_exp_basis,
    )
)
