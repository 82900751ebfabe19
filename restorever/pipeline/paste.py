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
    warped, mask = _warp_back(faces, matrices, tuple(photos.shape[-2:]), feather)
    return photos * (1 - mask) + warped * mask


def _warp_back(faces: torch.Tensor, matrices: torch.Tensor, hw: tuple[int, int], feather: int):
    """``faces`` warped into the photo ``[B,3,H,W]`` and their feathered masks ``[B,1,H,W]`` in [0, 1]."""
    from ..alignment import warp_affine

    inverse = invert_affine(matrices.to(torch.float64))
    warped = warp_affine(faces, inverse, hw)
    mask = torch.ones_like(faces[:, :1])
    if feather > 0:
        margin = max(1, feather // 2)
        mask[..., :margin, :] = 0
        mask[..., -margin:, :] = 0
        mask[..., :, :margin] = 0
        mask[..., :, -margin:] = 0
        k = 2 * (feather // 2) + 1
        mask = F.avg_pool2d(F.pad(mask, (k // 2,) * 4, mode="replicate"), k, stride=1)
    return warped, warp_affine(mask, inverse, hw).clamp_(0, 1)


#: crop pixels over which a photo pixel between two overlapping faces passes from one face's share to the other's
SHARE_SOFTNESS = 16.0


def paste_faces(photo: torch.Tensor, faces: torch.Tensor, matrices: torch.Tensor, *, feather: int = 24,
                softness: float = SHARE_SOFTNESS) -> torch.Tensor:
    """Paste several faces of one photo, each aligned from the original photo, without one covering another.

    ``photo`` ``[1,3,H,W]``, ``faces`` ``[K,3,S,S]`` (``ffhq_512`` crops), ``matrices`` ``[K,2,3]`` photo -> crop;
    float RGB in [0, 1]. A crop spans about twice its face, so in a group photo one face's mask reaches over its
    neighbour, and pasting one after the other would put the neighbour's unrestored pixels (from the later crop)
    back over half a restored face. Instead, where masks overlap, each photo pixel is shared by a softmax over
    ``-d_k / softness``, ``d_k`` its distance to face ``k``'s centre (the template landmarks' mean) in that face's
    crop pixels: it goes to the face it is nearest relative to that face's size. The result is a convex mix of the
    photo and the warped crops; where one mask only is non-zero it equals :func:`paste_back` bit for bit, and
    ``K = 1`` is :func:`paste_back`. Three passes over the faces keep memory at a few ``[H, W]`` buffers.
    """
    from ..alignment import get_template

    if faces.shape[0] <= 1:
        return photo if faces.shape[0] == 0 else paste_back(photo, faces, matrices, feather=feather)
    hw = tuple(photo.shape[-2:])
    centre = get_template("ffhq_512").points.mean(axis=0)
    ys, xs = torch.meshgrid(torch.arange(hw[0], dtype=torch.float64, device=photo.device),
                            torch.arange(hw[1], dtype=torch.float64, device=photo.device), indexing="ij")
    m = matrices.to(device=photo.device, dtype=torch.float64)

    def logit(k: int) -> torch.Tensor:
        cx = m[k, 0, 0] * xs + m[k, 0, 1] * ys + m[k, 0, 2] - float(centre[0])
        cy = m[k, 1, 0] * xs + m[k, 1, 1] * ys + m[k, 1, 2] - float(centre[1])
        return (-torch.sqrt(cx * cx + cy * cy) / softness).to(photo.dtype)

    top = torch.full(hw, float("-inf"), dtype=photo.dtype, device=photo.device)
    for k in range(faces.shape[0]):  # pass 1: the largest logit among the faces whose mask covers each pixel
        _, mask = _warp_back(faces[k:k + 1], matrices[k:k + 1], hw, feather)
        top = torch.where(mask[0, 0] > 0, torch.maximum(top, logit(k)), top)
    total = torch.zeros(hw, dtype=photo.dtype, device=photo.device)
    for k in range(faces.shape[0]):  # pass 2: the softmax's denominator
        _, mask = _warp_back(faces[k:k + 1], matrices[k:k + 1], hw, feather)
        total += torch.where(mask[0, 0] > 0, torch.exp(logit(k) - top), torch.zeros_like(top))
    weight_sum = torch.zeros_like(photo[:, :1])
    mixed = torch.zeros_like(photo)
    for k in range(faces.shape[0]):  # pass 3: each face's share of its mask
        warped, mask = _warp_back(faces[k:k + 1], matrices[k:k + 1], hw, feather)
        share = torch.where(mask[0, 0] > 0, torch.exp(logit(k) - top) / total.clamp_min(1e-30),
                            torch.zeros_like(top))
        weight = mask * share
        weight_sum += weight
        mixed += warped * weight
    return photo * (1 - weight_sum) + mixed
