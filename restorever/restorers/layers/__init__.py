"""Building blocks shared by restorer backends.

This package imports nothing: import a block from its own module, so that adding a block file never needs an edit
here and importing one backend never pulls in another's blocks. Current modules:

* ``vqfr_blocks`` -- VQGAN-style blocks (``ResnetBlock``, ``AttnBlock``, resamplers, GroupNorm with eps 1e-6),
  VQFR's texture warping module and float32 code selection (used by ``restorers/vqfr.py``).
* ``vqfr_nets`` -- the ``VQFRv1`` and ``VQFRv2`` networks built from those blocks (used by ``restorers/vqfr.py``).
* ``modulated_deform_conv`` -- modulated deformable convolution (DCNv2) on ``torchvision.ops.deform_conv2d``, with
  the offset/mask layout of the BasicSR/VQFR ``DCNv2Pack`` checkpoints.
* ``difface_unet``, ``swinir`` -- DifFace's diffusion UNet and SwinIR estimator (used by ``restorers/difface.py``).
* ``stylegan2_clean`` -- StyleGAN2 "clean" modulated convolutions and GFPGAN's SFT-conditioned generator
  (used by ``restorers/gfpgan.py``).
* ``codeformer_blocks`` -- CodeFormer's VQGAN block lists (built from ``vqfr_blocks``), code transformer layer,
  fusion block and AdaIN (used by ``restorers/codeformer.py``).
"""
