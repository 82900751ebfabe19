"""MTCNN face detection on a batch of images, with facenet-pytorch's networks and its exact numbers.

facenet-pytorch's ``detect_face`` cuts every candidate box out of its image and resizes it (``interpolate``,
``mode="area"``) one box at a time: some 66 boxes per LFW photo for the second stage and again for the third, each
a handful of small kernel launches, and per-image NMS (:func:`per_image_nms`, as restorever ran it) waits for
the device once per image and stage. :func:`detect_batch` runs the same three stages with

* off the CPU, every crop of a stage resized at once from one summed-area table of the batch
  (:func:`crop_resize_area`). The images are integers, so the window sums are exact integers, as they are inside
  ``interpolate``; the only rounding is the final division, done the way the device's own ``adaptive_avg_pool2d``
  kernel does it (found once per device by :func:`area_rule`). The crops are therefore bit-identical to
  facenet-pytorch's (on the CPU, where a small operation costs no kernel launch, the crops stay one by one:
  ``crops="auto"``);
* the first stage's NMS for all images in one call: its boxes have non-negative integer coordinates, so moving each
  image's boxes by a multiple of the largest coordinate keeps every coordinate, and so every IoU, exact;
* the later stages' NMS per image from one host copy of the image indices (one device wait per stage, not per
  image).

Everything else (pyramid, box regression, squaring, clipping, thresholds, the order of candidates, the network
chunks of 512) follows facenet-pytorch 2.5.3, using its own helper functions, so boxes, scores and landmarks equal
those of ``facenet_pytorch.MTCNN.detect`` with per-image NMS bit for bit (tested on real photos). Two cases differ
on purpose: an image too small for the smallest face (``min(h, w) < min_face_size``) and a candidate box clipped to
nothing give "no face" / are dropped, where facenet-pytorch raises.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["AreaRule", "area_rule", "crop_resize_area", "detect_batch", "detect_batch_facenet", "integral_image",
           "per_image_nms", "pyramid_scales"]

_NETWORK_CHUNK = 512  # facenet-pytorch runs R-Net and O-Net on at most this many crops per call


@dataclass(frozen=True)
class AreaRule:
    """How a device's ``interpolate(mode="area")`` finishes facenet-pytorch's crops: ``division`` is
    ``"divide-twice"`` (``sum / h / w``, PyTorch's channel-first kernels) or ``"reciprocal"`` (``sum * (1 / (h *
    w))``, its CUDA channel-last kernel), ``channels_last`` the memory layout of the resized batch (which picks the
    networks' convolution algorithms, and so their rounding)."""

    division: Literal["divide-twice", "reciprocal"]
    channels_last: bool


_RULES: dict[tuple[str, int | None, torch.dtype], AreaRule | None] = {}
_RULES_LOCK = threading.Lock()


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """The image-pyramid scales of MTCNN's first stage (largest first): ``12 / min_face_size`` times powers of
    ``factor`` while the shorter side, scaled, is at least 12 px (facenet-pytorch's float arithmetic)."""
    m = 12.0 / min_face_size
    shorter = min(height, width) * m
    scale, scales = m, []
    while shorter >= 12:
        scales.append(scale)
        scale *= factor
        shorter *= factor
    return scales


def integral_image(images: torch.Tensor) -> torch.Tensor:
    """Summed-area table ``[N, H + 1, W + 1, C]`` (channels last; zero first row and column) of integer-valued
    ``images`` ``[N, C, H, W]`` (any dtype holding integers in 0-255): entry ``[n, r, s, c]`` is the sum of rows
    ``< r`` and columns ``< s`` of channel ``c``. int32 while the largest sum fits (``H * W * 255 < 2**31``),
    int64 beyond."""
    n, c, h, w = images.shape
    dtype = torch.int32 if h * w * 255 < 2**31 else torch.int64
    table = torch.zeros((n, h + 1, w + 1, c), dtype=dtype, device=images.device)
    table[:, 1:, 1:] = images.permute(0, 2, 3, 1).to(dtype).cumsum(1, dtype=dtype).cumsum(2, dtype=dtype)
    return table


def _bins(start: torch.Tensor, stop: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Window bounds ``[K, size]`` of adaptive average pooling of the spans ``[start, stop)`` ``[K]`` into ``size``
    cells: cell ``i`` covers ``floor(i * n / size)`` to ``ceil((i + 1) * n / size)`` from ``start`` (``n`` the span
    length), as PyTorch's kernels index them."""
    length = (stop - start)[:, None]
    i = torch.arange(size, device=start.device)[None]
    lo = start[:, None] + torch.div(i * length, size, rounding_mode="floor")
    hi = start[:, None] + torch.div((i + 1) * length + size - 1, size, rounding_mode="floor")
    return lo, hi


def _window_sums(table: torch.Tensor, image_index: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor],
                 cols: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Exact sums ``[K, C, S, S]`` (a channel-last view) of the windows ``rows x cols`` (each ``[K, S]`` bounds) of
    image ``image_index`` ``[K]``, from the batch's summed-area ``table``: four row gathers of the flattened
    table."""
    n, h1, w1, c = table.shape
    flat = table.reshape(n * h1 * w1, c)
    (r0, r1), (c0, c1) = rows, cols
    base = image_index[:, None, None] * h1

    def corner(r: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        index = (base + r[:, :, None]) * w1 + col[:, None, :]  # [K, S, S]
        return flat.index_select(0, index.reshape(-1)).reshape(*index.shape, c)

    sums = corner(r1, c1) - corner(r0, c1) - corner(r1, c0) + corner(r0, c0)
    return sums.permute(0, 3, 1, 2)


def _divide(sums: torch.Tensor, count_h: torch.Tensor, count_w: torch.Tensor, rule: AreaRule,
            dtype: torch.dtype) -> torch.Tensor:
    """Window means from exact ``sums`` ``[K, C, S, S]`` and window heights/widths ``[K, S]``, rounded in ``dtype``
    as ``rule`` says and laid out as it says."""
    s = sums.to(dtype)
    s = s.contiguous(memory_format=torch.channels_last if rule.channels_last else torch.contiguous_format)
    if rule.division == "divide-twice":
        return s / count_h[:, None, :, None].to(dtype) / count_w[:, None, None, :].to(dtype)
    if rule.division == "reciprocal":
        return s * (1.0 / (count_h[:, None, :, None] * count_w[:, None, None, :]).to(dtype))
    raise ValueError(f"unknown area division {rule.division!r}")


def crop_resize_area(table: torch.Tensor, image_index: torch.Tensor, top: torch.Tensor, bottom: torch.Tensor,
                     left: torch.Tensor, right: torch.Tensor, size: int, *, rule: AreaRule,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Crops ``[K, C, size, size]`` of rows ``[top, bottom)`` and columns ``[left, right)`` (int64 ``[K]``, inside
    the image, non-empty) of images ``image_index`` ``[K]``, each resized like ``interpolate(crop, (size, size),
    mode="area")``, from the batch's summed-area ``table`` (:func:`integral_image`). ``rule`` is the rounding of
    the final division and the output layout (:func:`area_rule`). Exact while a window's sum stays below 2**24 in float32
    (windows of up to 65,793 pixels of 0-255 values)."""
    rows = _bins(top, bottom, size)
    cols = _bins(left, right, size)
    sums = _window_sums(table, image_index, rows, cols)
    return _divide(sums, rows[1] - rows[0], cols[1] - cols[0], rule, dtype)


def area_rule(device: torch.device | str, dtype: torch.dtype = torch.float32) -> AreaRule | None:
    """How this device's ``interpolate(mode="area")`` rounds and lays out crops cut as facenet-pytorch cuts them
    (channel-last views of a batch, resized one by one and concatenated): found once per device and dtype by
    resizing random integer crops both ways and comparing; ``None`` when no rule reproduces the kernel bit for bit
    (:func:`detect_batch` then resizes crop by crop, as facenet-pytorch does)."""
    device = torch.device(device)
    key = (device.type, device.index, dtype)
    with _RULES_LOCK:
        if key not in _RULES:
            _RULES[key] = _find_area_rule(device, dtype)
        return _RULES[key]


def _find_area_rule(device: torch.device, dtype: torch.dtype) -> AreaRule | None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 97, 89, 3), generator=gen, dtype=torch.uint8)
    batch = images.to(device).permute(0, 3, 1, 2).to(dtype)  # channel-last strides, like facenet-pytorch's
    boxes = [(0, 0, 3, 97, 89), (1, 0, 0, 61, 47), (0, 11, 5, 54, 80), (1, 40, 7, 47, 88)]  # image, t, l, b, r
    index, top, left, bottom, right = (torch.tensor(column, device=device) for column in zip(*boxes))
    table = integral_image(batch)
    refs = {size: torch.cat([F.interpolate(batch[i, :, t:b, l:r].unsqueeze(0), size=(size, size), mode="area")
                             for i, t, l, b, r in boxes]) for size in (24, 48)}
    channels_last = {not ref.is_contiguous() for ref in refs.values()}
    if len(channels_last) != 1:
        return None
    layout = channels_last.pop()
    for division in ("divide-twice", "reciprocal"):
        rule = AreaRule(division, channels_last=layout)
        outs = {size: crop_resize_area(table, index, top, bottom, left, right, size, rule=rule, dtype=dtype)
                for size in refs}
        if all(torch.equal(outs[size], refs[size]) and outs[size].stride() == refs[size].stride() for size in refs):
            return rule
    return None


