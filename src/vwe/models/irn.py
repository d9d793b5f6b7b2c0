"""IRNet: boundary and displacement branches on a frozen backbone, its targets and losses.

Network of docs/refinement.md#network, affinity targets of docs/refinement.md#training-targets,
losses of docs/refinement.md#losses and the inference edge map of docs/refinement.md#random-walk
step 1. The losses return sums and counts separately so that a DDP run can all-reduce them before
dividing, which reproduces IRNet's whole-batch normalisation (docs/refinement.md#losses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vwe.models.backbone import CAM_DILATIONS, CAM_STRIDES, build_backbone
from vwe.refine.path_index import PathIndex

EPS = 1e-5  # IRNet's epsilon in the logs and the loss denominators (docs/refinement.md#losses)


class MeanShift(nn.Module):
    """Identity in training; subtracts the stored mean displacement (2,) in eval
    (docs/refinement.md#network, docs/refinement.md#displacement-mean)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(2))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return x
        return x - self.running_mean.view(1, 2, 1, 1)


def _branch(in_ch: int, out_ch: int, groups: int, upscale: float = 1) -> nn.Sequential:
    """1×1 conv (no bias) → GroupNorm → ×upscale bilinear → ReLU, IRNet's order
    (docs/refinement.md#network). An upscale below 1 (a timm stem level at stride 2) is an
    average pool that rounds up, as the strided convs do."""
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 1, bias=False),
                               nn.GroupNorm(groups, out_ch)]
    if upscale > 1:
        layers.append(nn.Upsample(scale_factor=upscale, mode="bilinear", align_corners=False))
    elif upscale < 1:
        layers.append(nn.AvgPool2d(round(1 / upscale), ceil_mode=True))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _crop_to(x: Tensor, ref: Tensor) -> Tensor:
    """Crop x's bottom/right to ref's spatial size."""
    return x[..., : ref.shape[2], : ref.shape[3]]


