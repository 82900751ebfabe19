"""The identity of a run: which backends, options, seed and device made its cached entries.

One :class:`RunIdentity` per run owns every cache key and backend id; the evaluation, the identification run, the
``--dry-run`` plan and ``restorever validate`` all ask it, so a key is built by one recipe
(:mod:`restorever.pipeline.cache`) from one set of ids. results.json records it under ``cache.identity``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from .cache import current_key_versions, embedding_key, landmarks_key, restored_key

__all__ = ["NOT_GIVEN", "RunIdentity", "RECORDED_BEFORE_VERSIONS", "weights_id", "files_id", "weights_files",
           "device_kind", "conditions_of", "recognizer_id", "restorer_id", "plugins_of",
           "keyed_part"]


#: marks an argument that was not passed (``None`` means "no face found" for ``degraded_landmarks``)
NOT_GIVEN: Any = object()

#: the key versions of records made before results.json stored them (the recipes of 2026-12-05; no CUDA run with a
#: stored identity is older than device degradation version 2)
RECORDED_BEFORE_VERSIONS: dict[str, int] = {"landmarks": 1, "restored": 1, "embedding": 1, "device_degradation": 2,
                                            "degraded_item": 0, "detector_file": 0}


def weights_id(model: Any) -> list[tuple[str, str]]:
    """``[(role, sha256 or path), ...]`` of a backend's weight files, sorted (empty for weight-free backends)."""
    return files_id(getattr(model, "weight_files", None) or {})


def files_id(files: Mapping[str, tuple[str, str | None]]) -> list[tuple[str, str]]:
    """:func:`weights_id` of a ``{role: (path, sha256)}`` record (a built backend's ``weight_files``)."""
    return sorted((role, sha or str(path)) for role, (path, sha) in files.items())


def weights_files(model: Any) -> dict[str, tuple[str, str | None]]:
    """``{"<backend>:<role>": (path, sha256)}`` of a backend's weight files, as results.json lists them."""
    files = getattr(model, "weight_files", None) or {}
    return {f"{model.card.name}:{role}": (str(path), sha) for role, (path, sha) in files.items()}


def recognizer_id(name: str, weights: Any, flip_test: bool, options: Mapping[str, Any] | None = None,
                  plugin: Mapping[str, Any] | None = None) -> dict:
    """The recognizer's part of a run's identity: ``{"name", "weights", "flip"}``, plus ``"options"`` when any
    recognizer option was given and ``"plugin"`` for a plugin's model (so other runs keep the keys they always
    had)."""
    out: dict[str, Any] = {"name": name, "weights": weights, "flip": bool(flip_test)}
    if options:
        out["options"] = dict(options)
    if plugin:
        out["plugin"] = dict(plugin)
    return out


def restorer_id(name: str, weights: Any, options: Mapping[str, Any], plugin: Mapping[str, Any] | None = None) -> dict:
    """A restorer's part of a run's identity: ``{"name", "weights", "options"}``, plus ``"plugin"`` for a plugin's
    model."""
    out: dict[str, Any] = {"name": name, "weights": weights, "options": dict(options)}
    if plugin:
        out["plugin"] = dict(plugin)
    return out


def device_kind(device: Any) -> str:
    """``"cpu"``, ``"cuda"``, ...: the part of a device that can change a stage's numbers (not its index)."""
    return str(getattr(device, "type", device) or "cpu").split(":")[0]


