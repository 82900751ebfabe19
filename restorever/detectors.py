"""Five-point face landmark detectors: MTCNN (facenet-pytorch 2.5.3) and SCRFD (insightface ``det_10g.onnx``).

``create_detector(name, device)`` returns an object whose ``detect(images)`` takes a list of ``HxWx3`` uint8
**RGB** arrays and returns, per image, a :class:`Detection` or ``None`` when no face was found. When an image
holds several faces the one whose box centre is nearest the image centre is kept (the LFW convention: the
labelled person is the centred one). ``detect_faces(images)`` returns every face of each image instead.

Landmarks are ``(x, y)`` image pixels (pixel centres at integers) in the order image-left eye, image-right
eye, nose tip, image-left mouth corner, image-right mouth corner -- the order of ``restorever.alignment``'s
templates.

* ``mtcnn``: facenet-pytorch's MTCNN (P/R/O-nets ship inside the wheel, nothing is downloaded), run batched on
  the requested device for images that share a size. Thresholds and pyramid factor are facenet-pytorch's
  defaults. Detection goes through :func:`restorever.mtcnn.detect_batch`, which cuts and resizes all candidate
  boxes of a stage at once instead of one by one and gives facenet-pytorch's numbers bit for bit.
* ``mtcnn-batched``: the same MTCNN, handed whole batches by the pipeline (one network call for up to
  ``batch_size`` same-size images instead of one per image: on an H200 batched MTCNN ran 251 images/s where the
  pipeline's one-image calls, launch-bound, ran 27). Batched convolutions round differently in the last bits, so an
  image's landmarks then depend slightly on its batch (3e-5 px at most on 64 LFW photos and 10 ``data/faces``
  photos on a CPU, once NMS runs per image: see :func:`per_image_nms`); the name is part of every landmark cache
  key and of the run's identity, so the two modes never share entries.
* ``scrfd``: insightface's SCRFD-10GF with keypoints (``det_10g.onnx`` from the ``buffalo_l`` pack) through
  onnxruntime. The file is looked up at ``model_path``, ``$RESTOREVER_SCRFD``, ``det_10g.onnx`` in the
  restorever cache directory (``$RESTOREVER_HOME``, see :func:`restorever.hub.get_cache_dir`) and
  ``~/.insightface/models/buffalo_l/det_10g.onnx``. Pre- and post-processing follow insightface's
  ``SCRFD.detect``: aspect-preserving resize into a 640x640 canvas (top-left), ``(x - 127.5) / 128`` on RGB,
  strides 8/16/32 with 2 anchors per location, distances times the stride from the anchor point, score >= 0.5,
  NMS at IoU 0.4 (areas with the ``+1`` convention).
* ``auto``: SCRFD when its file is found, MTCNN otherwise.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import (DetectorError, ImageError, MissingDependencyError, RestoreverError, WeightsNotFoundError,
                     unknown_name)

__all__ = [
    "Detection",
    "DetectorWeightsNotFoundError",
    "BatchedMTCNNDetector",
    "MTCNNDetector",
    "MissingDependencyError",
    "SCRFDDetector",
    "create_detector",
    "detector_file_sha256",
    "resolve_detector",
    "decode_scrfd",
    "list_detectors",
    "nearest_to_center",
    "nms",
    "scrfd_candidate_paths",
]

logger = logging.getLogger(__name__)


class DetectorWeightsNotFoundError(WeightsNotFoundError):
    """A detector's model file is not on disk."""


@dataclass(frozen=True, eq=False)
class Detection:
    """One face.

    Attributes:
        landmarks: ``np.ndarray[5, 2]`` float32, ``(x, y)`` image pixels, eyes / nose / mouth corners.
        box: ``np.ndarray[4]`` float32 ``(x1, y1, x2, y2)`` image pixels.
        score: detector confidence in [0, 1].
    """

    landmarks: np.ndarray
    box: np.ndarray
    score: float


def nearest_to_center(boxes: np.ndarray, height: int, width: int) -> int:
    """Index of the ``[N, 4]`` ``(x1, y1, x2, y2)`` box whose centre is nearest the image centre."""
    centers = (boxes[:, :2] + boxes[:, 2:4]) / 2.0
    d2 = ((centers - np.array([width / 2.0, height / 2.0])) ** 2).sum(axis=1)
    return int(np.argmin(d2))


#: ``--faces all`` / ``face="all"``: faces whose box is narrower or shorter than this many photo pixels are left out
MIN_FACE_SIZE = 32


