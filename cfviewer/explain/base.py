"""The explainer protocol: the :class:`Explanation` result, the :class:`Explainer` base class
and the registry behind :func:`get_explainer` / :func:`list_explainers`.

Every explainer is built as ``get_explainer(name, bundle, **params)`` and used as
``explainer.explain(image, target)`` (one film, H x W, any size: made the model input by
``Bundle.model_input``, i.e. cropped to its field of view and resized to R x R) or ``explainer.explain_batch(images, targets)``. The result is a plain dataclass
of numpy arrays, so the UI, the benchmark and the tests consume the same thing.

Each explainer's parameters are one typed, documented frozen dataclass (``Explainer.Params``,
:mod:`cfviewer.explain.params`): ``get_explainer("latentshift", bundle, n_frames=12)`` checks
every name, type and range, and ``LatentShiftExplainer.describe_params()`` lists them.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import numpy as np
import torch

from cfviewer.errors import UnknownExplainerError
from cfviewer.explain.frames import check_start_frame, start_frame_of
from cfviewer.explain.params import (  # noqa: F401  (re-exported)
    ExplainerParameterError,
    ExplainerParams,
    RetiredParameterWarning,
    param,
    params_from_defaults,
)


@dataclass
class Explanation:
    """One explanation of one prediction.

    Attributes:
        method: registry name of the explainer (e.g. ``"latentshift-max"``).
        target: pathology explained.
        map: R x R float32, larger = more important (each method documents its sign rule).
        image: the model-space input (R x R float32 in [-1024, 1024]) the map refers to.
        pred_original: probability of ``target`` on ``image``.
        frames: k x R x R generated images (Latent Shift), ordered by increasing lambda, or None.
        lambdas: the k lambdas of ``frames`` (increasing; the counterfactual is at ``lambdas[0]``).
        frame_preds: probability of ``target`` on each frame.
        counterfactual: R x R image at the search bound (the frame that lowers the prediction
            most), or None.
        pred_reconstruction: probability of ``target`` on the autoencoder reconstruction
            D(E(x)) (on g_s(x) for SAGen), or None when the method uses no autoencoder.
        start_frame: what the lambda = 0 frame is (:data:`cfviewer.explain.frames.START_FRAMES`:
            ``"reconstruction"``, ``"similar"`` or ``"image"``); None = derived from
            ``pred_reconstruction`` (:attr:`start_kind`).
        params: the explainer's resolved parameters (JSON-serialisable), plus method-specific
            facts (e.g. the search bound and the rule that stopped it).
        timings: seconds per stage, ``"total"`` included.
        evaluations: image evaluations per network (``"classifier"``, ``"decoder"``,
            ``"encoder"``, ``"backward"`` = images back-propagated, ``"passes"`` = batched
            forward passes this image took part in -- shared with the other images of an
            ``explain_batch`` call), plus method-specific counts.
    """

    method: str
    target: str
    map: np.ndarray
    image: np.ndarray
    pred_original: float
    frames: np.ndarray | None = None
    lambdas: np.ndarray | None = None
    frame_preds: np.ndarray | None = None
    counterfactual: np.ndarray | None = None
    pred_reconstruction: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    evaluations: dict[str, int] = field(default_factory=dict)
    start_frame: str | None = None

    def __post_init__(self) -> None:
        if self.start_frame is not None:
            check_start_frame(self.start_frame)

    @property
    def start_kind(self) -> str:
        """What the lambda = 0 frame is: ``start_frame`` when set, else the reconstruction when
        the method recorded a reconstruction probability, the image itself when not."""
        return start_frame_of({"start_frame": self.start_frame, "pred_reconstruction": self.pred_reconstruction})

    @property
    def resolution(self) -> int:
        return int(self.map.shape[-1])

    def summary(self) -> dict[str, Any]:
        """Everything except the image-sized arrays, as JSON-serialisable Python values."""
        return {
            "method": self.method,
            "target": self.target,
            "resolution": self.resolution,
            "pred_original": float(self.pred_original),
            "pred_reconstruction": (
                None if self.pred_reconstruction is None else float(self.pred_reconstruction)
            ),
            "pred_counterfactual": (
                None if self.frame_preds is None else float(self.frame_preds[0])
            ),
            "lambdas": None if self.lambdas is None else [float(v) for v in self.lambdas],
            "frame_preds": (
                None if self.frame_preds is None else [float(v) for v in self.frame_preds]
            ),
            "n_frames": 0 if self.frames is None else int(len(self.frames)),
            "start_frame": self.start_kind,
            "params": jsonable(self.params),
            "timings": {k: float(v) for k, v in self.timings.items()},
            "evaluations": {k: int(v) for k, v in self.evaluations.items()},
        }


def jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples into plain JSON types (recursively)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class Timer:
    """Accumulates seconds per named stage: ``with timer("search"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0

    def done(self) -> dict[str, float]:
        out = dict(self.seconds)
        out["total"] = time.perf_counter() - self._start
        return out


class Explainer:
    """Base class. Subclasses set ``Params`` (a frozen :class:`ExplainerParams` dataclass:
    every accepted parameter with its type, default and documentation) and implement
    :meth:`_explain_tensors`; batching is per subclass.

    Parameters are checked at construction (:meth:`ExplainerParams.build`): an unknown name,
    a value of the wrong type or out of range raises :class:`ExplainerParameterError` naming
    the parameter, the explainer and the valid names. ``self.config`` is the typed instance,
    ``self.params`` the same values as a plain dict (what an :class:`Explanation` records),
    ``defaults`` (class attribute) the defaults as a dict.
    """

    name: ClassVar[str] = "explainer"
    Params: ClassVar[type[ExplainerParams]] = ExplainerParams
    defaults: ClassVar[dict[str, Any]] = {}
    needs_autoencoder: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Params" not in cls.__dict__ and "defaults" in cls.__dict__:
            # a subclass that still declares a plain ``defaults`` dict: typed by its values
            cls.Params = params_from_defaults(f"{cls.__name__}Params", cls.__dict__["defaults"])
        cls.defaults = cls.Params.defaults()

    def __init__(self, bundle: Any, *, method: str | None = None, **params: Any):
        self.bundle = bundle
        self.method = method or self.name
        self.config: ExplainerParams = self.Params.build(self.method, params)
        self.params: dict[str, Any] = self.config.as_dict()
        if self.needs_autoencoder and getattr(bundle, "autoencoder", None) is None:
            from cfviewer.errors import BundleError

            from cfviewer.models.attrinet import is_attrinet

            others = ("attrinet (its own class maps), gradient, guided_backprop, integrated_gradients"
                      if is_attrinet(getattr(bundle, "classifier", None))
                      else "gradient, guided_backprop, integrated_gradients, gradcam")
            raise BundleError(
                f"explainer {self.method!r} needs an autoencoder but the bundle has none; "
                "load a bundle trained with an autoencoder (cfviewer train) or choose a "
                f"method without one ({others})"
            )
        self.validate()

    @classmethod
    def describe_params(cls) -> str:
        """The explainer's parameters, one per line (name, type, default, documentation)."""
        return cls.Params.describe()

    def validate(self) -> None:
        """Checks that need the bundle (value checks live in ``Params.check``); subclasses
        raise ``self._bad(name, why)``."""

    def _bad(self, key: str, why: str) -> ExplainerParameterError:
        return self.config.bad(self.method, key, why)

    # ------------------------------------------------------------------ public API
    def explain(self, image: np.ndarray | torch.Tensor, target: str, **kwargs: Any) -> Explanation:
        """Explain the prediction of ``target`` on one H x W image."""
        return self.explain_batch([image], [target], **kwargs)[0]

    def explain_batch(
        self, images: Sequence[np.ndarray] | np.ndarray, targets: Sequence[str] | str, **kwargs: Any
    ) -> list[Explanation]:
        """Explain several images (each with its own target, or one target for all)."""
        x = self.prepare(images)
        if isinstance(targets, str):
            targets = [targets] * len(x)
        targets = list(targets)
        if len(targets) != len(x):
            raise ExplainerParameterError(
                f"explain_batch: {len(x)} images but {len(targets)} targets; give one target "
                "per image or a single target name"
            )
        idx = [self.bundle.target_index(t) for t in targets]
        return self._explain_tensors(x, targets, idx, **kwargs)

    def prepare(self, images: Sequence[np.ndarray] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Images -> N x 1 x R x R float tensor on the bundle's device (`Bundle.model_input`:
        cropped to the field of view, resized, clipped)."""
        if isinstance(images, (list, tuple)):
            if not images:
                raise ExplainerParameterError("explain_batch: no images given")
            return self.bundle.model_input([_as_array(im) for im in images])
        return self.bundle.model_input(_as_array(images))

    def _explain_tensors(
        self, x: torch.Tensor, targets: list[str], idx: list[int], **kwargs: Any
    ) -> list[Explanation]:
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    @torch.no_grad()
    def predict_target(self, x: torch.Tensor, idx: Sequence[int]) -> np.ndarray:
        """Probability of each row's target class, float64 array of length N."""
        clf = self.bundle.classifier
        if callable(getattr(clf, "logits_of", None)):  # one class per row (Attri-Net): its map only
            k = torch.as_tensor(list(idx), dtype=torch.long, device=x.device)
            return torch.sigmoid(clf.logits_of(x, k)).double().cpu().numpy()
        probs = clf(x)
        rows = torch.arange(len(x), device=probs.device)
        return probs[rows, torch.as_tensor(list(idx), device=probs.device)].double().cpu().numpy()

    def predict_in_passes(self, x: torch.Tensor, idx: Sequence[int], max_batch: int) -> tuple[np.ndarray, int]:
        """:meth:`predict_target` in passes of ``max_batch`` images: (probabilities, passes)."""
        out = [self.predict_target(x[i:i + max_batch], idx[i:i + max_batch]) for i in range(0, len(x), max_batch)]
        return np.concatenate(out), (len(x) + max_batch - 1) // max_batch

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, params={self.params})"