class IRNet(nn.Module):
    """Frozen backbone (output stride 16: ResNet with layer4 stride 1, or a timm CNN) with
    IRNet's two branches (docs/refinement.md#network).

    `forward` returns (edge logits B (N,1,h,w), displacement D (N,2,h,w) or None) at stride 4.
    Displacement channel 0 is the row (y) offset, channel 1 the column (x) offset.
    """

    def __init__(self, backbone: str = "resnet50", pretrained: str = "none",
                 with_displacement: bool = True) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone, strides=CAM_STRIDES, dilations=CAM_DILATIONS,
                                       pretrained=pretrained)
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        channels = list(self.backbone.out_channels)  # stem, layer1..layer4
        strides = list(self.backbone.reductions)  # ResNet: 4, 4, 8, 16, 16
        # Edge branch (fc_edge1..6): 32 ch per stage; stages at /8 and /16 are upsampled to /4.
        self.edge_stages = nn.ModuleList(
            _branch(c, 32, 4, r / 4) for c, r in zip(channels, strides))
        self.edge_classifier = nn.Conv2d(5 * 32, 1, 1, bias=True)
        self.with_displacement = with_displacement
        if with_displacement:
            # levels 0-1 meet at /4, levels 2-4 at /8 (ResNet: upscales 1, 1, 1, 2, 2)
            widths, groups, meet = (64, 128, 256, 256, 256), (8, 16, 16, 16, 16), (4, 4, 8, 8, 8)
            self.disp_stages = nn.ModuleList(
                _branch(c, w, g, r / m)
                for c, w, g, r, m in zip(channels, widths, groups, strides, meet))
            self.disp_deep = _branch(3 * 256, 256, 16, 2)  # fc_dp6: /8 → /4
            self.disp_head = nn.Sequential(  # fc_dp7
                _branch(64 + 128 + 256, 256, 16), nn.Conv2d(256, 2, 1, bias=False), MeanShift())

    @property
    def mean_shift(self) -> MeanShift:
        """The displacement mean subtracted in eval; set `running_mean` after training
        (docs/refinement.md#displacement-mean)."""
        if not self.with_displacement:
            raise AttributeError("this IRNet has no displacement branch")
        return self.disp_head[-1]

    def train(self, mode: bool = True) -> IRNet:
        """Train the branches; the backbone always stays in eval (docs/refinement.md#network)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def features(self, x: Tensor) -> list[Tensor]:
        """Backbone outputs [stem, layer1..layer4], detached: the backbone is frozen
        (docs/refinement.md#network)."""
        with torch.no_grad():
            return [f.detach() for f in self.backbone(x)]

    def edge_logits(self, feats: list[Tensor]) -> Tensor:
        """Boundary logits B (N, 1, h, w) at the stem's resolution (docs/refinement.md#network)."""
        maps = [stage(f) for stage, f in zip(self.edge_stages, feats)]
        maps = [_crop_to(m, maps[1]) for m in maps]
        return self.edge_classifier(torch.cat(maps, dim=1))

    def displacement(self, feats: list[Tensor]) -> Tensor:
        """Displacement field D (N, 2, h, w) at the stem's resolution
        (docs/refinement.md#network)."""
        dp1, dp2, dp3, dp4, dp5 = (stage(f) for stage, f in zip(self.disp_stages, feats))
        deep = torch.cat([dp3, _crop_to(dp4, dp3), _crop_to(dp5, dp3)], dim=1)
        deep = _crop_to(self.disp_deep(deep), dp2)
        return self.disp_head(torch.cat([dp1, dp2, deep], dim=1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        feats = self.features(x)
        disp = self.displacement(feats) if self.with_displacement else None
        return self.edge_logits(feats), disp

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Edge branch at lr, displacement branch at 10·lr, both with weight decay
        (docs/refinement.md#network)."""
        edge = list(self.edge_stages.parameters()) + list(self.edge_classifier.parameters())
        groups = [{"params": edge, "lr": lr, "weight_decay": weight_decay}]
        if self.with_displacement:
            disp = [p for module in (self.disp_stages, self.disp_deep, self.disp_head)
                    for p in module.parameters()]
            groups.append({"params": disp, "lr": 10 * lr, "weight_decay": weight_decay})
        return groups


def edge_map(model: IRNet, image_pair: Tensor, multiple: int = 16, min_size: int = 0) -> Tensor:
    """Boundary probabilities (h, w) = sigmoid(½B₀ + ½·flip(B₁)) for [image, flipped image]
    (docs/refinement.md#random-walk).

    `image_pair` is the normalised (2, 3, H, W) batch. IRNet zero-pads to a fixed 512×512, which
    silently crops larger images; here each side is padded to the next multiple of `multiple`
    (and at least `min_size`; min_size=512 reproduces IRNet for images up to 512). The output is
    cropped to (⌈H/4⌉, ⌈W/4⌉), the grid of make_cam's `cam`.
    """
    if image_pair.ndim != 4 or image_pair.shape[:2] != (2, 3):
        raise ValueError(f"image_pair must be (2, 3, H, W), got {tuple(image_pair.shape)}")
    height, width = image_pair.shape[2:]
    pad_h = max(min_size, multiple * math.ceil(height / multiple)) - height
    pad_w = max(min_size, multiple * math.ceil(width / multiple)) - width
    with torch.no_grad():
        feats = model.features(F.pad(image_pair, (0, pad_w, 0, pad_h)))
        logits = model.edge_logits(feats)[:, 0, : math.ceil(height / 4), : math.ceil(width / 4)]
    logits = logits.float()  # under bfloat16 autocast too: the walk raises 1 - edge to beta
    return torch.sigmoid(0.5 * logits[0] + 0.5 * logits[1].flip(-1))


@dataclass
class PathTensors:
    """A PathIndex as tensors on one device, for the training losses
    (docs/refinement.md#pathindex)."""

    size: tuple[int, int]
    radius_floor: int
    directions: Tensor  # (n_dirs, 2) (dy, dx)
    src_indices: Tensor  # (n_src,)
    dst_indices: Tensor  # (n_dirs, n_src)
    path_indices: list[Tensor]  # per group (n_paths_g, len_g, n_src)


def path_tensors(path_index: PathIndex, device: torch.device | str = "cpu") -> PathTensors:
    """Move a PathIndex's arrays to `device` once per training run."""
    def put(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a).to(device)

    return PathTensors(path_index.size, path_index.radius_floor, put(path_index.directions),
                       put(path_index.src_indices), put(path_index.dst_indices),
                       [put(p) for p in path_index.path_indices])


def _tensors(paths: PathIndex | PathTensors, device: torch.device) -> PathTensors:
    """Accept either form; a PathIndex is converted on the fly (fine for tests and one-offs)."""
    return path_tensors(paths, device) if isinstance(paths, PathIndex) else paths


def affinity_from_edge(edge_logits: Tensor, paths: PathIndex | PathTensors) -> Tensor:
    """a_ij = 1 − max over the path of sigmoid(B): (N, n_dirs, n_src)
    (docs/refinement.md#losses)."""
    paths = _tensors(paths, edge_logits.device)
    if tuple(edge_logits.shape[-2:]) != paths.size:
        raise ValueError(f"edge map {tuple(edge_logits.shape[-2:])} != path grid {paths.size}")
    boundary = torch.sigmoid(edge_logits).reshape(edge_logits.shape[0], -1)
    groups = []
    for index in paths.path_indices:
        # index_select and max(dim) as IRNet: their backward is a scatter of the picked
        # elements, where indexing and amax backward sweep the whole (N, paths, len, src)
        # tensor (docs/performance.md#training-steps)
        values = boundary.index_select(1, index.reshape(-1)).view(boundary.shape[0],
                                                                   *index.shape)
        groups.append(values.max(dim=2).values)  # (N, n_paths_g, n_src)
    return 1.0 - torch.cat(groups, dim=1)


def affinity_targets(label: Tensor | np.ndarray, paths: PathIndex | PathTensors,
                     ignore_index: int = 255) -> dict[str, Tensor]:
    """bg_pos, fg_pos, neg (N, n_dirs, n_src) float32 from reduced labels (N, h, w)
    (docs/refinement.md#training-targets).

    IRNet tests validity with label < 21 (VOC); here any value but `ignore_index` is valid,
    which is the same on VOC labels and also works for other class counts.
    """
    label = torch.as_tensor(label)
    label = label[None] if label.ndim == 2 else label
    paths = _tensors(paths, label.device)
    if tuple(label.shape[-2:]) != paths.size:
        raise ValueError(f"label {tuple(label.shape[-2:])} != path grid {paths.size}")
    flat = label.reshape(label.shape[0], -1).long()
    src = flat[:, paths.src_indices][:, None, :]  # a = label[src], (N, 1, n_src)
    dst = flat[:, paths.dst_indices.reshape(-1)].view(flat.shape[0], *paths.dst_indices.shape)
    valid = (src != ignore_index) & (dst != ignore_index)
    same = valid & (src == dst)
    return {"bg_pos": (same & (src == 0)).float(), "fg_pos": (same & (src > 0)).float(),
            "neg": (valid & (src != dst)).float()}


def pair_displacement(displacement: Tensor, paths: PathIndex | PathTensors) -> Tensor:
    """D(src) − D(dst) for every pair: (N, 2, n_dirs, n_src) (docs/refinement.md#losses)."""
    paths = _tensors(paths, displacement.device)
    flat = displacement.reshape(*displacement.shape[:2], -1)
    src = flat.index_select(2, paths.src_indices)[:, :, None, :]
    dst = flat.index_select(2, paths.dst_indices.reshape(-1)).view(*flat.shape[:2],
                                                                   *paths.dst_indices.shape)
    return src - dst


def irn_loss_terms(edge_logits: Tensor, displacement: Tensor | None, targets: dict[str, Tensor],
                   paths: PathIndex | PathTensors) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Per-term loss sums and target counts over the batch (docs/refinement.md#losses); see
    `irn_total_loss`.

    Sums: bg_pos, fg_pos (of −log(a+ε)), neg (of −log(1+ε−a)), dp_fg (of |D(src)−D(dst)−(dy,dx)|
    over both components), dp_bg (of |D(src)−D(dst)|). Counts: bg_pos, fg_pos, neg (no grad).
    """
    paths = _tensors(paths, edge_logits.device)
    aff = affinity_from_edge(edge_logits, paths)
    bg_pos, fg_pos, neg = (targets[k].to(aff.dtype) for k in ("bg_pos", "fg_pos", "neg"))
    pos_loss = -torch.log(aff + EPS)
    neg_loss = -torch.log(1.0 + EPS - aff)
    sums = {"bg_pos": (bg_pos * pos_loss).sum(), "fg_pos": (fg_pos * pos_loss).sum(),
            "neg": (neg * neg_loss).sum()}
    if displacement is None:
        sums["dp_fg"] = sums["dp_bg"] = aff.new_zeros(())
    else:
        pair = pair_displacement(displacement, paths)  # (N, 2, n_dirs, n_src)
        target = paths.directions.t().to(pair.dtype)[None, :, :, None]  # (1, 2, n_dirs, 1)
        sums["dp_fg"] = ((pair - target).abs() * fg_pos[:, None]).sum()
        sums["dp_bg"] = (pair.abs() * bg_pos[:, None]).sum()
    counts = {"bg_pos": bg_pos.sum().detach(), "fg_pos": fg_pos.sum().detach(),
              "neg": neg.sum().detach()}
    return sums, counts


def irn_total_loss(sums: dict[str, Tensor], counts: dict[str, Tensor],
                   scale: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """total = (L_pos + L_neg)/2 + (L_dfg + L_dbg)/2 with IRNet's normalisation
    (docs/refinement.md#losses).

    Returns the total and the four terms (pos, neg, dp_fg, dp_bg). With DDP, all-reduce
    (sum) the counts and pass this rank's sums with scale = world size: DDP averages gradients
    over ranks, so the gradient then equals that of the loss over the global batch. For logging,
    all-reduce detached sums as well and call again with scale = 1.
    """
    terms = {
        "pos": 0.5 * sums["bg_pos"] / (counts["bg_pos"] + EPS)
        + 0.5 * sums["fg_pos"] / (counts["fg_pos"] + EPS),
        "neg": sums["neg"] / (counts["neg"] + EPS),
        "dp_fg": sums["dp_fg"] / (2 * counts["fg_pos"] + EPS),
        "dp_bg": sums["dp_bg"] / (2 * counts["bg_pos"] + EPS),
    }
    terms = {k: scale * v for k, v in terms.items()}
    total = (terms["pos"] + terms["neg"]) / 2 + (terms["dp_fg"] + terms["dp_bg"]) / 2
    return total, terms