def _nms_integer_boxes(boxes: torch.Tensor, scores: torch.Tensor, image_index: torch.Tensor,
                       threshold: float) -> torch.Tensor:
    """NMS within each image in one call, for boxes ``[K, 4]`` whose coordinates are non-negative integers: each
    image's boxes move by ``image * (largest coordinate + 1)``, which stays exact in float32 (below 2**24), so
    IoUs, and the kept indices (by decreasing score, ties in input order), equal per-image NMS."""
    from torchvision.ops import nms

    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    shift = image_index.to(boxes.dtype) * (boxes.max() + 1)
    return nms(boxes + shift[:, None], scores, threshold)


def per_image_nms(boxes: torch.Tensor, scores: torch.Tensor, image_index: torch.Tensor,
                  iou_threshold: float) -> torch.Tensor:
    """NMS within each image of a batch: the indices kept, by decreasing score (ties in input order, as one
    ``nms`` call on all boxes orders them).

    A drop-in for ``torchvision.ops.batched_nms`` as facenet-pytorch's MTCNN calls it. torchvision's version (and
    facenet-pytorch's ``batched_nms_numpy``) separates the images by shifting each one's boxes by ``index *
    (largest coordinate + 1)``, which keeps them apart only when no coordinate is negative; MTCNN's boxes of faces
    cut by the image border are negative, so in a batch one image's boxes suppressed another's (on 10 photos of
    ``data/faces``, two faces' landmarks moved by 2.4 and 9.6 px with their batch mates). Here each image runs
    torchvision's ``nms`` on its own boxes, exactly what a one-image call does, after one host copy of the image
    indices (one wait for the device, not one per image).
    """
    from torchvision.ops import nms

    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    keep = [rows[nms(boxes[rows], scores[rows], iou_threshold)] for rows in _rows_by_image(image_index)]
    kept = torch.sort(torch.cat(keep)).values  # input order, so that equal scores stay in input order below
    return kept[torch.sort(scores[kept], descending=True, stable=True).indices]