def faces_to_paste(boxes: np.ndarray, min_size: float = MIN_FACE_SIZE) -> tuple[list[int], list[int]]:
    """Which of an image's ``[N, 4]`` ``(x1, y1, x2, y2)`` boxes to restore, in paste order, and which are too small.

    A face is kept when both box sides are at least ``min_size`` photo pixels. The kept faces are ordered by box
    area, smallest first, equal areas by ``(y1, x1)``: an order that depends only on the boxes, never on the
    detector's list order (it numbers the faces' seeds ``#k`` and the sum of the shared paste,
    :func:`restorever.pipeline.paste.paste_faces`). Returns
    ``(kept indices in paste order, left-out indices in detector order)``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    kept = [i for i in range(len(boxes)) if sides[i] >= min_size]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept.sort(key=lambda i: (float(area[i]), float(boxes[i, 1]), float(boxes[i, 0]), i))
    return kept, [i for i in range(len(boxes)) if sides[i] < min_size]


def _check_images(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate a list of RGB uint8 images; grey (HxW) is expanded to 3 channels and alpha is dropped."""
    if isinstance(images, np.ndarray):
        raise TypeError("detect() takes a list of HxWx3 uint8 RGB arrays, not one array.")
    out = []
    for i, img in enumerate(images):
        a = np.asarray(img)
        if a.dtype != np.uint8:
            raise TypeError(f"image {i}: expected uint8 RGB, got {a.dtype}.")
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 1:
            raise ImageError(f"image {i}: expected an HxWx3 array, got shape {a.shape}.")
        out.append(np.ascontiguousarray(a[:, :, :3]))
    return out


def _select(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, height: int, width: int) -> Detection | None:
    if boxes is None or len(boxes) == 0:
        return None
    i = nearest_to_center(boxes, height, width)
    return Detection(points[i].astype(np.float32), boxes[i, :4].astype(np.float32), float(scores[i]))


