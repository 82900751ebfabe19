"""Five-point face alignment: named templates, Umeyama similarity, batched warping.

Conventions (all functions):

* Images are float tensors ``[B, C, H, W]`` in [0, 1], RGB, on any device; the result keeps the input's
  device and dtype.
* Landmarks are five ``(x, y)`` points in *pixel* coordinates where pixel ``i`` has its centre at ``i``
  (the OpenCV convention), ordered image-left eye, image-right eye, nose tip, image-left mouth corner,
  image-right mouth corner (the order of MTCNN, SCRFD, ``arcface_dst`` and the FFHQ template).
* An affine matrix ``[B, 2, 3]`` maps *source* pixels to *destination* pixels, exactly as the matrix given to
  ``cv2.warpAffine`` (without ``WARP_INVERSE_MAP``).

Templates (``get_template(name)``):

``ffhq_512``
    facexlib's ``FaceRestoreHelper`` template (GFPGAN, VQFR, CodeFormer and DifFace use it), 512x512.
    The area outside the source image is filled with facexlib's grey ``borderValue=(135, 133, 132)``. facexlib
    passes that value to ``cv2.warpAffine`` on a **BGR** image, so in our RGB tensors it is
    ``(132, 133, 135) / 255``.
``arcface_112``
    insightface's ``arcface_dst`` (``norm_crop``), 112x112, black border. (The recognizers crop it from the
    ``ffhq_512`` crop, so where a face's window leaves the photo it holds that crop's grey fill, not black;
    docs/architecture.md.)
``facenet_160``
    A similarity template standing in for facenet-pytorch's usual crop (``MTCNN(image_size=160, margin=14)``
    as in its LFW notebook: the MTCNN box widened by ``margin * box / (160 - margin)``, then resized to
    160x160, which is not a similarity). It was derived by running facenet-pytorch 2.5.3 MTCNN on 401 real
    faces (the 60 photos of ``shared/data/faces`` and 400 LFW ``*_0001`` images; faces whose margin box
    touched the image border were dropped), mapping the five landmarks into the 160x160 crop with pixel-centre
    scaling, averaging, and mirroring about x = 79.5 to make it left-right symmetric. Per-face scatter around
    it is about 4 px vertically and 11 px horizontally (MTCNN boxes do not follow yaw), so it reproduces the
    *average* facenet crop, not each one. Black border. ``tests/test_alignment.py`` re-derives it.
``dlib_150``
    The same procedure against dlib's ``get_face_chip(img, shape, size=150, padding=0.25)`` (the chip that
    ``compute_face_descriptor`` uses), with dlib's HOG detector and ``shape_predictor_5_face_landmarks``:
    452 faces, MTCNN landmarks mapped into the chip through dlib's own chip transform, averaged and mirrored
    about x = 74.5. Per-face scatter about 5 px. Black border.

Warping uses ``affine_grid``/``grid_sample`` (bilinear, ``align_corners=False``), which reproduces
``cv2.warpAffine(..., INTER_LINEAR, BORDER_CONSTANT)``; OpenCV quantises source positions to 1/32 px, so the
two differ by a fraction of a grey level (tested: mean abs difference below one grey level).
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .errors import RestoreverError, unknown_name
from .protocol_specs import ALIGNMENT_FITS

__all__ = [
    "FITS",
    "AlignmentError",
    "Template",
    "align_to_template",
    "crop_to_template",
    "estimate_similarity",
    "get_template",
    "list_templates",
    "transform_points",
    "warp_affine",
]

logger = logging.getLogger(__name__)

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence]


class AlignmentError(RestoreverError, ValueError):
    """Landmarks cannot define a similarity transform (coincident points, NaN, wrong shape)."""


@dataclass(frozen=True, eq=False)
class Template:
    """A five-point alignment template.

    Attributes:
        name: registry name, e.g. ``"ffhq_512"``.
        size: output size ``(w, h)`` in pixels.
        points: ``np.ndarray[5, 2]`` float64, ``(x, y)`` pixel positions of the five landmarks in the crop.
        border_value: RGB fill in [0, 1] for pixels that fall outside the source image.
        description: where the numbers come from.
    """

    name: str
    size: tuple[int, int]
    points: np.ndarray
    border_value: tuple[float, float, float] = (0.0, 0.0, 0.0)
    description: str = ""


def _template(name: str, size: tuple[int, int], points: list[list[float]], border=(0.0, 0.0, 0.0), description=""):
    pts = np.asarray(points, dtype=np.float64)
    pts.setflags(write=False)
    return Template(name, size, pts, tuple(float(v) for v in border), description)


_TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        _template(
            "ffhq_512",
            (512, 512),
            [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
             [201.26117, 371.41043], [313.08905, 371.15118]],
            border=(132 / 255.0, 133 / 255.0, 135 / 255.0),
            description="facexlib FaceRestoreHelper FFHQ template; grey border (135,133,132) BGR = (132,133,135) RGB",
        ),
        _template(
            "arcface_112",
            (112, 112),
            [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
            description="insightface arcface_dst (norm_crop), black border",
        ),
        _template(
            "facenet_160",
            (160, 160),
            [[46.42, 63.70], [112.58, 63.70], [79.50, 92.44], [50.19, 117.84], [108.81, 117.84]],
            description="mean MTCNN landmarks in facenet-pytorch's margin-14 160x160 crop (401 faces), symmetrised",
        ),
        _template(
            "dlib_150",
            (150, 150),
            [[46.83, 44.84], [102.17, 44.84], [74.50, 77.13], [49.93, 104.81], [99.07, 104.81]],
            description="mean MTCNN landmarks in dlib get_face_chip(size=150, padding=0.25) (452 faces), symmetrised",
        ),
    )
}


def list_templates() -> list[str]:
    """Names accepted by :func:`get_template`."""
    return sorted(_TEMPLATES)


def get_template(name: str) -> Template:
    """Return the named template; unknown names raise :class:`UnknownNameError` (a ``KeyError``) with a hint."""
    try:
        return _TEMPLATES[name]
    except KeyError:
        raise unknown_name("alignment template", name, list_templates()) from None


def _as_points(points: ArrayLike, *, name: str, device=None, min_points: int = 2) -> torch.Tensor:
    """Landmarks as a float tensor ``[B, N, 2]`` (a single ``[N, 2]`` set gets a batch axis)."""
    t = points if isinstance(points, torch.Tensor) else torch.from_numpy(np.array(points, dtype=np.float64))
    if device is not None:
        t = t.to(device)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[-1] != 2 or t.shape[1] < min_points:
        raise AlignmentError(
            f"{name} must have shape [B, N, 2] or [N, 2] with N >= {min_points}, got {tuple(t.shape)}."
        )
    return t


#: how :func:`estimate_similarity` fits the similarity: ``least-squares`` (Umeyama, all points; the default, as
#: insightface's and skimage's) or ``lmeds`` (``cv2.estimateAffinePartial2D(..., method=cv2.LMEDS)``, as the official
#: restoration scripts' facexlib / facelib: a point that does not fit the template is left out); the values a
#: protocol's ``alignment.fit`` takes, defined beside the protocol checks (which must not import torch)
FITS = ALIGNMENT_FITS


def estimate_similarity(src: ArrayLike, dst: ArrayLike, *, fit: str = "least-squares") -> torch.Tensor:
    """Similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``: least squares (Umeyama) or,
    with ``fit="lmeds"``, OpenCV's least-median-of-squares fit (see :data:`FITS`).

    Args:
        src: ``[B, N, 2]`` (or ``[N, 2]``) source points, pixels ``(x, y)``.
        dst: ``[N, 2]`` (shared by the batch) or ``[B, N, 2]`` destination points.
        fit: one of :data:`FITS`.

    Returns:
        ``[B, 2, 3]`` forward matrices (src -> dst pixels, the ``cv2.warpAffine`` convention), computed in
        float64 on the CPU and returned in ``src``'s floating dtype (float64 for numpy or integer input) on
        ``src``'s device.
        Reflections are excluded, as in skimage's ``SimilarityTransform`` (the same least-squares fit). The
        official restoration scripts use ``cv2.estimateAffinePartial2D(..., method=cv2.LMEDS)``, which agrees with
        this fit when every point fits the template and drops a point that does not (docs/architecture.md).

    Raises:
        AlignmentError: shapes do not match, a point is not finite, or the source points coincide.
    """
    s = _as_points(src, name="src")
    out_dtype = s.dtype if s.dtype in (torch.float32, torch.float64) else torch.float64
    out_device = s.device
    s = s.to(device="cpu", dtype=torch.float64)  # tiny problem: solve on the CPU, same answer on every device
    d = _as_points(dst, name="dst", device="cpu").to(torch.float64)
    if d.shape[0] == 1 and s.shape[0] != 1:
        d = d.expand(s.shape[0], -1, -1)
    if d.shape != s.shape:
        raise AlignmentError(f"src {tuple(s.shape)} and dst {tuple(d.shape)} landmark shapes do not match.")
    bad = ~(torch.isfinite(s).all(dim=(1, 2)) & torch.isfinite(d).all(dim=(1, 2)))
    if bad.any():
        raise AlignmentError(f"Landmarks contain NaN/inf for batch items {bad.nonzero().flatten().tolist()}.")
    if fit not in FITS:
        raise AlignmentError(f"alignment fit must be one of {', '.join(FITS)}, got {fit!r}")
    if fit == "lmeds":
        return _lmeds(s, d).to(device=out_device, dtype=out_dtype)
    n = s.shape[1]
    mu_s, mu_d = s.mean(dim=1, keepdim=True), d.mean(dim=1, keepdim=True)
    sc, dc = s - mu_s, d - mu_d
    var_s = sc.pow(2).sum(dim=(1, 2)) / n
    degenerate = var_s <= 1e-12
    if degenerate.any():
        raise AlignmentError(
            f"Source landmarks coincide (zero spread) for batch items {degenerate.nonzero().flatten().tolist()}; "
            "check the detector output."
        )
    cov = dc.transpose(1, 2) @ sc / n
    u, sv, vh = torch.linalg.svd(cov)
    sign = torch.ones_like(sv)
    sign[:, 1] = torch.where(torch.linalg.det(cov) < 0, -1.0, 1.0)
    rot = u @ torch.diag_embed(sign) @ vh
    scale = (sv * sign).sum(dim=1) / var_s
    lin = scale[:, None, None] * rot
    trans = mu_d.transpose(1, 2) - lin @ mu_s.transpose(1, 2)
    return torch.cat([lin, trans], dim=2).to(device=out_device, dtype=out_dtype)


def _lmeds(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """``[B, 2, 3]`` float64 matrices of ``cv2.estimateAffinePartial2D(src_i, dst_i, method=cv2.LMEDS)`` (its
    default refinement included), for float64 CPU points ``[B, N, 2]``."""
    import cv2

    out = []
    for i, (a, b) in enumerate(zip(src.numpy(), dst.numpy())):
        matrix, _ = cv2.estimateAffinePartial2D(a, b, method=cv2.LMEDS)
        if matrix is None:
            raise AlignmentError(f"the LMEDS fit found no similarity for batch item {i}; check the detector output")
        out.append(matrix)
    return torch.from_numpy(np.stack(out).astype(np.float64))


def transform_points(points: ArrayLike, matrices: torch.Tensor) -> torch.Tensor:
    """Apply ``[B, 2, 3]`` affine matrices to ``[B, N, 2]`` pixel points; returns ``[B, N, 2]``.

    The result is in the points' floating dtype (float64 for numpy input) on the matrices' device.
    """
    m = matrices if isinstance(matrices, torch.Tensor) else torch.as_tensor(np.asarray(matrices))
    p = _as_points(points, name="points", device=m.device, min_points=1)
    if m.dim() == 2:
        m = m.unsqueeze(0)
    if m.shape[-2:] != (2, 3) or m.shape[0] not in (1, p.shape[0]):
        raise AlignmentError(f"matrices must be [B, 2, 3] with B = {p.shape[0]}, got {tuple(m.shape)}.")
    mm = m.to(torch.float64)
    out = p.to(torch.float64) @ mm[:, :, :2].transpose(1, 2) + mm[:, :, 2].unsqueeze(1)
    return out.to(p.dtype)


def _border_tensor(border_value, channels: int, like: torch.Tensor) -> torch.Tensor | None:
    """Border fill as a ``[1, C, 1, 1]`` tensor, or None when it is zero everywhere."""
    b = torch.as_tensor(border_value, dtype=like.dtype, device=like.device).flatten()
    if b.numel() == 1:
        b = b.expand(channels)
    if b.numel() != channels:
        raise ValueError(f"border_value has {b.numel()} values for an image with {channels} channels.")
    if bool((b == 0).all()):
        return None
    return b.view(1, channels, 1, 1)


def warp_affine(
    images: torch.Tensor,
    matrices: torch.Tensor,
    size: tuple[int, int],
    border_value: float | Sequence[float] = 0.0,
) -> torch.Tensor:
    """Batched equivalent of ``cv2.warpAffine(img, M, (w, h), INTER_LINEAR, BORDER_CONSTANT, border_value)``.

    Args:
        images: ``[B, C, H, W]`` floating tensor (any range; typically [0, 1] RGB).
        matrices: ``[B, 2, 3]`` (or ``[2, 3]``, shared) forward matrices mapping source to destination pixels.
        size: output ``(h, w)``.
        border_value: fill outside the source, a scalar or one value per channel (same units as ``images``).

    Returns:
        ``[B, C, h, w]`` with ``images``' dtype and device. Bilinear with out-of-image neighbours taken as
        ``border_value`` -- OpenCV's rule.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a [B, C, H, W] tensor, got {getattr(images, 'shape', type(images))}.")
    if not images.is_floating_point():
        raise TypeError(f"images must be a floating tensor (got {images.dtype}); convert with .float() / 255.")
    b, c, in_h, in_w = images.shape
    out_h, out_w = int(size[0]), int(size[1])
    m = torch.as_tensor(matrices).to(device=images.device, dtype=torch.float64)
    if m.dim() == 2:
        m = m.unsqueeze(0)
    if m.shape[-2:] != (2, 3):
        raise ValueError(f"matrices must be [B, 2, 3], got {tuple(m.shape)}.")
    if m.shape[0] == 1 and b != 1:
        m = m.expand(b, 2, 3)
    if m.shape[0] != b:
        raise ValueError(f"{m.shape[0]} matrices for {b} images.")

    # destination pixel -> source pixel (inverse of the forward matrix)
    lin = m[:, :, :2]
    inv_lin = torch.linalg.inv(lin)
    inv_t = -(inv_lin @ m[:, :, 2:])
    # normalised output coords -> output pixels: p = n * S/2 + (S-1)/2 ; source pixels -> normalised: n = (2p+1)/S - 1
    den = torch.tensor([out_w / 2.0, out_h / 2.0], dtype=torch.float64, device=images.device)
    off = torch.tensor([(out_w - 1) / 2.0, (out_h - 1) / 2.0], dtype=torch.float64, device=images.device)
    num = torch.tensor([2.0 / in_w, 2.0 / in_h], dtype=torch.float64, device=images.device)
    shift = torch.tensor([1.0 / in_w - 1.0, 1.0 / in_h - 1.0], dtype=torch.float64, device=images.device)
    theta_lin = num[None, :, None] * inv_lin * den[None, None, :]
    theta_t = num[None, :, None] * (inv_lin @ off[None, :, None] + inv_t) + shift[None, :, None]
    theta = torch.cat([theta_lin, theta_t], dim=2)

    work = images if images.dtype in (torch.float32, torch.float64) else images.float()
    grid = F.affine_grid(theta.to(work.dtype), [b, c, out_h, out_w], align_corners=False)
    fill = _border_tensor(border_value, c, work)
    src = work if fill is None else work - fill
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if fill is not None:
        out = out + fill
    return out.to(images.dtype)