def _rows_by_image(image_index: torch.Tensor) -> list[torch.Tensor]:
    """Row indices (on ``image_index``'s device, increasing) of each image present, image by image."""
    order = torch.sort(image_index, stable=True).indices
    counts = torch.bincount(image_index).tolist()  # the one wait for the device
    rows, start = [], 0
    for count in counts:
        if count:
            rows.append(order[start:start + count])
        start += count
    return rows


def _nms_min_per_image(boxes: torch.Tensor, scores: torch.Tensor, image_index: torch.Tensor,
                       threshold: float, method: str = "Min") -> torch.Tensor:
    """The last stage's NMS (facenet-pytorch's ``nms_numpy``; "Min": intersection over the smaller box) on each
    image's boxes, on the host; kept indices image by image, each by decreasing score."""
    from facenet_pytorch.models.utils.detect_face import nms_numpy

    boxes_np, scores_np = boxes.cpu().numpy(), scores.cpu().numpy()
    index_np = image_index.cpu().numpy()
    keep: list[np.ndarray] = []
    for value in np.unique(index_np):
        rows = np.flatnonzero(index_np == value)
        keep.append(rows[np.asarray(nms_numpy(boxes_np[rows], scores_np[rows], threshold, method), dtype=np.int64)])
    kept = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    return torch.as_tensor(kept, dtype=torch.int64, device=boxes.device)


