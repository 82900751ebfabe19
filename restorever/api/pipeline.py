"""``FacePipeline``: detect, align, (degrade), restore and embed faces from ordinary images, in a few calls.

The library counterpart of insightface's ``FaceAnalysis``. Each method runs the same stage functions as
``restorever eval`` (:mod:`restorever.pipeline.stages`), so an image gets the embedding the evaluation computes for
it, and scores use the evaluation's scoring function (:func:`restorever.metrics.score_pairs`).
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from ..detectors import MIN_FACE_SIZE
from ..errors import ConfigError, WeightsNotFoundError
from .faces import Face, per_image_selectors, select_landmarks, sort_largest_first
from .inputs import ImageInput, flatten_images, is_single_image, load_image
from .models import check_recognizer, check_restorer, model_name, similarity_of

__all__ = ["FacePipeline", "Restoration"]

logger = logging.getLogger(__name__)

Images = Any  # a path, PIL image, uint8 array, tensor, or a list/batch of them (see restorever.api.inputs)


@dataclass(frozen=True)
class Restoration:
    """What :meth:`FacePipeline.restore` returns.

    Attributes:
        images: per input, the photo with its restored face(s) pasted back, ``[3, H, W]`` float RGB in [0, 1]
            (``None`` when ``paste_back=False``).
        faces: ``[N, 3, 512, 512]`` restored ``ffhq_512`` crops, float RGB in [0, 1] (8-bit values); one per input,
            or with ``face="all"`` one per restored face, in paste order.
        landmarks: ``[N, 5, 2]`` float32 landmarks in crop pixels.
        matrices: ``[N, 2, 3]`` float64 photo -> crop similarity matrices.
        image_index: ``[N]`` int64, the input each face came from.
        alphas: per input, its ``HxW`` uint8 alpha channel (transparency) or ``None``: restoration works on the
            colours, and the alpha is handed back unchanged, to stack onto ``images`` as ``restorever restore``
            writes RGBA (``images`` stay ``[3, H, W]`` RGB, the form every method takes).
    """

    images: list | None
    faces: Any
    landmarks: Any
    matrices: Any
    image_index: Any = None
    alphas: list | None = None


class FacePipeline:
    """Detect, align, optionally degrade, restore and embed faces -- the evaluation pipeline on your own images.

    Args:
        restorer: restorer name (``restorever restorers``) or a created restorer; ``"none"`` leaves faces as they are.
        recognizer: recognizer name (``restorever recognizers``) or a created recognizer.
        detector: landmark detector, ``"mtcnn"``, ``"scrfd"`` or ``"auto"`` (created on first use).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        weights: the restorer's weights, ``FILE`` or ``{role: FILE}`` (as ``--weights`` on the command line).
        recognizer_weights: the recognizer's weights, same form.
        recognizer_options: options the recognizer's card declares (``precision``, ``channels_last``, ``compile``
            for the torch recognizers; ``restorever recognizers`` lists them), as ``--recognizer-option``.
        degradation: the preset an integer ``degrade=`` scale uses (``difface-test``, as ``restorever eval``).
        attributes: an attribute model for :meth:`attributes`: ``"insightface-genderage"``, a probe ``.pt`` fitted
            by ``restorever attributes fit``, or a loaded predictor.
        batch_size: faces per restorer / recognizer call.
        flip_test: sum each face's embedding with its mirror image's (recognizers that support it).
        alignment_fit: how landmarks are fitted to the template, ``"least-squares"`` or ``"lmeds"`` (as the official
            restoration scripts; a protocol's ``alignment.fit``, see docs/architecture.md).
        **backend_options: restorer options its card declares (``fidelity_ratio``, ``steps``, ``start_step``,
            ``eta``).

    Images may be file paths, PIL images, ``HxWx3`` uint8 arrays (RGB; ``bgr=True`` for OpenCV's BGR), ``[B,3,H,W]``
    float tensors in [0, 1], or lists of these. Example::

        pipe = FacePipeline(restorer="none", recognizer="dlib")
        emb = pipe.embed(["a.jpg", "b.jpg"], degrade=16)     # [2, 128]
    """

    def __init__(self, restorer: Any = "none", recognizer: Any = "dlib", detector: str = "mtcnn",
                 device: str = "auto", weights: str | dict[str, str] | None = None, *,
                 recognizer_weights: str | dict[str, str] | None = None, degradation: str = "difface-test",
                 attributes: Any = None, batch_size: int = 16, flip_test: bool = False,
                 recognizer_options: dict[str, Any] | None = None, alignment_fit: str = "least-squares",
                 **backend_options: Any):
        from ..degradation import get_preset
        from ..pipeline.evaluate import resolve_device, route_recognizer_options, route_restorer_options
        from ..recognizers import create_recognizer
        from ..restorers import create_restorer

        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError("batch_size", f"must be a positive integer, got {batch_size!r}")
        from ..alignment import FITS

        if alignment_fit not in FITS:
            raise ConfigError("alignment_fit", f"must be one of {', '.join(FITS)}, got {alignment_fit!r}")
        self.alignment_fit = alignment_fit
        get_preset(degradation)  # unknown presets fail here, with a did-you-mean hint
        self.device = _device(device, resolve_device)
        self.batch_size = batch_size
        self.degradation = degradation
        self.detector_name = detector
        self._detector = None
        if isinstance(recognizer, str):
            try:
                options = route_recognizer_options(recognizer, dict(recognizer_options or {}))
            except ValueError as exc:
                raise ConfigError("recognizer_options", str(exc)) from exc
            try:
                recognizer = create_recognizer(recognizer, weights=recognizer_weights, device=self.device,
                                               **({"flip_test": True} if flip_test else {}), **options)
            except WeightsNotFoundError as exc:  # the message names create_recognizer's weights=
                raise WeightsNotFoundError(re.sub(r"(?<![\w-])weights=", "recognizer_weights=", str(exc))) from exc
        elif recognizer_weights is not None or flip_test or recognizer_options:
            raise ConfigError("recognizer_weights", "flip_test and recognizer_options apply only when recognizer is "
                                                    "a name")
        self.recognizer = check_recognizer(recognizer)
        if isinstance(restorer, str):
            try:
                options = route_restorer_options([restorer], backend_options)[restorer]
            except ValueError as exc:
                raise ConfigError("backend_options", str(exc)) from exc
            if restorer == "none" and weights is not None:
                raise ConfigError("weights", "restorer 'none' takes no weights; pass weights= with a restorer that "
                                             "loads them (`restorever restorers`)")
            restorer = create_restorer(restorer, weights=weights, device=self.device, **options)
        elif weights is not None or backend_options:
            raise ConfigError("weights", "and backend options apply only when restorer is a name")
        self.restorer = check_restorer(restorer)
        self.attribute_model = self._load_attributes(attributes)

    # ------------------------------------------------------------------------------------------------- properties
    @property
    def restorer_name(self) -> str:
        """The restorer's registry name (an object of your own: its ``name``, else its class name)."""
        return model_name(self.restorer)

    @property
    def recognizer_name(self) -> str:
        """The recognizer's registry name (an object of your own: its ``name``, else its class name)."""
        return model_name(self.recognizer)

    @property
    def detector(self):
        """The landmark detector (created on first use)."""
        if self._detector is None:
            from ..detectors import create_detector

            self._detector = create_detector(self.detector_name, device=str(self.device))
        return self._detector

    def __repr__(self) -> str:
        return (f"FacePipeline(restorer={self.restorer_name!r}, recognizer={self.recognizer_name!r}, "
                f"detector={self.detector_name!r}, device={str(self.device)!r})")

    # ------------------------------------------------------------------------------------------------------ detect
    def detect(self, images: Images, *, bgr: bool = False) -> list[list[Face]]:
        """Every face of every image: per image a list of :class:`Face` (box, five landmarks, score), largest first.

        Example:
            >>> faces = pipe.detect("photo.jpg")[0]
            >>> faces[0].box, faces[0].landmarks, faces[0].score
        """
        from ..pipeline.stages import detect_each

        out = []
        for start, items in self._chunks(images):
            arrays = [self._load(x, start + k, bgr).array for k, x in enumerate(items)]
            out += [sort_largest_first(found) for found in detect_each(self.detector, arrays, self.device,
                                                                        all_faces=True)]
        return out

    # ------------------------------------------------------------------------------------------------------- embed
    def embed(self, images: Images, *, degrade: Any = None, seed: int = 0, face: Any = None,
              item_ids: Sequence[str] | None = None, bgr: bool = False):
        """Embeddings ``[N, D]`` (float32 CPU tensor, raw as the recognizer gives them): one face per image.

        Args:
            images: N images (see the class docstring).
            degrade: ``None`` (clean), a scale ``int`` (the pipeline's ``degradation`` preset at that scale), a preset
                name (its own scale distribution) or ``(preset, scale)``. The face is degraded after alignment and
                restored before embedding, as in ``restorever eval``.
            seed: run seed of the degradation and of stochastic restorers.
            face: which face: ``None``/``"largest"``, ``"center"`` (eval's rule), an index into :meth:`detect`'s
                list, a box tuple ``(x1, y1, x2, y2)``, a :class:`Face`, an insightface ``Face`` (its ``kps``), a
                ``[5, 2]`` landmark array; or a list with one of these per image.
            item_ids: per image, the id that seeds its degradation (``restorever eval`` uses the protocol's item
                name, e.g. ``"madonna/madonna_0001.jpg"``); default: the sha256 of the image's pixels.
            bgr: numpy inputs are OpenCV BGR.

        Example:
            >>> emb = pipe.embed(["a.jpg", "b.jpg"], degrade=16)        # [2, 128] for dlib
        """
        import torch

        return torch.from_numpy(np.concatenate(
            [emb for emb, *_ in self._run(images, degrade=degrade, seed=seed, face=face, item_ids=item_ids,
                                          bgr=bgr, embed=True)]
            or [np.zeros((0, getattr(self.recognizer, "embedding_dim", 0)), np.float32)]))

    # --------------------------------------------------------------------------------------------------- similarity
    def similarity_of_embeddings(self, e1: Any, e2: Any):
        """The recognizer's score of embedding pairs (higher = more alike; the function ``restorever eval`` scores
        with: cosine, or minus the Euclidean distance for dlib). ``[D]`` and ``[D]`` give a float; ``[N, D]`` and
        ``[N, D]`` (or one side ``[D]``) give ``[N]`` numpy scores.

        Example:
            >>> pipe.similarity_of_embeddings(emb[0], emb[1])
        """
        from ..metrics.similarity import score_pairs

        a, b = _as_matrix(e1, "e1"), _as_matrix(e2, "e2")
        if a.shape[1] != b.shape[1]:
            raise ConfigError("e2", f"has dimension {b.shape[1]} but e1 has {a.shape[1]}")
        if len(a) != len(b) and 1 not in (len(a), len(b)):
            raise ConfigError("e2", f"has {len(b)} rows but e1 has {len(a)} (give equal counts, or one embedding)")
        a, b = np.broadcast_to(a, (max(len(a), len(b)), a.shape[1])), np.broadcast_to(b, (max(len(a), len(b)),
                                                                                          b.shape[1]))
        scores = score_pairs(similarity_of(self.recognizer), a, b)
        return float(scores[0]) if _ndim(e1) == 1 and _ndim(e2) == 1 else scores

    def similarity(self, a: Images, b: Images, *, degrade: Any = None, seed: int = 0, face_a: Any = None,
                   face_b: Any = None, item_ids: Sequence[str] | None = None, bgr: bool = False):
        """Score of image pairs ``(a[i], b[i])``: a float for two single images, else ``[N]`` numpy scores. One image
        on either side is scored against every image of the other (as :meth:`similarity_of_embeddings` does).

        ``degrade`` applies to ``b`` only (the probe, as ``restorever eval``'s default ``degrade_side``).
        ``face_a`` / ``face_b`` pick the face in each side's images (the forms of :meth:`embed`'s ``face``; the
        default is the largest face, ``"center"`` is ``restorever eval``'s rule); ``item_ids`` seed the degradation
        of ``b``'s images (:meth:`embed`).

        Example:
            >>> pipe.similarity("a.jpg", "b.jpg")
        """
        ea = self.embed(a, face=face_a, bgr=bgr)
        eb = self.embed(b, degrade=degrade, seed=seed, face=face_b, item_ids=item_ids, bgr=bgr)
        if len(ea) != len(eb) and 1 not in (len(ea), len(eb)):
            raise ConfigError("b", f"has {len(eb)} image(s) but a has {len(ea)} (give equal counts, or one image)")
        if not len(ea) or not len(eb):
            return np.zeros(0)
        scores = self.similarity_of_embeddings(ea.numpy(), eb.numpy())
        return float(scores[0]) if is_single_image(a) and is_single_image(b) else scores

    def verify(self, a: Images, b: Images, threshold: float | None = None, *,
               results: str | os.PathLike | dict | None = None, degrade: Any = None, seed: int = 0,
               face_a: Any = None, face_b: Any = None, item_ids: Sequence[str] | None = None, bgr: bool = False):
        """Same person? ``similarity(a, b) > threshold`` (a bool for two single images, else a bool array).

        ``threshold`` is on the score scale of :meth:`similarity` (dlib: minus a distance, e.g. ``-0.6``), or comes
        from a finished run: ``results=`` (a results.json or run folder) picks the condition matching this
        pipeline's restorer and ``degrade`` scale (:func:`threshold_from_results`). A run's threshold was found on
        the faces ``restorever eval`` picks: pass ``face_a="center", face_b="center"`` for photos with several faces,
        and the protocol's ``item_ids`` to degrade ``b`` as the run did. The other arguments are :meth:`similarity`'s.

        Example:
            >>> pipe.verify("a.jpg", "b.jpg", results="runs/lfw-dlib")
        """
        if (threshold is None) == (results is None):
            raise ConfigError("threshold", "or results= must be given (exactly one of them)")
        if threshold is not None and not (isinstance(threshold, (int, float, np.number))
                                          and not isinstance(threshold, bool) and np.isfinite(threshold)):
            raise ConfigError("threshold", f"must be a finite number on the similarity's scale, got {threshold!r}")
        if threshold is not None:
            _check_threshold_scale(float(threshold), similarity_of(self.recognizer))
        if threshold is None:
            from .thresholds import threshold_from_results

            preset, scale = _degrade_spec(degrade, self.degradation)
            if degrade is not None and scale is None:
                raise ConfigError("degrade", "needs a scale to find a threshold in results (e.g. 16 or "
                                             f"({preset!r}, 16))")
            if scale is None and self.restorer_name != "none":
                raise ConfigError("results", f"hold no clean condition restored by {self.restorer_name} (clean faces "
                                             f"are never restored in a run): pass degrade=SCALE or threshold=")
            threshold = threshold_from_results(results, restorer=self.restorer_name if scale is not None else "none",
                                               scale=scale, recognizer=self.recognizer_name,
                                               degradation=preset if scale is not None else None,
                                               similarity=similarity_of(self.recognizer))
        scores = self.similarity(a, b, degrade=degrade, seed=seed, face_a=face_a, face_b=face_b, item_ids=item_ids,
                                 bgr=bgr)
        return bool(scores > threshold) if isinstance(scores, float) else np.asarray(scores) > threshold

    # ----------------------------------------------------------------------------------------------------- restore
    def restore(self, images: Images, paste_back: bool = True, *, degrade: Any = None, seed: int = 0,
                face: Any = None, item_ids: Sequence[str] | None = None, bgr: bool = False,
                min_face_size: float = MIN_FACE_SIZE) -> Restoration:
        """Restore faces: aligned crops, and (``paste_back=True``) each photo with its face(s) pasted back.

        ``face`` takes :meth:`embed`'s forms (one face per image; default the largest), or ``"all"``: every
        detected face whose box sides are at least ``min_face_size`` photo pixels (smaller ones are left out with
        a warning; an image with none left raises :class:`~restorever.errors.FaceNotFoundError`), pasted together
        (:func:`~restorever.pipeline.paste.paste_faces`: where crops overlap each pixel goes to the face it is
        nearer, so no face is covered by its neighbour's crop), each seeded by ``"{item id}#{k}"`` (``k`` in
        :func:`~restorever.detectors.faces_to_paste`'s order), as ``restorever restore --faces all``. ``degrade``
        first degrades the aligned face (a what-if: how would this restorer do on a poor copy?). An input's alpha
        channel is returned in ``alphas``.
        Returns a :class:`Restoration`; ``restorever.images.to_uint8`` turns its tensors into uint8 arrays.

        Example:
            >>> out = pipe.restore("photo.jpg")
            >>> out.images[0].shape, out.faces.shape            # (3, H, W), (1, 3, 512, 512)
            >>> group = pipe.restore("group.jpg", face="all")   # every face of at least 32 px
        """
        import torch

        from ..pipeline.paste import paste_faces

        sources, owner = None, None
        if isinstance(face, str) and face == "all":
            sources, images, face, item_ids, owner = self._every_face(images, item_ids, bgr, min_face_size)
            bgr = False  # the expanded images are the decoded RGB tensors
        faces, lms, mats, inputs_seen = [], [], [], []
        for _, crops, crop_lms, matrices, inputs in self._run(images, degrade=degrade, seed=seed, face=face,
                                                              item_ids=item_ids, bgr=bgr, embed=False,
                                                              always_restore=True):
            faces.append(crops.cpu())
            lms.append(crop_lms.cpu())
            mats.append(matrices.cpu())
            if sources is None:
                inputs_seen.extend(inputs)
        if not faces:
            raise ConfigError("images", "holds no image to restore")
        faces_t, mats_t = torch.cat(faces), torch.cat(mats)
        if sources is None:
            sources, owner = inputs_seen, list(range(len(inputs_seen)))
        index = torch.tensor(owner, dtype=torch.int64)
        photos = None
        if paste_back:
            photos = []
            for k, inp in enumerate(sources):
                pick = torch.nonzero(index == k).flatten()
                photo = inp.tensor[None].to(self.device)
                photos.append(paste_faces(photo, faces_t[pick].to(self.device),
                                          mats_t[pick].to(self.device).float())[0].cpu())
        return Restoration(photos, faces_t, torch.cat(lms), mats_t, index, [inp.alpha for inp in sources])

    def _every_face(self, images: Images, item_ids: Sequence[str] | None, bgr: bool, min_face_size: float):
        """``face="all"``: the inputs, then one image, landmark set and item id per face to restore (in paste
        order), and the input index of each face."""
        from ..detectors import faces_to_paste
        from ..errors import FaceNotFoundError
        from ..pipeline.stages import detect_each

        if isinstance(min_face_size, bool) or not isinstance(min_face_size, (int, float, np.integer, np.floating)) \
                or not min_face_size >= 0:
            raise ConfigError("min_face_size", f"must be a number of pixels >= 0, got {min_face_size!r}")
        items = flatten_images(images)
        if item_ids is not None:
            if isinstance(item_ids, (str, bytes, os.PathLike)) or len(item_ids) != len(items):
                raise ConfigError("item_ids", f"must be a list with one id per image ({len(items)}), got "
                                              f"{item_ids!r}")
        inputs = [self._load(x, k, bgr) for k, x in enumerate(items)]
        tensors, selectors, ids, owner = [], [], [], []
        for k, inp in enumerate(inputs):
            found = sort_largest_first(detect_each(self.detector, [inp.array], self.device, all_faces=True)[0])
            boxes = np.stack([f.box for f in found]) if found else np.zeros((0, 4))
            order, small = faces_to_paste(boxes, float(min_face_size))
            if small:
                logger.warning("%s: %d face(s) smaller than %g px left out (boxes %s); lower min_face_size to "
                               "restore them", inp.source, len(small), min_face_size,
                               [[round(float(v)) for v in boxes[i]] for i in small])
            if not order:
                raise FaceNotFoundError(f"{inp.source}: no face of at least {min_face_size:g} px found "
                                        f"({len(small)} smaller left out; lower min_face_size)")
            base = str(item_ids[k]) if item_ids is not None else inp.content_id
            for j, i in enumerate(order):
                tensors.append(inp.tensor)
                selectors.append(found[i].landmarks)
                ids.append(f"{base}#{j}")
                owner.append(k)
        return inputs, tensors, selectors, ids, owner

    # -------------------------------------------------------------------------------------------------- attributes
    def attributes(self, images: Images, *, face: Any = None, degrade: Any = None, seed: int = 0,
                   bgr: bool = False) -> list[dict[str, dict[str, Any]]]:
        """Gender and age group of one face per image, with confidences (needs ``attributes=`` at construction).

        Returns per image ``{"gender": {"label", "confidence", "probabilities": {class: p}}, "age": {...}}``.

        Example:
            >>> pipe.attributes("photo.jpg")[0]["gender"]["label"]       # "female"
        """
        model = self.attribute_model
        if model is None:
            raise ConfigError("attributes", "model was not given: FacePipeline(..., attributes="
                                            "'insightface-genderage' or a probe .pt from `restorever attributes fit`)")
        chunks = []
        if getattr(model, "kind", "") == "embedding":
            emb = self.embed(images, face=face, degrade=degrade, seed=seed, bgr=bgr).numpy()
            if len(emb):
                chunks.append(model.predict(emb))
        else:
            for _, crops, crop_lms, _, _ in self._run(images, degrade=degrade, seed=seed, face=face, item_ids=None,
                                                      bgr=bgr, embed=False):
                chunks.append(model.predict_images(crops, crop_lms))
        out: list[dict[str, dict[str, Any]]] = []
        schema = model.schema
        for probs in chunks:
            n = len(next(iter(probs.values())))
            for i in range(n):
                entry = {}
                for attribute in schema.attributes:
                    p = np.asarray(probs[attribute][i], dtype=np.float64)
                    names = schema.classes(attribute)
                    best = int(np.argmax(p))
                    entry[attribute] = {"label": names[best], "confidence": float(p[best]),
                                        "probabilities": {c: float(v) for c, v in zip(names, p)}}
                out.append(entry)
        return out

    # ------------------------------------------------------------------------------------------------------ module
    def module(self):
        """This pipeline's restorer and recognizer as a :class:`~restorever.api.modules.RestoreThenEmbed` module."""
        from .modules import RestoreThenEmbed

        return RestoreThenEmbed(self.restorer, self.recognizer)

    # ---------------------------------------------------------------------------------------------------- internals
    def _load_attributes(self, spec: Any):
        if spec is None or not isinstance(spec, (str, os.PathLike)):
            model = spec
        else:
            from ..attributes import load_attribute_model

            model = load_attribute_model(os.fspath(spec))
        if model is not None and getattr(model, "kind", "") == "embedding" and model.recognizer != self.recognizer_name:
            raise ConfigError("attributes", f"model was fitted on {model.recognizer} embeddings, but this pipeline's "
                                            f"recognizer is {self.recognizer_name}")
        return model

    def _chunks(self, images: Images) -> Iterator[tuple[int, list[Any]]]:
        items = flatten_images(images)
        for start in range(0, len(items), self.batch_size):
            yield start, items[start:start + self.batch_size]

    @staticmethod
    def _load(item: Any, index: int, bgr: bool) -> ImageInput:
        return load_image(item, bgr=bgr, source=f"images[{index}]")

    def _landmarks(self, inputs: list[ImageInput], selectors: list[Any]) -> np.ndarray:
        """``[B, 5, 2]`` float32 photo landmarks of the selected face of each image."""
        from ..pipeline.stages import detect_each

        out = []
        for inp, selector in zip(inputs, selectors):
            cache: dict[str, Any] = {}

            def detect(inp=inp, cache=cache) -> list[Face]:
                if "all" not in cache:
                    cache["all"] = sort_largest_first(detect_each(self.detector, [inp.array], self.device,
                                                                  all_faces=True)[0])
                return cache["all"]

            def central(inp=inp):
                return detect_each(self.detector, [inp.array], self.device)[0]

            out.append(select_landmarks(selector, detect, central, source=inp.source))
        return np.stack(out).astype(np.float32)

    def _run(self, images: Images, *, degrade: Any, seed: int, face: Any, item_ids: Sequence[str] | None,
             bgr: bool, embed: bool, always_restore: bool = False):
        """Per chunk: ``(embeddings or None, faces, crop landmarks, matrices, inputs)`` after align, degrade and
        restore -- the order and functions of ``restorever eval``'s ``embed_conditions``."""
        from ..degradation import Degradation
        from ..pipeline.evaluate import item_seed
        from ..pipeline.stages import align_faces, embed_faces, restore_faces

        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ConfigError("seed", f"must be an integer, got {seed!r}")
        preset, scale = _degrade_spec(degrade, self.degradation)
        degradation = Degradation(preset) if degrade is not None else None
        n = len(flatten_images(images))
        if item_ids is not None:
            if isinstance(item_ids, (str, bytes, os.PathLike)):
                raise ConfigError("item_ids", f"must be a list with one id per image, not one string: got "
                                              f"{item_ids!r} (write [{str(item_ids)!r}])")
            item_ids = [str(i) for i in item_ids]
            if len(item_ids) != n:
                raise ConfigError("item_ids", f"has {len(item_ids)} entries for {n} image(s)")
        selectors = per_image_selectors(face, n)
        for start, items in self._chunks(images):
            inputs = [self._load(x, start + k, bgr) for k, x in enumerate(items)]
            ids = item_ids[start:start + len(items)] if item_ids is not None else [i.content_id for i in inputs]
            landmarks = self._landmarks(inputs, selectors[start:start + len(items)])
            faces, crop_lms, mats = align_faces([i.tensor for i in inputs], landmarks, self.device,
                                                return_matrices=True, fit=self.alignment_fit)
            if degradation is not None:
                faces = degradation.apply(faces, degradation.sample_params(ids, scale, int(seed)))
            if degradation is not None or always_restore or self.restorer_name != "none":
                seeds = [item_seed(int(seed), i, scale, "restore") for i in ids]
                faces = restore_faces(self.restorer, faces, seeds)
            emb = embed_faces(self.recognizer, faces, crop_lms) if embed else None
            yield emb, faces, crop_lms, mats, inputs


def _device(device: Any, resolve: Any):
    """``resolve(device)`` with an error that names the argument rather than a command-line flag."""
    import torch

    from ..errors import RestoreverError

    try:
        return resolve(device)
    except (RestoreverError, RuntimeError, ValueError) as exc:
        raise ConfigError("device", f"{device!r} is not usable on this machine (CUDA available: "
                                    f"{torch.cuda.is_available()}); use 'auto' or 'cpu'") from exc


def _check_threshold_scale(threshold: float, similarity: str) -> None:
    """Refuse a threshold no score can exceed or fall below: a distance given for minus a distance (dlib's 0.6 for
    -0.6), or a cosine threshold outside [-1, 1]: every pair would get the same answer."""
    if similarity == "euclidean" and threshold >= 0:
        raise ConfigError("threshold", f"is {threshold:g}, but the scores are minus a Euclidean distance (<= 0), so "
                                       f"no pair would pass: give -{threshold:g} for a distance of {threshold:g}")
    if similarity == "cosine" and not -1.0 <= threshold < 1.0:
        raise ConfigError("threshold", f"is {threshold:g}, but cosine scores lie in [-1, 1]: every pair would get "
                                       f"the same answer")


def _degrade_spec(degrade: Any, default_preset: str) -> tuple[str, int | None]:
    """``degrade=`` -> ``(preset, scale)``; ``scale`` ``None`` draws it from the preset (or means clean)."""
    from ..degradation import get_preset

    if degrade is None:
        return default_preset, None
    if isinstance(degrade, bool):
        raise ConfigError("degrade", f"must be a scale, a preset name or (preset, scale), got {degrade!r}")
    if isinstance(degrade, (int, np.integer)):
        preset, scale = default_preset, int(degrade)
    elif isinstance(degrade, str):
        preset, scale = degrade, None
    elif isinstance(degrade, (tuple, list)) and len(degrade) == 2 and isinstance(degrade[0], str) \
            and isinstance(degrade[1], (int, np.integer)) and not isinstance(degrade[1], bool):
        preset, scale = degrade[0], int(degrade[1])
    else:
        raise ConfigError("degrade", f"must be a scale (e.g. 16), a preset name or (preset, scale), got {degrade!r}")
    if scale is not None and scale < 1:
        raise ConfigError("degrade", f"scale must be a positive integer, got {scale}")
    get_preset(preset)
    return preset, scale


def _ndim(x: Any) -> int:
    return int(getattr(x, "ndim", np.ndim(x)))


def _as_matrix(e: Any, name: str) -> np.ndarray:
    from ..metrics.arrays import as_numpy

    arr = as_numpy(e)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    elif arr.dtype.itemsize < 4:  # float16 sums lose digits; float32 and float64 keep their dtype (eval's scores)
        arr = arr.astype(np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ConfigError(name, f"must be one embedding [D] or a batch [N, D], got shape {list(arr.shape)}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise ConfigError(name, f"holds NaN or infinite values (row(s) {np.flatnonzero(bad)[:5].tolist()}): no score "
                                f"means anything for them; check the recognizer's output (e.g. float16 overflow)")
    return arr
