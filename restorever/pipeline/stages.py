"""The per-face stages of an evaluation, as small public functions over batches.

:func:`restorever.pipeline.evaluate.evaluate` and :class:`restorever.FacePipeline` both call these, so a face
embedded through the library API gets exactly the numbers ``restorever eval`` computes for it:

* :func:`detect_each` -- landmarks, one image per detector call on one CPU thread (batch-independent);
* :func:`align_faces` -- photos + five landmarks -> ``ffhq_512`` crops ``[B,3,512,512]`` and crop landmarks;
* :func:`restore_faces` -- restorer output quantised to 8 bits (as a saved PNG would be);
* :func:`embed_faces` -- recognizer embeddings as ``float32`` numpy ``[B, D]``;
* :func:`call_with_backoff` -- run a batch, halving it on out-of-memory.

Degradation is :class:`restorever.degradation.Degradation` (``sample_params`` + ``apply``) and the per-item restorer
seeds are :func:`restorever.pipeline.evaluate.item_seed`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["align_faces", "call_with_backoff", "detect_each", "embed_faces", "in_batches", "is_out_of_memory",
           "model_name", "progress_bar", "restore_faces", "select_rows", "single_thread_on_cpu"]


class single_thread_on_cpu:
    """Run small CPU kernels on one torch thread (MTCNN's many tiny ops were measured 13x slower with two OpenMP
    threads on a loaded 2-core machine); restores the previous count afterwards."""

    def __init__(self, device: Any):
        self.cpu = str(device).startswith("cpu")

    def __enter__(self):
        import torch

        self.previous = torch.get_num_threads()
        if self.cpu:
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.previous)


def detect_each(detector: Any, arrays: Sequence[np.ndarray], device: Any, *, all_faces: bool = False) -> list:
    """Run ``detector`` on each ``HxWx3`` uint8 RGB array on its own.

    One image per call, because batched CNN kernels can differ in the last bits with batch composition and an
    image's landmarks must not depend on which images share its batch. Returns per image the detector's single
    (most central) :class:`~restorever.detectors.Detection` or ``None``, or with ``all_faces=True`` the list of all
    its detections (``detector.detect_faces``).
    """
    with single_thread_on_cpu(device):
        if all_faces:
            return [detector.detect_faces([a])[0] for a in arrays]
        return [detector.detect([a])[0] for a in arrays]


def align_faces(images: Sequence[Any], landmarks: Any, device: Any, *, return_matrices: bool = False,
                fit: str = "least-squares"):
    """Align photos to ``ffhq_512`` (``fit``: :data:`restorever.alignment.FITS`).

    Args:
        images: ``[3, H_i, W_i]`` float RGB tensors in [0, 1] (sizes may differ).
        landmarks: ``[B, 5, 2]`` photo-pixel landmarks; rounded to float32 first, as the landmark cache stores them.
        device: where the crops are computed.
        return_matrices: also return the ``[B, 2, 3]`` float64 photo -> crop matrices (for pasting back).

    Returns:
        ``(faces [B,3,512,512] float in [0, 1], crop landmarks [B,5,2] float32[, matrices])``.
    """
    import torch

    from ..alignment import align_to_template

    lms = torch.from_numpy(np.array(landmarks, dtype=np.float32))  # a copy: callers may pass read-only arrays
    faces, crop_lms, mats = align_to_template([t.to(device) for t in images], lms, "ffhq_512", return_matrices=True,
                                              fit=fit)
    faces = faces.clamp_(0.0, 1.0)  # bilinear weights can overshoot 1.0 by an ulp
    return (faces, crop_lms, mats) if return_matrices else (faces, crop_lms)


def restore_faces(restorer: Any, faces: Any, seeds: Sequence[int]):
    """``restorer.restore`` on ``faces`` ``[B,3,512,512]`` with per-item ``seeds``, halving the batch on
    out-of-memory; the result is quantised to 8 bits (``round(x * 255) / 255``), float in [0, 1]."""
    import torch

    seeds = list(seeds)

    def run(idx: list[int]):
        with torch.no_grad():  # a restorer of the user's own may return a tensor that requires grad
            out = restorer.restore(faces[idx], seeds=[seeds[i] for i in idx])
        _check_output(restorer, "restore", out, (len(idx), *faces.shape[1:]),
                      "the same shape as its input (resize a super-resolved face back to the crop's size)")
        return out

    return call_with_backoff(run, len(seeds)).clamp(0.0, 1.0).mul(255).round_().div_(255)


def embed_faces(recognizer: Any, faces: Any, landmarks: Any) -> np.ndarray:
    """``recognizer.embed(faces [B,3,512,512], landmarks [B,5,2])`` -> ``float32`` numpy ``[B, D]`` (raw, not
    normalised), halving the batch on out-of-memory."""
    import torch

    def run(idx: list[int]):
        with torch.no_grad():  # a recognizer of the user's own may return a tensor that requires grad
            out = recognizer.embed(faces[idx], landmarks[idx])
        _check_output(recognizer, "embed", out, (len(idx), None), "one embedding per face, [B, D]")
        return out

    return call_with_backoff(run, len(faces)).float().cpu().numpy()


def _check_output(model: Any, method: str, out: Any, shape: tuple, expected: str) -> None:
    """ValueError naming ``model.method`` when ``out`` is not a tensor of ``shape`` (``None``: any size)."""
    import torch

    got = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if got is None or len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
        what = f"shape {list(got)}" if got is not None else type(out).__name__
        raise ValueError(f"{model_name(model)}.{method} returned {what} for a batch of {shape[0]}; expected a "
                         f"tensor with {expected}")


def model_name(model: Any) -> str:
    """A model's name for messages: its card's name (registry models), else its ``name`` text, else its class."""
    card = getattr(model, "card", None)
    name = getattr(card, "name", None) if card is not None else getattr(model, "name", None)
    return name if isinstance(name, str) and name else type(model).__name__


def select_rows(batch: Any, index: list[int]) -> Any:
    """``batch[index]``, not copied when ``index`` is every row in order (for inputs that are only read)."""
    return batch if index == list(range(len(batch))) else batch[index]


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA (or simulated) out-of-memory errors."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def call_with_backoff(fn: Callable[[list[int]], Any], n: int, *, min_size: int = 1):
    """``fn(index_list)`` on all ``n`` items; on out-of-memory, split the items in halves and retry each half.

    Results are concatenated in order. Because every item's output depends only on that item, splitting never
    changes a number. Raises the error when a single item does not fit.
    """
    import torch

    def run(index: list[int]):
        try:
            return fn(index)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not is_out_of_memory(exc) or len(index) <= min_size:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = len(index) // 2
            logger.warning("out of memory on a batch of %d; retrying as %d + %d", len(index), half,
                           len(index) - half)
            return torch.cat([run(index[:half]), run(index[half:])])

    return run(list(range(n)))


def in_batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def progress_bar(iterable, total: int, desc: str, enabled: bool):
    """``iterable`` under a tqdm bar of ``total`` batches: shown only when ``enabled`` and stderr is a terminal
    (:func:`restorever.progress.progress_bar`)."""
    from ..progress import progress_bar as bar

    return bar(iterable, total, desc, enabled)
