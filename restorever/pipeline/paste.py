"""Paste a restored aligned face back into its photo (inverse similarity warp + feathered mask)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def invert_affine(matrices: torch.Tensor) -> torch.Tensor:
    """Invert ``[B, 2, 3]`` forward affine matrices (cv2.invertAffineTransform, batched)."""
    full = torch.cat([matrices, matrices.new_tensor([0.0, 0.0, 1.0]).expand(matrices.shape[0], 1, 3)], dim=1)
    return torch.linalg.inv(full)[:, :2, :]


def paste_back(photos: torch.Tensor, faces: torch.Tensor, matrices: torch.Tensor, *, feather: int = 24) -> torch.Tensor:
    """Blend ``faces`` ``[B,3,S,S]`` into ``photos`` ``[B,3,H,W]`` (float RGB [0, 1]).

    ``matrices`` ``[B,2,3]`` map photo pixels to face-crop pixels (the alignment matrix). The face is warped back with
    the inverse matrix; a mask eroded and blurred by ``feather`` crop pixels hides the seam.
    """
    from ..alignment import warp_affine

    size = faces.shape[-1]
    inverse = invert_affine(matrices.to(torch.float64))
    h, w = photos.shape[-2:]
    warped = warp_affine(faces, inverse, (h, w))
    mask = torch.ones_like(faces[:, :1])
    if feather > 0:
        margin = max(1, feather // 2)
        mask[..., :margin, :] = 0
        mask[..., -margin:, :] = 0
        mask[..., :, :margin] = 0
        mask[..., :, -margin:] = 0
        k = 2 * (feather // 2) + 1
        mask = F.avg_pool2d(F.pad(mask, (k // 2,) * 4, mode="replicate"), k, stride=1)
    mask = warp_affine(mask, inverse, (h, w)).clamp_(0, 1)
    del size
    return photos * (1 - mask) + warped * mask


def paste_faces(photo: torch.Tensor, faces: torch.Tensor, matrices: torch.Tensor, *, feather: int = 24) -> torch.Tensor:
    """Paste several faces of one photo, in the order given (a later face covers an earlier one where masks meet).

    ``photo`` ``[1,3,H,W]``, ``faces`` ``[K,3,S,S]`` (each aligned from the original photo, not from an earlier
    paste), ``matrices`` ``[K,2,3]`` photo -> crop; float RGB in [0, 1]. ``K = 0`` returns the photo unchanged.
    """
    out = photo
    for k in range(faces.shape[0]):
        out = paste_back(out, faces[k:k + 1], matrices[k:k + 1])
    return out