def _crops(images: torch.Tensor, table: torch.Tensor | None, boxes: torch.Tensor, image_index: torch.Tensor,
           size: int, rule: AreaRule | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``size x size`` network inputs (scaled to about [-1, 1]) of ``boxes`` ``[K, 4+]`` of images
    ``image_index`` ``[K]``, clipped to the image as facenet-pytorch's ``pad`` does, and the mask ``[K]`` of the
    boxes that keep at least one pixel (the crops are of those only). ``table`` is the batch's summed-area table,
    or ``None`` to resize crop by crop."""
    from facenet_pytorch.models.utils.detect_face import pad

    h, w = images.shape[2:4]
    y, ey, x, ex = pad(boxes, w, h)  # int32 host arrays, 1-based first row/column
    bounds = np.stack([y - 1, ey, x - 1, ex]).astype(np.int64)  # top, bottom, left, right
    keep = (bounds[1] > bounds[0]) & (bounds[3] > bounds[2])
    bounds = bounds[:, keep]
    valid = torch.as_tensor(keep, device=images.device)
    owners = image_index[valid]
    if table is None or rule is None:
        pieces = [F.interpolate(images[i, :, t:b, le:r].unsqueeze(0), size=(size, size), mode="area")
                  for i, (t, b, le, r) in zip(owners.tolist(), bounds.T.tolist())]
        data = torch.cat(pieces) if pieces else images.new_zeros((0, images.shape[1], size, size))
    else:
        top, bottom, left, right = torch.as_tensor(bounds, device=images.device)
        data = crop_resize_area(table, owners, top, bottom, left, right, size, rule=rule, dtype=images.dtype)
    return (data - 127.5) * 0.0078125, valid


def _run_chunked(net: torch.nn.Module, data: torch.Tensor) -> tuple[torch.Tensor, ...]:
    outputs = [net(data[i:i + _NETWORK_CHUNK]) for i in range(0, len(data), _NETWORK_CHUNK)]
    return tuple(torch.cat(parts) for parts in zip(*outputs))


@torch.no_grad()
def detect_batch(images: torch.Tensor | np.ndarray, pnet: torch.nn.Module, rnet: torch.nn.Module,
                 onet: torch.nn.Module, *, min_face_size: float = 20, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709, crops: Literal["auto", "table", "loop"] = "auto",
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Faces in each image of ``images`` (``[N, H, W, 3]`` uint8 RGB, array or tensor; the networks' device is
    used): per image ``(boxes [F, 5] float32: x1, y1, x2, y2, score; landmarks [F, 5, 2] float32 (x, y) px)``,
    with ``F = 0`` where none was found; order and values as ``facenet_pytorch.MTCNN.detect`` with per-image NMS.

    ``crops``: ``"table"`` resizes every crop of a stage at once from a summed-area table (few large operations:
    what a GPU wants), ``"loop"`` one crop at a time as facenet-pytorch does (cheaper on a CPU, where an operation
    costs no launch and the table's cumulative sums cost more than the small resizes: 0.86x at batch 128 on this
    project's CPU); ``"auto"`` takes the loop on the CPU and the table elsewhere. Both give the same bits.
    """
    if crops not in ("auto", "table", "loop"):
        raise ValueError(f"detect_batch: crops must be 'auto', 'table' or 'loop', not {crops!r}")
    from facenet_pytorch.models.utils.detect_face import bbreg, generateBoundingBox, rerec

    device = next(pnet.parameters()).device
    dtype = next(pnet.parameters()).dtype
    # a fresh copy with standard strides (a ``[None]`` view has stride 0, which changes the layout interpolate picks
    # for the pyramid, and so P-Net's rounding), as facenet-pytorch's own copy
    if isinstance(images, np.ndarray):
        batch = torch.as_tensor(np.array(images, copy=True), device=device)
    else:
        batch = images.to(device).clone(memory_format=torch.contiguous_format)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"detect_batch: expected [N, H, W, 3] uint8 images, got shape {tuple(batch.shape)}")
    n, h, w = batch.shape[0], batch.shape[1], batch.shape[2]
    imgs = batch.permute(0, 3, 1, 2).to(dtype)  # channel-last strides, as facenet-pytorch's tensors
    empty = [(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)) for _ in range(n)]
    scales = pyramid_scales(h, w, min_face_size, factor)
    if not scales or n == 0:
        return empty

    # stage 1: P-Net on the pyramid, NMS per scale and image, then per image across scales
    found, owners = [], []
    for scale in scales:
        data = F.interpolate(imgs, size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
        reg, probs = pnet((data - 127.5) * 0.0078125)
        boxes_s, owner_s = generateBoundingBox(reg, probs[:, 1], scale, thresholds[0])
        pick = _nms_integer_boxes(boxes_s[:, :4], boxes_s[:, 4], owner_s, 0.5)
        found.append(boxes_s[pick])
        owners.append(owner_s[pick])
    boxes, owner = torch.cat(found), torch.cat(owners)
    pick = _nms_integer_boxes(boxes[:, :4], boxes[:, 4], owner, 0.7)
    boxes, owner = boxes[pick], owner[pick]
    if len(boxes) == 0:
        return empty
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * width, boxes[:, 1] + boxes[:, 6] * height,
                         boxes[:, 2] + boxes[:, 7] * width, boxes[:, 3] + boxes[:, 8] * height, boxes[:, 4]], dim=1)
    boxes = rerec(boxes)

    use_table = crops == "table" or (crops == "auto" and device.type != "cpu")
    rule = area_rule(device, dtype) if use_table else None
    table = integral_image(imgs) if rule is not None else None

    # stage 2: R-Net on 24x24 crops
    data, valid = _crops(imgs, table, boxes, owner, 24, rule)
    boxes, owner = boxes[valid], owner[valid]
    if len(boxes) == 0:
        return empty
    offsets, probs = _run_chunked(rnet, data)
    score = probs[:, 1]
    passed = score > thresholds[1]
    boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
    owner, offsets = owner[passed], offsets[passed]
    pick = per_image_nms(boxes[:, :4], boxes[:, 4], owner, 0.7)
    boxes, owner, offsets = boxes[pick], owner[pick], offsets[pick]
    if len(boxes) == 0:
        return empty
    boxes = rerec(bbreg(boxes, offsets))

    # stage 3: O-Net on 48x48 crops, landmarks
    data, valid = _crops(imgs, table, boxes, owner, 48, rule)
    boxes, owner = boxes[valid], owner[valid]
    if len(boxes) == 0:
        return empty
    offsets, marks, probs = _run_chunked(onet, data)
    score = probs[:, 1]
    passed = score > thresholds[2]
    boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
    owner, offsets, marks = owner[passed], offsets[passed], marks[passed]
    box_w = boxes[:, 2] - boxes[:, 0] + 1
    box_h = boxes[:, 3] - boxes[:, 1] + 1
    points_x = box_w[:, None] * marks[:, :5] + boxes[:, 0, None] - 1
    points_y = box_h[:, None] * marks[:, 5:] + boxes[:, 1, None] - 1
    points = torch.stack([points_x, points_y], dim=2)  # [F, 5, 2]
    boxes = bbreg(boxes, offsets)
    pick = _nms_min_per_image(boxes[:, :4], boxes[:, 4], owner, 0.7)
    boxes_np = boxes[pick].cpu().numpy()
    points_np = points[pick].cpu().numpy()
    owner_np = owner[pick].cpu().numpy()
    return [(boxes_np[owner_np == i], points_np[owner_np == i]) for i in range(n)]