@dataclass(frozen=True)
class RunIdentity:
    """Everything a run's cached entries depend on besides the images themselves.

    ``recognizer`` is :func:`recognizer_id` (``{"name", "weights", "flip"[, "options"][, "plugin"]}``);
    ``restorers`` maps a name to :func:`restorer_id` (options as routed to that restorer); ``plugin`` is
    :func:`restorever.pipeline.plugins.plugin_of` (the plugin module, its file's sha256, its package version);
    ``device`` is a device kind (``"cpu"``, ``"cuda"``); ``key_versions`` are the versions of the key recipes
    (:func:`restorever.pipeline.cache.current_key_versions` for a new run; a finished run's own, read back);
    ``detector_file`` is the hex sha256 of the SCRFD ONNX file (:func:`restorever.detectors.detector_file_sha256`),
    None for MTCNN.
    """

    detector: str
    recognizer: dict[str, Any]
    restorers: dict[str, dict[str, Any]] = field(default_factory=dict)
    degradation: str = "difface-test"
    seed: int = 0
    device: str = "cpu"
    key_versions: dict[str, int] = field(default_factory=current_key_versions)
    alignment_fit: str = "least-squares"
    align_on: str = "clean"
    detector_file: str | None = None

    @classmethod
    def of(cls, *, detector: str, recognizer_name: str, recognizer: Any, flip_test: bool,
           restorers: Mapping[str, Any], restorer_options: Mapping[str, Mapping[str, Any]], degradation: str,
           seed: int, device: Any, recognizer_options: Mapping[str, Any] | None = None,
           alignment_fit: str = "least-squares", align_on: str = "clean",
           detector_file: str | None = None, plugins: Mapping[str, Any] | None = None) -> "RunIdentity":
        """The identity of a run with these built backends (``restorer_options``: per restorer, as routed)."""
        return cls.from_files(detector_file=detector_file, plugins=plugins, detector=detector,
                              recognizer_name=recognizer_name,
                              recognizer_files=getattr(recognizer, "weight_files", None) or {}, flip_test=flip_test,
                              restorer_files={n: getattr(r, "weight_files", None) or {} for n, r in restorers.items()},
                              restorer_options=restorer_options, degradation=degradation, seed=seed, device=device,
                              recognizer_options=recognizer_options, alignment_fit=alignment_fit, align_on=align_on)

    @classmethod
    def from_files(cls, *, detector: str, recognizer_name: str, recognizer_files: Mapping[str, tuple[str, str | None]],
                   flip_test: bool, restorer_files: Mapping[str, Mapping[str, tuple[str, str | None]]],
                   restorer_options: Mapping[str, Mapping[str, Any]], degradation: str, seed: int,
                   device: Any, recognizer_options: Mapping[str, Any] | None = None,
                   alignment_fit: str = "least-squares", align_on: str = "clean",
                   detector_file: str | None = None, plugins: Mapping[str, Any] | None = None) -> "RunIdentity":
        """The same identity from the backends' weight files ``{role: (path, sha256)}`` alone: a work plan
        (``--dry-run``) finds the files without building a network and gets the keys the run will use.
        ``plugins``: :func:`plugins_of` the run's models (``{"recognizer": ..., "restorers": {name: ...}}``)."""
        plugins = plugins or {}
        return cls(detector=detector,
                   recognizer=recognizer_id(recognizer_name, files_id(recognizer_files), flip_test,
                                            recognizer_options, plugins.get("recognizer")),
                   restorers={n: restorer_id(n, files_id(files), restorer_options.get(n, {}),
                                             (plugins.get("restorers") or {}).get(n))
                              for n, files in restorer_files.items()},
                   degradation=degradation, seed=int(seed), device=device_kind(device), alignment_fit=alignment_fit,
                   align_on=align_on, detector_file=detector_file)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "RunIdentity | None":
        """The identity stored in a results record (``cache.identity``); None for records made before it was.
        Records made before the key versions were stored get :data:`RECORDED_BEFORE_VERSIONS`."""
        stored = (record.get("cache") or {}).get("identity")
        if not isinstance(stored, Mapping):
            return None
        versions = {**RECORDED_BEFORE_VERSIONS, **dict(stored.get("key_versions") or {})}
        return cls(detector=str(stored["detector"]), recognizer=dict(stored["recognizer"]),
                   restorers={k: dict(v) for k, v in dict(stored["restorers"]).items()},
                   degradation=str(stored["degradation"]), seed=int(stored["seed"]),
                   device=str(stored.get("device", "cpu")),
                   key_versions={k: int(v) for k, v in versions.items()},
                   alignment_fit=str(stored.get("alignment_fit", "least-squares")),
                   align_on=str(stored.get("align_on", "clean")),
                   detector_file=stored.get("detector_file"))

    def as_record(self) -> dict[str, Any]:
        """JSON-ready form (``cache.identity`` in results.json); round-trips through :meth:`from_record`."""
        record = asdict(self)
        if self.align_on == "clean":  # records of clean-landmark runs stay as they always were
            del record["align_on"]
        if self.detector_file is None:  # MTCNN runs' records stay as they always were
            del record["detector_file"]
        record["recognizer"]["weights"] = [list(w) for w in self.recognizer["weights"]]
        for rid in record["restorers"].values():
            rid["weights"] = [list(w) for w in rid["weights"]]
        return record

    # ---- keys ------------------------------------------------------------------------------------------------
    def landmarks_key(self, image_sha256: str, decode: str | None = None) -> str:
        """``decode``: :func:`restorever.images.decode_tag` of the image (None for plain 8-bit, unrotated images)."""
        return landmarks_key(image_sha256, self.detector, decode, device=self.device, versions=self.key_versions,
                             detector_file=self.detector_file)

    def restored_key(self, image_sha256: str, landmarks: Any, restorer: str, scale: int, item: str,
                     degraded_landmarks: Any = NOT_GIVEN) -> str:
        """Key of ``item``'s restored face (``item``: the protocol's id, which seeds its degradation;
        ``degraded_landmarks``: see :meth:`embedding_key`)."""
        return restored_key(image_sha256, landmarks, restorer_id=keyed_part(self._restorer_id(restorer)),
                            degradation=self.degradation, scale=scale, seed=self.seed, item=item, device=self.device,
                            versions=self.key_versions, fit=self.alignment_fit,
                            aligned_on=self._aligned_on(scale, degraded_landmarks))

    def embedding_key(self, image_sha256: str, landmarks: Any, restorer: str, scale: int | None,
                      item: str | None = None, degraded_landmarks: Any = NOT_GIVEN) -> str:
        """Key of an embedding in condition ``(restorer, scale)``; ``scale=None`` is the clean condition (which
        needs no ``item``: it depends on the image's content only). ``landmarks`` are the clean image's; in an
        ``align_on="degraded"`` run a degraded condition also needs ``degraded_landmarks``, the 5x2 landmarks the
        detector found on the degraded 512 crop, or ``None`` where it found no face."""
        return embedding_key(image_sha256, landmarks, recognizer_id=keyed_part(self.recognizer),
                             restorer_id=None if scale is None else keyed_part(self._restorer_id(restorer)),
                             degradation=self.degradation, scale=scale, seed=self.seed, item=item,
                             device=self.device, versions=self.key_versions, fit=self.alignment_fit,
                             aligned_on=self._aligned_on(scale, degraded_landmarks))

    def _aligned_on(self, scale: int | None, degraded_landmarks: Any) -> dict[str, Any] | None:
        if self.align_on == "clean" or scale is None:
            return None
        if degraded_landmarks is NOT_GIVEN:
            raise ValueError("an align_on='degraded' run keys a degraded face by the landmarks found on it: pass "
                             "degraded_landmarks (None where no face was found)")
        return {"on": self.align_on, "landmarks": degraded_landmarks}

    def _restorer_id(self, restorer: str) -> dict[str, Any]:
        if restorer not in self.restorers:
            raise KeyError(f"restorer {restorer!r} is not part of this run ({', '.join(self.restorers)})")
        return self.restorers[restorer]  # keys hash JSON, where tuples and lists serialise alike


