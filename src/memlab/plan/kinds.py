"""Model kinds: one class per kind owns its variant id, its keys, its size and whether it trains.
Adding a kind is one class here, its entry in the config schema and how the engine builds it
(:mod:`memlab.engine.builders`).

A config entry such as ``mlp: {kind: mlp, widths: [8, 16]}`` expands into one *variant* per width
(or per k): ``mlp-w8``, ``mlp-w16``. A variant is a frozen value: its :meth:`Variant.spec` is the
plain dict that travels in ``params:`` and checkpoints, :meth:`Variant.columns` what the tables
carry. This module imports no torch: the workflow plans a study with it on every start.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

# Table columns of every variant, 0 where a kind has no such setting.
VARIANT_COLUMNS = ("width", "depth", "embedding", "k")


@dataclass(frozen=True)
class Variant(ABC):
    """One model variant; subclasses are the kinds. Every kind says how its config entry expands
    and how many parameters it trains; the engine builds a kind that trains into its network and
    lets one that does not (``trains`` False, no regime) predict straight from its training
    subset (:mod:`memlab.engine.builders`)."""

    name: str  # the config key of the entry it came from

    kind: ClassVar[str]
    trains: ClassVar[bool] = True  # False: a memory (k-NN), no training regime
    needs_images: ClassVar[bool] = False
    chunked: ClassVar[bool] = False  # stacks may be split into chunks of replicas
    solved: ClassVar[bool] = False  # trained in closed form (no epochs), not by gradient steps
    remembers: ClassVar[bool] = False  # reads a memory of its training subset (memory on/off)
    sequences: ClassVar[bool] = False  # a language model: trains on text datasets only
    size_letter: ClassVar[str]  # ids are "<name>-<letter><size>", e.g. mlp-w8, knn-k1
    size_field: ClassVar[str] = "width"  # the field that is the id's size (k for k-NN)

    @classmethod
    @abstractmethod
    def expand(cls, name: str, entry: Mapping[str, Any]) -> list[Variant]:
        """The variants of one schema-validated config entry."""

    @property
    def id(self) -> str:
        return f"{self.name}-{self.size_letter}{getattr(self, self.size_field)}"

    def spec(self) -> dict[str, Any]:
        """The plain form of params and checkpoints: ``name``, ``kind`` and the settings."""
        return {"kind": self.kind, **asdict(self)}

    def columns(self) -> dict[str, Any]:
        own = asdict(self)
        return {key: own.get(key, 0) for key in VARIANT_COLUMNS}

    @property
    def needs_tokens(self) -> bool:
        """Whether it reads its inputs as token blocks (``Split.token_shape``)."""
        return False

    @abstractmethod
    def parameter_count(
        self,
        in_dim: int,
        n_classes: int,
        image_shape: Sequence[int] | None,
        token_shape: Sequence[int] | None = None,
    ) -> int:
        """Trainable parameters of one replica (0 for a memory)."""

    def memory_problem(self, memory_size: int, shots: int) -> str | None:
        """Why a memory of ``memory_size`` training examples cannot be trained (None: it can,
        or the kind has no memory)."""
        return None


@dataclass(frozen=True)
class MLP(Variant):
    """ReLU MLP with ``depth`` hidden layers of ``width`` units; with ``embedding`` e > 0, on
    a learned e-dimensional embedding of each input token (token data only)."""

    width: int
    depth: int
    embedding: int = 0  # 0: none, the plain MLP (its id, spec and weights as before)

    kind: ClassVar[str] = "mlp"
    chunked: ClassVar[bool] = True
    size_letter: ClassVar[str] = "w"

    @classmethod
    def expand(cls, name: str, entry: Mapping[str, Any]) -> list[Variant]:
        depth, embedding = int(entry["depth"]), int(entry["embedding"])
        return [cls(name, int(w), depth, embedding) for w in entry["widths"]]

    @property
    def id(self) -> str:
        embedding = f"-e{self.embedding}" if self.embedding else ""
        return f"{super().id}{embedding}"

    def spec(self) -> dict[str, Any]:
        # A plain MLP keeps the spec it always had: its params and checkpoints do not change.
        spec = super().spec()
        return spec if self.embedding else {k: v for k, v in spec.items() if k != "embedding"}

    @property
    def needs_tokens(self) -> bool:
        return self.embedding > 0

    def parameter_count(
        self,
        in_dim: int,
        n_classes: int,
        image_shape: Sequence[int] | None,
        token_shape: Sequence[int] | None = None,
    ) -> int:
        table = 0
        if self.embedding:
            n_tokens, vocab = token_shape or (0, 0)
            table, in_dim = vocab * self.embedding, n_tokens * self.embedding
        dims = [in_dim] + [self.width] * self.depth + [n_classes]
        return table + sum((a + 1) * b for a, b in itertools.pairwise(dims))


@dataclass(frozen=True)
class CNN(Variant):
    """conv3x3(width) - conv3x3(2 width) - maxpool - linear; image data only."""

    width: int

    kind: ClassVar[str] = "cnn"
    needs_images: ClassVar[bool] = True
    size_letter: ClassVar[str] = "w"

    @classmethod
    def expand(cls, name: str, entry: Mapping[str, Any]) -> list[Variant]:
        return [cls(name, int(w)) for w in entry["widths"]]

    def parameter_count(
        self,
        in_dim: int,
        n_classes: int,
        image_shape: Sequence[int] | None,
        token_shape: Sequence[int] | None = None,
    ) -> int:
        h, w = image_shape or (0, 0)
        c1, c2 = self.width, 2 * self.width
        features = c2 * (h // 2) * (w // 2)
        return (9 + 1) * c1 + (9 * c1 + 1) * c2 + (features + 1) * n_classes


@dataclass(frozen=True)
class KNN(Variant):
    """k nearest neighbours: the pure memorizer, its training subset is the whole model."""

    k: int

    kind: ClassVar[str] = "knn"
    trains: ClassVar[bool] = False
    size_letter: ClassVar[str] = "k"
    size_field: ClassVar[str] = "k"

    @classmethod
    def expand(cls, name: str, entry: Mapping[str, Any]) -> list[Variant]:
        return [cls(name, int(k)) for k in entry["k"]]

    def parameter_count(
        self,
        in_dim: int,
        n_classes: int,
        image_shape: Sequence[int] | None,
        token_shape: Sequence[int] | None = None,
    ) -> int:
        return 0  # a memory: nothing is trained


@dataclass(frozen=True)
class RandomFeatures(Variant):
    """``width`` random ReLU features, frozen, and a least-squares readout solved in closed form
    (ridge strength: the regime's ``ridge``); see :mod:`memlab.engine.random_features`."""

    width: int  # the number of random features: the hidden width of a frozen first layer

    kind: ClassVar[str] = "random_features"
    solved: ClassVar[bool] = True
    size_letter: ClassVar[str] = "f"

    @classmethod
    def expand(cls, name: str, entry: Mapping[str, Any]) -> list[Variant]:
        return [cls(name, int(f)) for f in entry["features"]]

    def parameter_count(
        self,
        in_dim: int,
        n_classes: int,
        image_shape: Sequence[int] | None,
        token_shape: Sequence[int] | None = None,
    ) -> int:
        return self.width * n_classes  # the readout; the features are drawn, not trained


@dataclass(frozen=True)
class MemoryNet(Variant):
    """An MLP (``depth`` hidden layers of ``width``) whose prediction mixes its head with an
    attention read over its own training subset: ``p = mix p_memory + (1 - mix) p_head``
    (``mix`` None: learned); see :mod:`memlab.engine.memory_net`."""

    width: int
    depth: int
    mix: float | None  # None: learned, one per replica
    temperature: float

    kind: ClassVar[str] = "memory_net"
    chunked: ClassVar[bool] = True
    remembers: ClassVar[bool] = True
    size_letter: ClassVar[str] = "w"

    @classmethod
    def expand(cls, name: str, entry: Mapping[str, Any]) -> list[Variant]:
        mix = None if entry["mix"] == "learned" else float(entry["mix"])
        depth, temperature = int(entry["depth"]), float(entry["temperature"])
        return [cls(name, int(w), depth, mix, temperature) for w in entry["widths"]]

    def parameter_count(
        self,
        in_dim: int,
        n_classes: int,
        image_shape: Sequence[int] | None,
        token_shape: Sequence[int] | None = None,
    ) -> int:
        mlp = MLP(self.name, self.width, self.depth).parameter_count(in_dim, n_classes, None)
        return mlp + (self.mix is None)

    def memory_problem(self, memory_size: int, shots: int) -> str | None:
        """Why a memory of ``memory_size`` training examples (``shots`` per class, 0: random)
        cannot be trained leave-one-out, or None."""
        if memory_size < 2:
            return f"its memory would hold {memory_size} example; it needs at least 2"
        if self.mix == 1.0 and shots == 1:
            return (
                "with mix 1 (memory only) and 1 example per class, an example's class is never "
                "in its leave-one-out memory, so nothing can be learned; use mix < 1 or "
                "per_class >= 2"
            )
        return None


@dataclass(frozen=True)
class GRU(Variant):
    """A word-level language model: a learned ``embedding`` of each token, one GRU layer of
    ``width`` units, a linear read-out over the vocabulary (memlab.engine.sequence); text
    datasets only."""

    width: int
    embedding: int

    kind: ClassVar[str] = "gru"
    sequences: ClassVar[bool] = True
    size_letter: ClassVar[str] = "w"

    @classmethod
    def expand(cls, name: str, entry: Mapping[str, Any]) -> list[Variant]:
        return [cls(name, int(w), int(entry["embedding"])) for w in entry["widths"]]

    def parameter_count(
        self,
        in_dim: int,
        n_classes: int,
        image_shape: Sequence[int] | None,
        token_shape: Sequence[int] | None = None,
    ) -> int:
        """With ``in_dim`` and ``n_classes`` both the vocabulary size."""
        e, h = self.embedding, self.width
        return in_dim * e + 3 * h * (e + h) + 6 * h + (h + 1) * n_classes


MODEL_KINDS: dict[str, type[Variant]] = {
    cls.kind: cls for cls in (MLP, CNN, KNN, RandomFeatures, MemoryNet, GRU)
}
# The model wildcard of every run path: a config name, a kind's size letter and number, and an
# MLP's token embedding where it has one (mlp-w8, knn-k1, rf-f400, mlp_tok-w256-e32).
VARIANT_ID_PATTERN = (
    "[A-Za-z][A-Za-z0-9_]*-["
    + "".join(sorted({c.size_letter for c in MODEL_KINDS.values()}))
    + "][0-9]+(-e[0-9]+)?"
)
TRAINED_KINDS = tuple(kind for kind, cls in MODEL_KINDS.items() if cls.trains)
SEQUENCE_KINDS = tuple(kind for kind, cls in MODEL_KINDS.items() if cls.sequences)


def expand_models(models: Mapping[str, Mapping[str, Any]]) -> dict[str, Variant]:
    """Variant id -> variant for every entry of the (schema-validated) ``models`` config."""
    out: dict[str, Variant] = {}
    for name, entry in models.items():
        for variant in MODEL_KINDS[entry["kind"]].expand(name, entry):
            out[variant.id] = variant
    return out


def variant_from_spec(spec: Mapping[str, Any]) -> Variant:
    """The variant whose :meth:`Variant.spec` is ``spec`` (as stored in a checkpoint)."""
    fields = {k: v for k, v in spec.items() if k != "kind"}
    return MODEL_KINDS[spec["kind"]](**fields)


def trained(kinds: Any) -> Any:
    """Elementwise: does a model of this kind train (a pandas Series of kinds in, bools out)."""
    return kinds.isin(TRAINED_KINDS)
