"""The embedding attribute predictor: probe + re-weighting module, fitted with person-disjoint cross-validation,
saved as one small weights-only checkpoint.

Fitting (:func:`fit_attribute_predictor`):

1. People are split into ``folds`` groups (deterministic: people ordered by a hash of their name, dealt round-robin,
   people with an age label dealt separately so every fold gets some). No person is in two folds.
2. For each fold a probe is fit on the other folds; its predictions on the held-out fold are the *out-of-fold*
   (OOF) probabilities. The fold's re-weighting module is fit on OOF probabilities of its own training people
   (an inner cross-validation), so it never sees the probe's over-confident in-sample outputs.
3. Accuracy and ECE per attribute, with and without re-weighting, are computed on the pooled OOF predictions
   (every image predicted by a model that never saw its person) and per fold.
4. The final probe is fit on everybody; the final re-weighting module on the pooled OOF probabilities.

The checkpoint keeps the fold models and their held-out people, so :meth:`EmbeddingAttributePredictor.predict`
with ``people=`` predicts a person seen in training with the fold model that did not see them (cross-fitting): an
evaluation on LFW people then stays a held-out evaluation.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import CheckpointLayoutError
from .groups import AttributeSchema
from .metrics import attribute_report
from .probe import AttributeProbe, fit_probe
from .reweighting import AttributeReweighting, fit_reweighting

logger = logging.getLogger(__name__)

FORMAT = "restorever.attributes"
VERSION = 1


@dataclass
class FitOptions:
    """Hyper-parameters of :func:`fit_attribute_predictor` (stored in the checkpoint)."""

    folds: int = 5
    hidden: int = 0
    l2: float = 1e-2
    reweight_hidden: int = 16
    reweight_l2: float = 1e-3
    max_iter: int = 300
    seed: int = 0

    def validate(self) -> None:
        if self.folds < 2:
            raise ValueError("--folds must be at least 2 (held-out people are needed)")
        if self.hidden < 0 or self.reweight_hidden < 0:
            raise ValueError("hidden sizes must be >= 0")
        if self.l2 < 0 or self.reweight_l2 < 0:
            raise ValueError("l2 penalties must be >= 0")


@dataclass
class ProbeSet:
    """One fitted probe and (optionally) its re-weighting module."""

    probe: AttributeProbe
    reweight: AttributeReweighting | None = None


class EmbeddingAttributePredictor:
    """Gender and age-group probabilities from a recognizer's embeddings.

    ``predict(embeddings [N, D])`` -> ``{"gender": [N, 2], "age": [N, G]}`` float64 probabilities (classes in
    :class:`AttributeSchema` order); ``reweight=True`` passes them through the re-weighting module.
    """

    kind = "embedding"

    def __init__(self, schema: AttributeSchema, recognizer: str, model: ProbeSet,
                 folds: Sequence[tuple[ProbeSet, frozenset[str]]] = (), meta: Mapping[str, Any] | None = None):
        self.schema, self.recognizer, self.model = schema, recognizer, model
        self.folds = list(folds)
        self.meta = dict(meta or {})
        self._fold_of = {p: k for k, (_, people) in enumerate(self.folds) for p in people}

    @property
    def name(self) -> str:
        return f"probe[{self.recognizer}]"

    @property
    def embedding_dim(self) -> int:
        return self.model.probe.in_dim

    @property
    def has_reweighting(self) -> bool:
        return self.model.reweight is not None

    def _predict_set(self, s: ProbeSet, x: np.ndarray, reweight: bool) -> dict[str, np.ndarray]:
        raw = s.probe.predict_proba(x)
        if not reweight:
            return raw
        if s.reweight is None:
            raise ValueError("this attribute model has no re-weighting module (fit it with --reweight-hidden >= 0)")
        return s.reweight.refine(self.schema.concat(raw))

    def predict(self, embeddings: np.ndarray, *, people: Sequence[str] | None = None,
                reweight: bool = False) -> dict[str, np.ndarray]:
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.embedding_dim:
            raise ValueError(f"attribute model expects [N, {self.embedding_dim}] {self.recognizer} embeddings, "
                             f"got {x.shape}")
        out = {a: np.zeros((len(x), n)) for a, n in self.schema.sizes.items()}
        for s, rows in self._sets_for(people, len(x)):
            for a, p in self._predict_set(s, x[rows], reweight).items():
                out[a][rows] = p
        return out

    def refine(self, probabilities: np.ndarray, *, people: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Concatenated probabilities ``[N, K]`` (of any attribute model with this layout) through the re-weighting
        modules, cross-fitted as :meth:`predict`: a person seen in training goes through the module of the fold
        that did not see them, anyone else through the final one. ``{attribute: [N, C]}`` float64."""
        a = np.asarray(probabilities, dtype=np.float64)
        out = {name: np.zeros((len(a), n)) for name, n in self.schema.sizes.items()}
        for s, rows in self._sets_for(people, len(a)):
            if s.reweight is None:
                raise ValueError("this attribute model has no re-weighting module (fit it with --reweight-hidden "
                                 ">= 0)")
            for name, p in s.reweight.refine(a[rows]).items():
                out[name][rows] = p
        return out

    def _sets_for(self, people: Sequence[str] | None, n: int) -> list[tuple[ProbeSet, np.ndarray]]:
        """``[(probe set, rows)]``: each row's fold model when its person was held out of that fold (cross-fitting),
        else the final model."""
        fold = np.full(n, -1)
        if people is not None and self.folds:
            if len(people) != n:
                raise ValueError(f"people has {len(people)} entries for {n} rows")
            fold = np.array([self._fold_of.get(p, -1) for p in people])
        return [(self.model if k < 0 else self.folds[k][0], np.where(fold == k)[0]) for k in np.unique(fold)]

    def cross_fitted(self, people: Sequence[str]) -> np.ndarray:
        """Boolean mask: which of ``people`` are predicted by a fold model (they were in the training data)."""
        return np.array([p in self._fold_of for p in people], dtype=bool)

    # ------------------------------------------------------------------------------------------------ persistence

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        sets = [("model", self.model)] + [(f"fold{k}", s) for k, (s, _) in enumerate(self.folds)]
        for prefix, s in sets:
            tensors.update({f"{prefix}.probe.{k}": v.detach().cpu() for k, v in s.probe.state_dict().items()})
            if s.reweight is not None:
                tensors.update({f"{prefix}.reweight.{k}": v.detach().cpu().float()
                                for k, v in s.reweight.state_dict().items()})
        return tensors

    def describe(self) -> dict[str, Any]:
        """Everything but the tensors: options, fit report, layout, and the held-out people of each fold."""
        return {**{k: v for k, v in self.meta.items() if k != "file"}, "schema": self.schema.to_dict(),
                "recognizer": self.recognizer, "embedding_dim": self.embedding_dim, "classes": self.schema.sizes,
                "probe_hidden": self.model.probe.hidden,
                "reweight_hidden": None if self.model.reweight is None else self.model.reweight.hidden,
                "folds": [sorted(people) for _, people in self.folds]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint atomically (``torch.save`` of tensors + a JSON string; loads with weights_only)."""
        from ..files import atomic_write_bytes
        import io

        meta = self.describe()
        buf = io.BytesIO()
        torch.save({"format": FORMAT, "version": VERSION, "meta": json.dumps(meta, sort_keys=True),
                    "tensors": self._tensors()}, buf)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EmbeddingAttributePredictor":
        """Load a checkpoint written by :meth:`save` (``torch.load(weights_only=True)``; layouts checked strictly)."""
        from ..hub import load_state_dict_strict, load_weights_only

        path = Path(path)
        if not path.is_file():
            from ..errors import WeightsNotFoundError

            raise WeightsNotFoundError(f"{path}: attribute model not found (create one with `restorever attributes "
                                       f"fit ... --out {path.name}`)")
        obj = load_weights_only(path)
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise CheckpointLayoutError(f"{path}: not a restorever attribute model (expected format {FORMAT!r})")
        try:
            version = int(obj.get("version", -1))
            meta = json.loads(obj["meta"])
            tensors = obj["tensors"]
            if not isinstance(meta, dict) or not isinstance(tensors, dict) or not all(
                    isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
                raise TypeError("meta must be a JSON object and tensors a {name: tensor} mapping")
            schema = AttributeSchema.from_dict(meta["schema"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointLayoutError(f"{path}: malformed attribute model ({type(exc).__name__}: {exc}); refit it "
                                        f"with `restorever attributes fit`") from None
        if version > VERSION:
            raise CheckpointLayoutError(f"{path}: attribute model version {obj.get('version')} is newer than this "
                                        f"restorever understands ({VERSION}); upgrade restorever")

        def build(prefix: str) -> ProbeSet:
            probe = AttributeProbe(int(meta["embedding_dim"]), schema.sizes, int(meta["probe_hidden"]))
            load_state_dict_strict(probe, _strip(tensors, f"{prefix}.probe."), source=f"{path} [{prefix}.probe]")
            probe.eval()
            reweight = None
            if meta.get("reweight_hidden") is not None:
                reweight = AttributeReweighting(schema.sizes, int(meta["reweight_hidden"]))
                load_state_dict_strict(reweight, _strip(tensors, f"{prefix}.reweight."),
                                       source=f"{path} [{prefix}.reweight]")
                reweight.eval()
            return ProbeSet(probe, reweight)

        try:
            folds = [(build(f"fold{k}"), frozenset(people)) for k, people in enumerate(meta.get("folds", []))]
            predictor = cls(schema, meta["recognizer"], build("model"), folds, meta)
        except CheckpointLayoutError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointLayoutError(f"{path}: malformed attribute model ({type(exc).__name__}: {exc}); refit it "
                                        f"with `restorever attributes fit`") from None
        predictor.meta["file"] = str(path)
        return predictor


def _strip(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------------- fitting

def assign_folds(people: Sequence[str], k: int, *, stratum: Mapping[str, int] | None = None,
                 seed: int = 0) -> dict[str, int]:
    """Person -> fold in ``0..k-1``: people ordered by ``sha256(seed|name)`` and dealt round-robin within each
    stratum (e.g. "has an age label"), so strata are spread evenly over the folds."""
    unique = sorted(set(people), key=lambda p: hashlib.sha256(f"{seed}|{p}".encode()).hexdigest())
    counters: dict[int, int] = {}
    out = {}
    for p in unique:
        s = (stratum or {}).get(p, 0)
        out[p] = counters.get(s, 0) % k
        counters[s] = counters.get(s, 0) + 1
    return out


def _subset(labels: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {a: np.asarray(y)[rows] for a, y in labels.items()}


def _fit_set(x: np.ndarray, labels: Mapping[str, np.ndarray], people: np.ndarray, schema: AttributeSchema,
             options: FitOptions, *, reweight: bool) -> ProbeSet:
    probe = fit_probe(x, labels, schema.sizes, hidden=options.hidden, l2=options.l2, max_iter=options.max_iter,
                      seed=options.seed)
    module = None
    if reweight:
        inner = assign_folds(people, options.folds, stratum=_age_stratum(labels, people), seed=options.seed + 1)
        fold = np.array([inner[p] for p in people])
        oof = np.zeros((len(x), schema.width))
        for k in range(options.folds):
            test = fold == k
            if not test.any() or test.all():
                continue
            p_k = fit_probe(x[~test], _subset(labels, ~test), schema.sizes, hidden=options.hidden, l2=options.l2,
                            max_iter=options.max_iter, seed=options.seed)
            oof[test] = schema.concat(p_k.predict_proba(x[test]))
        module = fit_reweighting(oof, labels, schema.sizes, hidden=options.reweight_hidden, l2=options.reweight_l2,
                                 max_iter=options.max_iter, seed=options.seed)
    return ProbeSet(probe, module)


def _labelled_schema(schema: AttributeSchema, labels: Mapping[str, np.ndarray]) -> AttributeSchema:
    """``schema`` without the attributes that have no labelled row: a head fitted on nothing predicts noise, and a
    saved model with it would filter galleries and report consistency with it. ``ValueError`` when none is left."""
    kept = tuple(a for a in schema.attributes if a in labels and (labels[a] >= 0).any())
    if not kept:
        raise ValueError("no attribute has a labelled image: check that the label files name the images of this "
                         "split (LFW stems like Aaron_Eckhart_0001)")
    dropped = [a for a in schema.attributes if a not in kept]
    if dropped:
        logger.warning("attribute model: no labelled image for %s, so it is left out of the model (it cannot "
                       "filter or be reported); check its label file", ", ".join(dropped))
        schema = AttributeSchema(schema.age_groups, kept)
    return schema


def _age_stratum(labels: Mapping[str, np.ndarray], people: Sequence[str]) -> dict[str, int]:
    age = labels.get("age")
    if age is None:
        return {}
    return {p: 1 for p, y in zip(people, np.asarray(age)) if y >= 0}


def fit_attribute_predictor(x: np.ndarray, labels: Mapping[str, np.ndarray], people: Sequence[str],
                            schema: AttributeSchema, *, recognizer: str, options: FitOptions | None = None,
                            reweight: bool = True, meta: Mapping[str, Any] | None = None,
                            ) -> tuple[EmbeddingAttributePredictor, dict[str, Any]]:
    """Fit probe (+ re-weighting) with person-disjoint cross-validation; returns ``(predictor, report)``.

    ``x`` ``[N, D]`` embeddings of clean faces, ``labels`` ``{attribute: int [N]}`` (-1 = unknown), ``people`` the
    person of each row. The report holds pooled out-of-fold metrics per attribute (``raw`` and ``reweighted``), the
    per-fold accuracies and the data counts.
    """
    options = options or FitOptions()
    options.validate()
    x = np.asarray(x, dtype=np.float32)
    people_arr = np.asarray(list(people))
    labels = {a: np.asarray(labels[a], dtype=np.int64) for a in schema.attributes if a in labels}
    if len(people_arr) != len(x) or any(len(y) != len(x) for y in labels.values()):
        raise ValueError("embeddings, people and labels must have the same length")
    schema = _labelled_schema(schema, labels)
    labels = {a: y for a, y in labels.items() if a in schema.attributes}
    n_people = len(set(people_arr.tolist()))
    if n_people < options.folds:
        raise ValueError(f"{n_people} people cannot be split into {options.folds} person-disjoint folds")
    fold_of = assign_folds(people_arr.tolist(), options.folds, stratum=_age_stratum(labels, people_arr.tolist()),
                           seed=options.seed)
    fold = np.array([fold_of[p] for p in people_arr])
    oof_raw = np.zeros((len(x), schema.width))
    oof_rw = np.zeros((len(x), schema.width))
    fold_sets = []
    per_fold = []
    for k in range(options.folds):
        test = fold == k
        s = _fit_set(x[~test], _subset(labels, ~test), people_arr[~test], schema, options, reweight=reweight)
        raw = s.probe.predict_proba(x[test])
        oof_raw[test] = schema.concat(raw)
        if s.reweight is not None:
            oof_rw[test] = schema.concat(s.reweight.refine(oof_raw[test]))
        fold_sets.append((s, frozenset(people_arr[test].tolist())))
        entry: dict[str, Any] = {"fold": k, "people": int(len(set(people_arr[test].tolist()))),
                                 "images": int(test.sum())}
        for a, y in labels.items():
            sl = schema.slices[a]
            entry[a] = {"raw": attribute_report(y[test], oof_raw[test, sl], schema.classes(a))["accuracy"]}
            if s.reweight is not None:
                entry[a]["reweighted"] = attribute_report(y[test], oof_rw[test, sl], schema.classes(a))["accuracy"]
        per_fold.append(entry)
        logger.info("attribute fold %d/%d: %s", k + 1, options.folds, entry)
    final_probe = fit_probe(x, labels, schema.sizes, hidden=options.hidden, l2=options.l2,
                            max_iter=options.max_iter, seed=options.seed)
    final_rw = None
    if reweight:
        final_rw = fit_reweighting(oof_raw, labels, schema.sizes, hidden=options.reweight_hidden,
                                   l2=options.reweight_l2, max_iter=options.max_iter, seed=options.seed)
    report = _report(labels, oof_raw, oof_rw if reweight else None, schema, people_arr, fold, per_fold, options)
    meta = {**(meta or {}), "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "options": asdict(options), "report": report}
    return EmbeddingAttributePredictor(schema, recognizer, ProbeSet(final_probe, final_rw), fold_sets, meta), report


def _report(labels, oof_raw, oof_rw, schema, people, fold, per_fold, options) -> dict[str, Any]:
    out: dict[str, Any] = {"images": int(len(people)), "people": int(len(set(people.tolist()))),
                           "folds": options.folds, "split": "person-disjoint k-fold (pooled out-of-fold predictions)",
                           "attributes": {}, "per_fold": per_fold}
    for a, y in labels.items():
        sl = schema.slices[a]
        classes = schema.classes(a)
        labelled = y >= 0
        entry: dict[str, Any] = {
            "images": int(labelled.sum()), "people": int(len(set(people[labelled].tolist()))),
            "raw": attribute_report(y, oof_raw[:, sl], classes),
        }
        if labelled.any():
            counts = np.bincount(y[labelled], minlength=len(classes))
            entry["majority_baseline"] = float(counts.max() / counts.sum())
        if oof_rw is not None:
            entry["reweighted"] = attribute_report(y, oof_rw[:, sl], classes)
            entry["delta_accuracy"] = entry["reweighted"]["accuracy"] - entry["raw"]["accuracy"]
            entry["delta_ece"] = entry["reweighted"]["ece"] - entry["raw"]["ece"]
        accs = [f[a]["raw"] for f in per_fold if a in f and not np.isnan(f[a]["raw"])]
        entry["fold_accuracy_raw"] = {"mean": float(np.mean(accs)) if accs else None,
                                      "std": float(np.std(accs)) if accs else None}
        if oof_rw is not None:
            accs = [f[a]["reweighted"] for f in per_fold if a in f and not np.isnan(f[a]["reweighted"])]
            entry["fold_accuracy_reweighted"] = {"mean": float(np.mean(accs)) if accs else None,
                                                 "std": float(np.std(accs)) if accs else None}
        out["attributes"][a] = entry
    return out


def report_table(report: Mapping[str, Any], order: Sequence[str] = ("gender", "age")) -> str:
    """Markdown table of a fit report: held-out accuracy and ECE per attribute, without and with re-weighting;
    attributes in ``order`` first (the schema's order: a saved report's keys come back sorted)."""
    def pct(x: Any) -> str:
        return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{100 * x:.2f}"

    rows = [f"held-out people ({report.get('folds')}-fold, person-disjoint): {report.get('images')} images of "
            f"{report.get('people')} people", "",
            "| attribute | images | people | majority % | accuracy % | accuracy % (re-weighted) | balanced acc % "
            "(raw / re-weighted) | ECE % | ECE % (re-weighted) | fold accuracy % (mean ± std) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    entries = report.get("attributes") or {}
    for a in sorted(entries, key=lambda name: (list(order).index(name) if name in order else len(order), name)):
        e = entries[a]
        raw, rw = e["raw"], e.get("reweighted") or {}
        fold = e.get("fold_accuracy_raw") or {}
        rows.append(f"| {a} | {e['images']} | {e['people']} | {pct(e.get('majority_baseline'))} | "
                    f"{pct(raw['accuracy'])} | {pct(rw.get('accuracy'))} | {pct(raw['balanced_accuracy'])} / "
                    f"{pct(rw.get('balanced_accuracy'))} | {pct(raw['ece'])} | {pct(rw.get('ece'))} | "
                    f"{pct(fold.get('mean'))} ± {pct(fold.get('std'))} |")
    return "\n".join(rows)