_FACENET_LOCK = threading.Lock()  # the swap below changes module globals: one detection at a time


def detect_batch_facenet(images: np.ndarray, mtcnn) -> list[tuple[np.ndarray, np.ndarray]]:
    """The reference :func:`detect_batch` reproduces: facenet-pytorch's own ``MTCNN.detect`` on ``images``
    (``[N, H, W, 3]`` uint8 RGB), one crop at a time, with its three batched NMS calls made per image
    (:func:`per_image_nms`); same return format as :func:`detect_batch`. Threads take turns, so none restores
    another's swap halfway."""
    from facenet_pytorch.models.utils import detect_face as module

    with _FACENET_LOCK:
        originals = module.batched_nms, module.batched_nms_numpy
        module.batched_nms = per_image_nms
        module.batched_nms_numpy = _nms_min_per_image
        try:
            boxes, probs, points = mtcnn.detect(images, landmarks=True)
        finally:
            module.batched_nms, module.batched_nms_numpy = originals
    out = []
    for b, p, pt in zip(boxes, probs, points):
        if b is None:
            out.append((np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)))
        else:
            boxes_f = np.asarray(b, dtype=np.float32).reshape(-1, 4)  # object arrays when N == 1
            out.append((np.concatenate([boxes_f, np.asarray(p, dtype=np.float32).reshape(-1, 1)], axis=1),
                        np.asarray(pt, dtype=np.float32).reshape(-1, 5, 2)))
    return out