def keyed_part(part: Mapping[str, Any]) -> Mapping[str, Any]:
    """A model's part of the identity as the cache keys read it: a plugin counts by its file's sha256 and its
    installed package's name and version, not by the dotted name it was imported by (``--plugin my_models.py``,
    ``--plugin lab.my_models``, an entry point and ``register_module`` load the same file under other names; the
    record keeps the name). Built-in models' parts are returned as they are, so their keys never change."""
    plugin = part.get("plugin")
    if not isinstance(plugin, Mapping) or "module" not in plugin:
        return part
    return {**part, "plugin": {k: v for k, v in plugin.items() if k != "module"}}


def plugins_of(recognizer: str, restorers: Sequence[str]) -> dict[str, Any]:
    """``{"recognizer": plugin or None, "restorers": {name: plugin or None}}`` of a run's registered models
    (:func:`restorever.pipeline.plugins.plugin_of`; None for the built-ins)."""
    from .plugins import plugin_of

    return {"recognizer": plugin_of("recognizer", recognizer),
            "restorers": {name: plugin_of("restorer", name) for name in restorers}}


def conditions_of(restorers: Sequence[str], scales: Sequence[int]) -> list[tuple[str, int | None]]:
    """``(restorer, scale)`` pairs of a run; ``("none", None)`` is the clean condition and always first."""
    return [("none", None)] + [(r, int(s)) for s in scales for r in restorers]