def _as_array(image: Any) -> np.ndarray | torch.Tensor:
    if torch.is_tensor(image):
        return image.detach().float()
    arr = np.asarray(image)
    if arr.dtype.kind not in "fiub":
        raise ExplainerParameterError(
            f"expected a numeric image array, got dtype {arr.dtype}; load it with "
            "cfviewer.imaging.load(path)"
        )
    return arr.astype(np.float32, copy=False)


def to_map(t: torch.Tensor) -> np.ndarray:
    """N x 1 x R x R (or N x R x R) tensor -> N x R x R float32 numpy, non-finite -> 0."""
    a = t.detach().float().cpu().numpy()
    if a.ndim == 4:
        a = a[:, 0]
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)


# ---------------------------------------------------------------------- registry
Factory = Callable[..., Explainer]
_REGISTRY: dict[str, tuple[type[Explainer], dict[str, Any]]] = {}


def register(name: str, cls: type[Explainer], **fixed: Any) -> None:
    """Register ``cls`` under ``name``; ``fixed`` parameters are preset (aliases such as
    ``latentshift-max``) and may still be overridden by the caller."""
    _REGISTRY[name] = (cls, dict(fixed))


def list_explainers() -> list[str]:
    """Registered explainer names, sorted (the augmentation wrapper ``augmented`` included)."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def explainer_class(name: str) -> tuple[type[Explainer], dict[str, Any]]:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise UnknownExplainerError(name, sorted(_REGISTRY))
    return _REGISTRY[name]


def get_explainer(name: str, bundle: Any, *, augment: int | None = None, **params: Any) -> Explainer:
    """Build the explainer registered as ``name`` for ``bundle``.

    ``augment=N`` (N >= 1) wraps it in the augmentation-averaging explainer (Charachon et al.
    eq. 11) over N random geometric transforms plus the identity; augmentation parameters
    (``seed``, ``max_rotation``, ...) are then taken from ``params`` by their ``augment_``
    prefix, e.g. ``augment_seed=3``.
    """
    cls, fixed = explainer_class(name)
    if augment is not None and int(augment) > 0:
        from cfviewer.explain.augment import AugmentedExplainer

        aug = {k[len("augment_"):]: v for k, v in params.items() if k.startswith("augment_")}
        base_params = {k: v for k, v in params.items() if not k.startswith("augment_")}
        return AugmentedExplainer(bundle, base=name, n=int(augment), base_params=base_params, **aug)
    merged = {**fixed, **params}
    return cls(bundle, method=name, **merged)


_LOADED = False


def _ensure_loaded() -> None:
    """Import the method modules (each registers its explainers on import)."""
    global _LOADED
    if _LOADED:
        return
    from cfviewer.explain import adversarial, attrinet, augment, baselines, inpainting, latentshift, sagen  # noqa: F401

    _LOADED = True