def crop_to_template(faces: torch.Tensor, landmarks: ArrayLike, template_name: str) -> torch.Tensor:
    """Crop ``faces`` ``[B, 3, H, W]`` to a template using their landmarks ``[B, 5, 2]`` (pixels of ``faces``).

    This is how recognizers crop: similarity from the landmarks to ``get_template(template_name).points``,
    then :func:`warp_affine` to the template size with its border fill. Returns ``[B, 3, h, w]``.
    """
    tpl = get_template(template_name)
    mats = estimate_similarity(_as_points(landmarks, name="landmarks", device=faces.device), tpl.points)
    return warp_affine(faces, mats, (tpl.size[1], tpl.size[0]), border_value=tpl.border_value)


def _to_float_image(img: torch.Tensor) -> torch.Tensor:
    if img.dtype == torch.uint8:
        return img.float() / 255.0
    if not img.is_floating_point():
        raise TypeError(f"images must be uint8 or floating tensors, got {img.dtype}.")
    return img


def align_to_template(
    images: torch.Tensor | Sequence[torch.Tensor],
    landmarks: ArrayLike,
    template: str = "ffhq_512",
    *,
    return_matrices: bool = False,
    fit: str = "least-squares",
) -> tuple[torch.Tensor, ...]:
    """Align whole photos to a template and report where the landmarks land in the crop.

    Args:
        images: ``[B, 3, H, W]`` tensor, or a list of ``[3, H_i, W_i]`` tensors of different sizes; float in
            [0, 1] RGB (uint8 0..255 is accepted and divided by 255).
        landmarks: ``[B, 5, 2]`` pixel ``(x, y)`` landmarks of each image (tensor, array or list of ``[5, 2]``).
        template: template name (default ``"ffhq_512"``).

        return_matrices: also return the ``[B, 2, 3]`` float64 photo -> crop matrices (for pasting back).
        fit: how the landmarks are fitted to the template (:data:`FITS`; ``"lmeds"`` as the official restoration
            scripts).

    Returns:
        ``(faces, landmarks_in_crop)``: ``[B, 3, h, w]`` float crops (device of the images, float32 for uint8
        input) and ``[B, 5, 2]`` float32 landmarks in crop pixels; plus the matrices if asked for.
    """
    tpl = get_template(template)
    items = list(images.unbind(0)) if isinstance(images, torch.Tensor) else list(images)
    if isinstance(images, torch.Tensor) and images.dim() != 4:
        raise ValueError(f"images must be [B, 3, H, W] or a list of [3, H, W], got {tuple(images.shape)}.")
    if not items:
        raise ValueError("align_to_template got no images.")
    for i, im in enumerate(items):
        if not isinstance(im, torch.Tensor) or im.dim() != 3:
            raise ValueError(f"image {i} must be a [3, H, W] tensor, got {getattr(im, 'shape', type(im))}.")
    device = items[0].device
    if isinstance(landmarks, (list, tuple)):
        landmarks = np.stack([np.asarray(p.cpu() if isinstance(p, torch.Tensor) else p, np.float64) for p in landmarks])
    lms = _as_points(landmarks, name="landmarks", device=device).to(torch.float64)
    if lms.shape[0] != len(items):
        raise ValueError(f"{lms.shape[0]} landmark sets for {len(items)} images.")
    mats = estimate_similarity(lms, tpl.points, fit=fit)
    out_h, out_w = tpl.size[1], tpl.size[0]

    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(items):
        groups.setdefault((tuple(im.shape), im.dtype), []).append(i)
    faces: list[torch.Tensor | None] = [None] * len(items)
    for idx in groups.values():
        batch = _to_float_image(torch.stack([items[i] for i in idx]).to(device))
        warped = warp_affine(batch, mats[idx], (out_h, out_w), border_value=tpl.border_value)
        for j, i in enumerate(idx):
            faces[i] = warped[j]
    dtype = functools.reduce(torch.promote_types, {f.dtype for f in faces})
    out = torch.stack([f.to(dtype) for f in faces])
    crop_lms = transform_points(lms, mats).to(torch.float32)
    return (out, crop_lms, mats) if return_matrices else (out, crop_lms)
