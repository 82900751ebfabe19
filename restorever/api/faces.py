"""Detected faces and the rule that picks one face per image (``face=`` of :class:`restorever.FacePipeline`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError, FaceNotFoundError

__all__ = ["Face", "FaceSelector", "per_image_selectors", "select_landmarks", "sort_largest_first"]

#: what ``face=`` accepts for one image (see :func:`select_landmarks`)
FaceSelector = Any


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face (read-only arrays).

    Attributes:
        box: ``[4]`` float32 ``(x1, y1, x2, y2)`` image pixels.
        landmarks: ``[5, 2]`` float32 ``(x, y)`` image pixels: image-left eye, image-right eye, nose tip,
            image-left mouth corner, image-right mouth corner (insightface's ``kps`` order).
        score: detector confidence in [0, 1].
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    def __post_init__(self) -> None:
        box = np.array(self.box, dtype=np.float32).reshape(4)
        landmarks = np.array(self.landmarks, dtype=np.float32).reshape(5, 2)
        box.setflags(write=False)
        landmarks.setflags(write=False)
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "landmarks", landmarks)
        object.__setattr__(self, "score", float(self.score))

    @property
    def kps(self) -> np.ndarray:
        """insightface's name for :attr:`landmarks`."""
        return self.landmarks

    @property
    def bbox(self) -> np.ndarray:
        """insightface's name for :attr:`box`."""
        return self.box

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    def __repr__(self) -> str:
        x1, y1, x2, y2 = (round(float(v), 1) for v in self.box)
        return f"Face(box=({x1}, {y1}, {x2}, {y2}), score={self.score:.3f})"


def sort_largest_first(detections: Sequence[Any]) -> list[Face]:
    """Detector results (objects with ``box``, ``landmarks``, ``score``) -> :class:`Face` list, largest box first
    (a stable sort: equal areas keep the detector's order)."""
    faces = [Face(d.box, d.landmarks, d.score) for d in detections]
    return sorted(faces, key=lambda f: -f.area)


def per_image_selectors(face: Any, n: int) -> list[Any]:
    """Expand ``face=`` into one selector per image: a ``list`` gives one per image, an ``[N, 5, 2]`` array gives one
    landmark set per image, anything else applies to every image."""
    if isinstance(face, list):
        if len(face) != n:
            raise ConfigError("face", f"as a list gives one selector per image: got {len(face)} for {n} image(s) "
                                      f"(pass one face's landmarks as an array [5, 2], a box as a tuple)")
        return face
    if _is_array(face) and np.asarray(face).ndim == 3:
        arr = np.asarray(face)
        if arr.shape != (n, 5, 2):
            raise ConfigError("face", f"landmark array must be [5, 2] or [{n}, 5, 2], got {list(arr.shape)}")
        return list(arr)
    return [face] * n


def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) or type(x).__module__.startswith("torch")


def _kps_of(obj: Any) -> np.ndarray | None:
    """Landmarks carried by a face object: ours, insightface's ``Face`` (a dict with attribute access) or a dict."""
    if isinstance(obj, Face):
        return obj.landmarks
    kps = obj.get("kps") if isinstance(obj, dict) else getattr(obj, "kps", None)
    return None if kps is None else np.asarray(kps, dtype=np.float32)


def select_landmarks(selector: FaceSelector, detect: Callable[[], list[Face]], central: Callable[[], Any],
                     *, source: str) -> np.ndarray:
    """Five landmarks ``[5, 2]`` float32 of the face ``selector`` picks in one image.

    ``selector``: ``None`` or ``"largest"`` (the largest detected face), ``"center"`` (the face nearest the image
    centre: ``restorever eval``'s rule), an ``int`` (index into the largest-first list), a box ``(x1, y1, x2, y2)``
    (the detected face overlapping it most), a :class:`Face` / insightface ``Face`` / dict with ``kps`` (its
    landmarks, no detection), or a ``[5, 2]`` landmark array (used as given). ``detect()`` returns the image's faces
    largest first; ``central()`` the detector's central detection or ``None``.
    """
    if selector is None or (isinstance(selector, str) and selector == "largest"):
        faces = detect()
        if not faces:
            raise FaceNotFoundError(f"{source}: no face found (pass face= five [5, 2] landmarks to skip detection)")
        return faces[0].landmarks
    if isinstance(selector, str):
        if selector == "all":
            raise ConfigError("face", "'all' applies only to FacePipeline.restore (embed, similarity and attributes "
                                      "take one face per image); pass an index, a box or a Face from detect()")
        if selector != "center":
            raise ConfigError("face", f"must be 'largest', 'center', an index, a box, a Face or landmarks; got "
                                      f"{selector!r}")
        found = central()
        if found is None:
            raise FaceNotFoundError(f"{source}: no face found")
        return np.asarray(found.landmarks, dtype=np.float32).reshape(5, 2)
    if isinstance(selector, (bool, np.bool_)):
        raise ConfigError("face", f"must be an index, a box, a Face or landmarks, got {selector!r}")
    if isinstance(selector, (int, np.integer)):
        faces = detect()
        if not -len(faces) <= int(selector) < len(faces):
            raise FaceNotFoundError(f"{source}: face={int(selector)} but {len(faces)} face(s) were found")
        return faces[int(selector)].landmarks
    kps = None if _is_array(selector) or isinstance(selector, tuple) else _kps_of(selector)
    if kps is not None:
        return _checked_points(kps, source)
    arr = np.asarray(selector.cpu() if type(selector).__module__.startswith("torch") else selector, dtype=np.float64)
    if arr.shape == (5, 2):
        return _checked_points(arr, source)
    if arr.shape == (4,):
        return _by_box(arr, detect(), source)
    raise ConfigError("face", f"must be 'largest', 'center', an index, a box (x1, y1, x2, y2), a Face or [5, 2] "
                              f"landmarks; got {type(selector).__name__} of shape {list(arr.shape)}")


def _checked_points(points: Any, source: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float32)
    if arr.shape != (5, 2) or not np.isfinite(arr).all():
        raise ConfigError("face", f"landmarks for {source} must be five finite (x, y) points, got shape "
                                  f"{list(arr.shape)}")
    if float(np.square(arr - arr.mean(axis=0)).sum()) <= 1e-6:
        raise ConfigError("face", f"landmarks for {source} coincide (five copies of one point): give the eyes, nose "
                                  f"and mouth corners in pixels")
    return arr


def _by_box(box: np.ndarray, faces: list[Face], source: str) -> np.ndarray:
    if not faces:
        raise FaceNotFoundError(f"{source}: no face found to match the box {box.tolist()}")
    ious = [_iou(box, f.box.astype(np.float64)) for f in faces]
    best = int(np.argmax(ious))
    if ious[best] <= 0.0:
        raise FaceNotFoundError(f"{source}: no detected face overlaps the box {box.tolist()} (faces: "
                                f"{[f.box.round(1).tolist() for f in faces]})")
    return faces[best].landmarks


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