# ------------------------------------------------------------------------------------------------------- MTCNN
class MTCNNDetector:
    """facenet-pytorch MTCNN, batched over images of the same size.

    Args:
        device: torch device for the three networks ("cpu", "cuda", "cuda:1", ...).
        min_face_size: smallest face searched for, in pixels.
        thresholds: P/R/O-net score thresholds.
        factor: image-pyramid scale step.
        batch_size: most images per network call.
    """

    name = "mtcnn"
    #: the pipeline hands this detector one image per call (landmarks independent of batch composition)
    batched = False

    def __init__(self, device: str = "cpu", *, min_face_size: int = 20,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), factor: float = 0.709, batch_size: int = 32) -> None:
        try:
            import torch
            from facenet_pytorch import MTCNN
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingDependencyError(
                f"The mtcnn detector needs facenet-pytorch ({exc}). Install it with: pip install facenet-pytorch==2.5.3"
            ) from exc
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self._mtcnn = MTCNN(min_face_size=min_face_size, thresholds=list(thresholds), factor=factor,
                            keep_all=True, select_largest=False, device=self.device).eval()

    def __repr__(self) -> str:
        return f"MTCNNDetector(device={str(self.device)!r})"

    def _found(self, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every face of each image of ``batch`` ``[N, H, W, 3]``: ``(boxes [F, 5], landmarks [F, 5, 2])``."""
        from .mtcnn import detect_batch

        m = self._mtcnn
        return detect_batch(batch, m.pnet, m.rnet, m.onet, min_face_size=m.min_face_size, thresholds=m.thresholds,
                            factor=m.factor)

    def _detect_batch(self, batch: np.ndarray) -> list[Detection | None]:
        h, w = batch.shape[1:3]
        return [_select(boxes[:, :4].astype(np.float64), boxes[:, 4].astype(np.float64), points.astype(np.float64),
                        h, w) for boxes, points in self._found(batch)]

    def detect(self, images: Sequence[np.ndarray]) -> list[Detection | None]:
        """Landmarks of the most central face per ``HxWx3`` uint8 RGB image (``None`` where none is found)."""
        imgs = _check_images(images)
        results: list[Detection | None] = [None] * len(imgs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(imgs):
            groups.setdefault(im.shape, []).append(i)
        for idx in groups.values():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                try:
                    found = self._detect_batch(np.stack([imgs[i] for i in chunk]))
                except (RuntimeError, MemoryError, ValueError, IndexError) as exc:
                    if len(chunk) > 1:  # isolate the image that breaks the batch
                        found = [self.detect([imgs[i]])[0] for i in chunk]
                    elif isinstance(exc, (RuntimeError, MemoryError)):
                        # allocation failure, CUDA out of memory, an unusable device: the detector did not run, so
                        # this is an error, never "no face found" (which callers cache for good)
                        if "out of memory" in str(exc).lower():
                            raise
                        raise DetectorError(f"mtcnn failed on the image ({type(exc).__name__}: "
                                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                                            f"this is not a 'no face found' and nothing was cached for it") from exc
                    else:  # facenet-pytorch's own empty-result paths on some images: it ran and found nothing
                        logger.warning("MTCNN failed on image %d (%s); reporting it as no face found.", chunk[0], exc)
                        found = [None]
                for i, det in zip(chunk, found):
                    results[i] = det
        return results


    def detect_faces(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Every face found in each ``HxWx3`` uint8 RGB image, in the detector's order (one image per network call,
        so the numbers equal :meth:`detect`'s run on a single image)."""
        out: list[list[Detection]] = []
        for i, img in enumerate(_check_images(images)):
            try:
                boxes, points = self._found(img[None])[0]
            except (RuntimeError, ValueError, IndexError) as exc:
                logger.warning("MTCNN failed on image %d (%s); reporting it as no face found.", i, exc)
                out.append([])
                continue
            out.append(_all_faces(boxes[:, :4], boxes[:, 4], points))
        return out


def _all_faces(boxes, scores, points) -> list[Detection]:
    """Detections of every row of ``boxes [N, 4+]``, ``scores [N]``, ``points [N, 5, 2]`` (``None``: no face)."""
    if boxes is None or len(boxes) == 0:
        return []
    boxes, scores, points = (np.asarray(a, np.float64) for a in (boxes, scores, points))
    return [Detection(points[i].astype(np.float32), boxes[i, :4].astype(np.float32), float(scores[i]))
            for i in range(len(boxes))]


class BatchedMTCNNDetector(MTCNNDetector):
    """:class:`MTCNNDetector` that the pipeline calls with whole batches (``mtcnn-batched``; see the module notes)."""

    name = "mtcnn-batched"
    batched = True

    def __repr__(self) -> str:
        return f"BatchedMTCNNDetector(device={str(self.device)!r}, batch_size={self.batch_size})"


# ------------------------------------------------------------------------------------------------------- SCRFD
def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS (insightface's rule: areas ``(x2 - x1 + 1) * (y2 - y1 + 1)``, drop IoU > ``threshold``).

    Returns kept indices, best score first.
    """
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= threshold]
    return keep


def decode_scrfd(outputs: Sequence[np.ndarray], input_hw: tuple[int, int], *, strides: Sequence[int] = (8, 16, 32),
                 num_anchors: int = 2, score_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode SCRFD's raw outputs into boxes and keypoints in network-input pixels.

    Args:
        outputs: ``3 * len(strides)`` arrays in the exported order: scores per stride ``[N_s, 1]``, box
            distances ``[N_s, 4]``, keypoint offsets ``[N_s, 10]`` (a leading batch axis of 1 is allowed), where
            ``N_s = (H // s) * (W // s) * num_anchors`` in row-major location order, anchors innermost.
        input_hw: the network input ``(H, W)``.

    Returns:
        ``(scores [N], boxes [N, 4], keypoints [N, 5, 2])`` for the anchors scoring ``>= score_threshold``;
        anchor point ``(x, y) = (col, row) * stride``; box ``(x - d0, y - d1, x + d2, y + d3)`` and keypoint
        ``k`` = ``(x + o_2k, y + o_2k+1)``, with all distances multiplied by the stride.
    """
    n = len(strides)
    if len(outputs) != 3 * n:
        raise ValueError(f"SCRFD with keypoints has {3 * n} outputs, got {len(outputs)}.")
    height, width = input_hw
    all_scores, all_boxes, all_kps = [], [], []
    for i, stride in enumerate(strides):
        outs = [np.asarray(outputs[i + j * n], dtype=np.float32) for j in range(3)]
        outs = [o[0] if o.ndim == 3 else o for o in outs]
        scores, dist, offs = outs[0].reshape(-1), outs[1].reshape(-1, 4) * stride, outs[2].reshape(-1, 10) * stride
        gh, gw = height // stride, width // stride
        ys, xs = np.mgrid[:gh, :gw]
        centers = (np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride).astype(np.float32)
        centers = np.repeat(centers, num_anchors, axis=0)
        if not (len(scores) == len(dist) == len(offs) == len(centers)):
            raise ValueError(f"SCRFD output sizes at stride {stride} do not match a {height}x{width} input: "
                             f"{len(scores)}, {len(dist)}, {len(offs)} vs {len(centers)} anchors.")
        pos = np.nonzero(scores >= score_threshold)[0]
        c = centers[pos]
        all_scores.append(scores[pos])
        all_boxes.append(np.concatenate([c - dist[pos, :2], c + dist[pos, 2:]], axis=1))
        all_kps.append(c[:, None, :] + offs[pos].reshape(-1, 5, 2))
    return np.concatenate(all_scores), np.concatenate(all_boxes), np.concatenate(all_kps)


def scrfd_candidate_paths(model_path: str | os.PathLike | None = None) -> list[Path]:
    """Where :class:`SCRFDDetector` looks for ``det_10g.onnx``, in order."""
    from .hub import get_cache_dir

    if model_path is not None:
        return [Path(model_path).expanduser()]
    paths = []
    if os.environ.get("RESTOREVER_SCRFD"):
        paths.append(Path(os.environ["RESTOREVER_SCRFD"]).expanduser())
    paths.append(get_cache_dir() / "det_10g.onnx")
    paths.append(Path("~/.insightface/models/buffalo_l/det_10g.onnx").expanduser())
    return paths


class SCRFDDetector:
    """insightface SCRFD (``det_10g.onnx``) through onnxruntime, one image per network call.

    Args:
        model_path: the ONNX file; ``None`` searches :func:`scrfd_candidate_paths`.
        device: "cpu" or "cuda[:N]" (CUDA needs onnxruntime-gpu; otherwise the CPU provider is used).
        input_size: network canvas ``(w, h)``.
        score_threshold, nms_threshold: insightface's defaults 0.5 and 0.4.
    """

    name = "scrfd"

    def __init__(self, model_path: str | os.PathLike | None = None, device: str = "cpu", *,
                 input_size: tuple[int, int] = (640, 640), score_threshold: float = 0.5,
                 nms_threshold: float = 0.4) -> None:
        candidates = scrfd_candidate_paths(model_path)
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DetectorWeightsNotFoundError(
                "SCRFD model det_10g.onnx not found (looked at: " + ", ".join(str(p) for p in candidates) + "). "
                "It ships in insightface's buffalo_l pack (non-commercial licence); put det_10g.onnx at one of "
                "these paths, or name the file with RESTOREVER_SCRFD=/path/to/det_10g.onnx (in Python also model_path=...), "
                "or use --detector mtcnn."
            )
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingDependencyError(
                f"The scrfd detector needs onnxruntime ({exc}). Install it with: pip install onnxruntime"
            ) from exc
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            index = str(device).partition(":")[2] or "0"
            providers = [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
        self.model_path = found
        self.device = str(device)
        self.session = ort.InferenceSession(str(found), providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        if len(self.output_names) != 9:
            raise ValueError(f"{found} has {len(self.output_names)} outputs; the SCRFD decoder here expects the "
                             "9-output keypoint models (strides 8/16/32, 2 anchors) such as det_10g.onnx.")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)

    def __repr__(self) -> str:
        return f"SCRFDDetector(model_path={str(self.model_path)!r}, device={self.device!r})"

    def _prepare(self, img: np.ndarray) -> tuple[np.ndarray, float]:
        import cv2

        h, w = img.shape[:2]
        cw, ch = self.input_size
        if h / w > ch / cw:
            new_h, new_w = ch, int(ch / (h / w))
        else:
            new_w, new_h = cw, int(cw * (h / w))
        canvas = np.zeros((ch, cw, 3), dtype=np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(img, (new_w, new_h))
        blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(blob), new_h / h

    def detect_all(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All faces of one RGB uint8 image after NMS: ``(scores [N], boxes [N, 4], keypoints [N, 5, 2])``."""
        blob, det_scale = self._prepare(image)
        outputs = self.session.run(self.output_names, {self.input_name: blob})
        scores, boxes, kps = decode_scrfd(outputs, (blob.shape[2], blob.shape[3]), score_threshold=self.score_threshold)
        boxes, kps = boxes / det_scale, kps / det_scale
        keep = nms(boxes, scores, self.nms_threshold) if len(scores) else []
        return scores[keep], boxes[keep], kps[keep]

    def detect(self, images: Sequence[np.ndarray]) -> list[Detection | None]:
        """Landmarks of the most central face per ``HxWx3`` uint8 RGB image (``None`` where none is found)."""
        out = []
        for img in _check_images(images):
            try:
                scores, boxes, kps = self.detect_all(img)
            except RestoreverError:
                raise
            except Exception as exc:  # onnxruntime failures (allocation, provider errors): an error, not "no face"
                if "out of memory" in str(exc).lower():
                    raise
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise DetectorError(f"scrfd failed on the image ({type(exc).__name__}: {first}); this is not a "
                                    f"'no face found' and nothing was cached for it") from exc
            out.append(_select(boxes, scores, kps, img.shape[0], img.shape[1]))
        return out

    def detect_faces(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Every face found in each ``HxWx3`` uint8 RGB image (after NMS, highest score first)."""
        out = []
        for img in _check_images(images):
            scores, boxes, kps = self.detect_all(img)
            out.append(_all_faces(boxes, scores, kps))
        return out


#: sha256 of model files already hashed in this process, by (resolved path, inode, size in bytes, mtime and ctime
#: in ns): a file moved over the old one keeps its own mtime (``mv``, ``cp -p``, archives), but gets another inode
#: or ctime
_FILE_SHA256: dict[tuple[str, int, int, int, int], str] = {}


def detector_file_sha256(name: str, model_path: str | os.PathLike | None = None) -> str | None:
    """Hex sha256 of the model file detector ``name`` loads, a part of its landmark cache keys: the SCRFD ONNX file
    :class:`SCRFDDetector` would open (first of :func:`scrfd_candidate_paths`), or None when there is none. MTCNN
    gives None: its weights ship inside the pinned facenet-pytorch package, so its name fixes them. A file is hashed
    once per process and version (path, inode, size, mtime, ctime)."""
    if resolve_detector(name, model_path) != "scrfd":
        return None
    found = next((p for p in scrfd_candidate_paths(model_path) if p.is_file()), None)
    if found is None:
        return None
    stat = found.stat()
    version = (str(found.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if version not in _FILE_SHA256:
        from .hub import sha256_file

        _FILE_SHA256[version] = sha256_file(found)
    return _FILE_SHA256[version]


# ---------------------------------------------------------------------------------------------------- factory
#: where each detector's method was published (a report's References); keys as runs record them (resolved names)
DETECTOR_PAPERS = {
    "mtcnn": "https://arxiv.org/abs/1604.02878",  # Zhang et al., MTCNN, IEEE SPL 2016
    "mtcnn-batched": "https://arxiv.org/abs/1604.02878",
    "scrfd": "https://arxiv.org/abs/2105.04714",  # Guo et al., SCRFD, ICLR 2022
}


def list_detectors() -> list[str]:
    """Names accepted by :func:`create_detector`."""
    return ["auto", "mtcnn", "mtcnn-batched", "scrfd"]


def resolve_detector(name: str, model_path: str | os.PathLike | None = None) -> str:
    """The detector ``name`` stands for: ``"auto"`` is ``"scrfd"`` when an SCRFD model file is found
    (:func:`scrfd_candidate_paths`), else ``"mtcnn"``; any other name is itself. Runs record and key their landmarks
    with this name, so cached landmarks never come from the other detector."""
    if name != "auto":
        return name
    return "scrfd" if any(p.is_file() for p in scrfd_candidate_paths(model_path)) else "mtcnn"


def create_detector(name: str = "mtcnn", device: str = "cpu", **kwargs):
    """Build a landmark detector by name (``"mtcnn"``, ``"mtcnn-batched"``, ``"scrfd"`` or ``"auto"``) on ``device``.

    ``kwargs`` go to :class:`MTCNNDetector` or :class:`SCRFDDetector` (e.g. ``model_path=`` for SCRFD).
    """
    if name == "mtcnn":
        return MTCNNDetector(device, **kwargs)
    if name == "mtcnn-batched":
        return BatchedMTCNNDetector(device, **kwargs)
    if name == "scrfd":
        return SCRFDDetector(device=device, **kwargs)
    if name == "auto":
        path = kwargs.pop("model_path", None)
        if resolve_detector(name, path) == "scrfd":
            return SCRFDDetector(path, device=device, **kwargs)
        logger.info("SCRFD det_10g.onnx not found; using MTCNN.")
        return MTCNNDetector(device, **kwargs)
    raise unknown_name("detector", name, list_detectors())
