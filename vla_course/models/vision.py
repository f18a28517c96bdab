"""Image encoder: camera frames -> a few tokens each.

PaliGemma encodes a 224x224 image into 256 tokens with a 400M-parameter ViT
(SigLIP). We have 96x96 frames from two cameras and one CPU core, so we use a
small conv stem instead. Its convolutions already know that neighbouring
pixels belong together, which a ViT has to learn from lots of data::

    (3, 96, 96) ─conv 4x4 /4─► (c1, 24, 24) ─conv 3x3 /2─► (c2, 12, 12) ─conv 3x3 /2─► (c2, 6, 6)
                ─avg-pool─► (c2, g, g) ─linear─► g*g tokens of size `width`

Each token also gets a learned embedding for its grid cell and for its
camera, so the transformer knows where and through which camera it looked.
Position questions ("is the red cube left or right ?") need that. The two
cameras share the conv weights.

**Keypoint tokens** (optional, ``keypoints=K``; pi0 uses them, the VLM does not). A grid token
knows *that* a cube is somewhere in its 24x24-pixel cell; a grasp needs to know *where* to within
a few millimetres. A spatial softmax (Levine et al. 2016; robomimic and Diffusion Policy use it)
turns each of K learned feature maps into the expected (x, y) of its activation, with sub-cell
precision, and each keypoint becomes one more token::

    feature map (c, n, n) ─1x1 conv─► K maps ─softmax over n*n cells─► K expected (x, y) in [-1, 1]
                          ─linear(2 → width) + keypoint embedding─► K tokens

**Instruction keypoints** (optional, ``instruction_keypoints=Q``). The K maps above are the same whatever
the instruction says, so "where is *the blue* cube" is left to the transformer, which sees the image
only through 4x4 grid cells and those K points. An instruction keypoint's 1x1 filter is computed from
the instruction (a linear map of its mean word embedding), so its map lights up where the named
object is, and its token says where that is, in each camera::

    instruction ─mean word embedding─► linear ─► Q filters (c,)  ┐
    feature map (c, n, n) ─────────────────── dot product per cell ┴─► Q maps ─softmax─► Q (x, y) ─► Q tokens

It is one attention head from the instruction onto the 24x24 map: a miniature stand-in for what
PaliGemma gets from attending over 256 image patches, which the 4x4 grid cannot give.

Inputs follow LeRobot conventions. Either ``uint8 (B, H, W, 3)`` (as a camera
or the sim gives them) or ``float (B, 3, H, W)`` in [0, 1] (as a
``LeRobotDataset`` gives them). Any other shape raises a ``ValueError`` that
names the expected shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def to_float_chw(images: Tensor, image_size: int) -> Tensor:
    """Bring camera frames to float (B, 3, S, S) in [-1, 1].

    It accepts uint8 or float frames, channels-last (B, S, S, 3) or
    channels-first (B, 3, S, S). Float input is taken to be in [0, 1].
    """
    s = image_size
    if not isinstance(images, Tensor):
        images = torch.as_tensor(images)
    if images.ndim == 4 and tuple(images.shape[1:]) == (s, s, 3):
        images = images.permute(0, 3, 1, 2)
    elif not (images.ndim == 4 and tuple(images.shape[1:]) == (3, s, s)):
        raise ValueError(
            f"expected images of shape (B, {s}, {s}, 3) (uint8 or float) or (B, 3, {s}, {s}) (float in [0, 1]), "
            f"got shape {tuple(images.shape)}"
        )
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    elif images.is_floating_point():
        images = images.float()
        if images.numel() and float(images.max()) > 1.5:  # a classic silent bug: 0..255 floats
            raise ValueError("float images must be in [0, 1]; got values up to "
                             f"{float(images.max()):.1f} (pass uint8, or divide by 255)")
    else:
        raise ValueError(f"expected uint8 or float images, got dtype {images.dtype}")
    return images * 2.0 - 1.0


class ImageEncoder(nn.Module):
    """Small CNN that turns each camera frame into ``grid*grid`` tokens.

    Args:
        width: token size (the backbone's width).
        num_cameras: how many cameras (each gets its own learned camera embedding).
        image_size: expected square frame size (96 in the course).
        grid: tokens per side (4 gives 16 tokens per camera).
        channels: conv channels (c1, c2).
        keypoints: keypoint tokens per camera (0: none).
        keypoint_layer: which conv's output the keypoints read (1: 24x24 map, 2: 12x12 map, 3: 6x6 map).
        instruction_keypoints: instruction keypoint tokens per camera (0: none); they read ``keypoint_layer``
            too. (Their weights are named ``kq_*``: keypoints from a query.)
    """

    def __init__(self, width: int, num_cameras: int = 2, image_size: int = 96, grid: int = 4,
                 channels: tuple[int, int] = (32, 64), keypoints: int = 0, keypoint_layer: int = 2,
                 instruction_keypoints: int = 0):
        super().__init__()
        if image_size % 16 != 0:
            raise ValueError(f"image_size must be a multiple of 16, got {image_size}")
        c1, c2 = channels
        self.image_size, self.grid, self.num_cameras = image_size, grid, num_cameras
        self.stem = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=4, stride=4),
            nn.GELU(),
            nn.Conv2d(c1, c2, kernel_size=3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(c2, c2, kernel_size=3, stride=2, padding=1),
            nn.GELU(),
        )
        self.proj = nn.Linear(c2, width)
        self.pos_emb = nn.Parameter(torch.randn(grid * grid, width) * 0.02)
        self.cam_emb = nn.Parameter(torch.randn(num_cameras, width) * 0.02)
        self.keypoints, self.keypoint_layer, self.instruction_keypoints = 0, keypoint_layer, 0
        if keypoints:
            self.add_keypoints(keypoints, keypoint_layer)
        if instruction_keypoints:
            self.add_instruction_keypoints(instruction_keypoints)

    @property
    def tokens_per_camera(self) -> int:
        return self.grid * self.grid + self.keypoints + self.instruction_keypoints

    def add_keypoints(self, keypoints: int, layer: int = 2, temperature: float = 1.0) -> None:
        """Add ``keypoints`` spatial-softmax tokens per camera, read from conv ``layer``'s output (new weights;
        the conv stem and the grid tokens are kept, so a pretrained encoder keeps what it knows).
        ``temperature`` is the softmax's starting temperature (it is learned): a small one starts the maps
        peaked, so each keypoint starts out following the strongest response of its map."""
        if keypoints < 1 or layer not in (1, 2, 3):
            raise ValueError(f"need keypoints >= 1 and layer in (1, 2, 3), got {keypoints}, {layer}")
        width, c_in = self.proj.out_features, self.stem[2 * layer - 2].out_channels
        self.keypoints, self.keypoint_layer = keypoints, layer
        self.kp_maps = nn.Conv2d(c_in, keypoints, kernel_size=1)
        self.kp_log_temp = nn.Parameter(torch.tensor(math.log(temperature)))  # softmax temperature, learned
        self.kp_proj = nn.Linear(2, width)
        self.kp_emb = nn.Parameter(torch.randn(keypoints, width) * 0.02)

    def add_instruction_keypoints(self, keypoints: int, temperature: float = 1.0) -> None:
        """Add ``keypoints`` instruction keypoint tokens per camera (new weights), read from the map of
        ``keypoint_layer``. Their filters come from the instruction (see the module docstring)."""
        if keypoints < 1:
            raise ValueError(f"need instruction keypoints >= 1, got {keypoints}")
        width, c_in = self.proj.out_features, self.stem[2 * self.keypoint_layer - 2].out_channels
        self.instruction_keypoints = keypoints
        self.kq_filters = nn.Linear(width, keypoints * c_in)  # instruction -> Q filters of c_in channels
        self.kq_log_temp = nn.Parameter(torch.tensor(math.log(temperature)))
        self.kq_proj = nn.Linear(2, width)
        self.kq_emb = nn.Parameter(torch.randn(keypoints, width) * 0.02)

    def spatial_softmax(self, feat: Tensor) -> Tensor:
        """(N, c, n, n) feature map -> (N, K, 2) expected (x, y) of each keypoint map, in [-1, 1]."""
        return soft_argmax(self.kp_maps(feat) * torch.exp(-self.kp_log_temp))

    def instruction_softmax(self, feat: Tensor, query: Tensor) -> Tensor:
        """(N, c, n, n) feature map and (N, width) instruction -> (N, Q, 2) expected (x, y) of each
        instruction keypoint's map (the map is the feature map dotted with a filter made from the instruction)."""
        filters = self.kq_filters(query).view(query.shape[0], self.instruction_keypoints, -1)  # (N, Q, c)
        logits = torch.einsum("nchw,nqc->nqhw", feat, filters) * torch.exp(-self.kq_log_temp)
        return soft_argmax(logits)

    def set_grid(self, grid: int) -> None:
        """Change the number of tokens per side, keeping the learned conv weights.

        The stem's native output is 6x6 for a 96-pixel frame; ``grid=4`` average-pools it to 4x4 (cheap,
        enough for VQA), ``grid=6`` keeps every cell (finer positions, which grasping needs). The grid-cell
        embeddings are resized by bilinear interpolation, so a pretrained encoder starts where it was.
        """
        if grid == self.grid:
            return
        old = self.pos_emb.data.T.reshape(1, -1, self.grid, self.grid)
        new = F.interpolate(old, size=(grid, grid), mode="bilinear", align_corners=True)
        self.pos_emb = nn.Parameter(new.reshape(-1, grid * grid).T.contiguous())
        self.grid = grid

    def forward(self, images: list[Tensor], query: Tensor | None = None) -> Tensor:
        """``images``: one tensor per camera, each (B, ...) as in :func:`to_float_chw`; ``query`` (B, width):
        the instruction (its mean word embedding), needed only with instruction keypoints.
        It returns (B, num_cameras * tokens_per_camera, width): per camera the grid tokens, then the keypoints,
        then the instruction keypoints."""
        if len(images) != self.num_cameras:
            raise ValueError(f"expected {self.num_cameras} camera images, got {len(images)}")
        if self.instruction_keypoints and query is None:
            raise ValueError("this encoder has instruction keypoints: pass the instruction's embedding as query")
        x = torch.cat([to_float_chw(im, self.image_size) for im in images], 0)  # (n_cam*B, 3, S, S)
        bsz = x.shape[0] // self.num_cameras
        feat, kp, kq = x, None, None
        for i, layer in enumerate(self.stem):
            feat = layer(feat)
            if i == 2 * self.keypoint_layer - 1:  # after that conv's GELU
                if self.keypoints:
                    kp = self.spatial_softmax(feat)
                if self.instruction_keypoints:
                    kq = self.instruction_softmax(feat, query.repeat(self.num_cameras, 1))
        if feat.shape[-1] != self.grid:
            feat = F.adaptive_avg_pool2d(feat, self.grid)
        tok = self.proj(feat.flatten(2).transpose(1, 2))  # (n_cam*B, g*g, width)
        tok = tok.view(self.num_cameras, bsz, -1, tok.shape[-1]) + self.pos_emb
        if kp is not None:
            kp_tok = (self.kp_proj(kp) + self.kp_emb).view(self.num_cameras, bsz, self.keypoints, -1)
            tok = torch.cat([tok, kp_tok], 2)
        if kq is not None:
            # kept for a localisation loss (Pi0Config.localization_weight): (B, cameras, Q, 2)
            self.instruction_xy = kq.view(self.num_cameras, bsz, self.instruction_keypoints, 2).transpose(0, 1)
            kq_tok = (self.kq_proj(kq) + self.kq_emb).view(self.num_cameras, bsz, self.instruction_keypoints, -1)
            tok = torch.cat([tok, kq_tok], 2)
        tok = tok + self.cam_emb[:, None, None, :]
        return tok.permute(1, 0, 2, 3).reshape(bsz, -1, tok.shape[-1])


def soft_argmax(logits: Tensor) -> Tensor:
    """(N, K, n, n) logits -> (N, K, 2): the expected (x, y) in [-1, 1] under a softmax over the n*n cells."""
    n_, k, h, w = logits.shape
    prob = torch.softmax(logits.flatten(2), -1).view(n_, k, h, w)
    ys = torch.linspace(-1, 1, h, device=logits.device, dtype=logits.dtype)
    xs = torch.linspace(-1, 1, w, device=logits.device, dtype=logits.dtype)
    return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], -1)
