"""Random walk of CAMs over boundary-derived affinities, and the labels from it
(docs/refinement.md#random-walk).

IRNet builds the dense (hw)² transition matrix and squares it 8 times (408 s and > 3 GB for one
500×375 image on 2 CPU cores). The walk only needs x·T^(2^n), so `method="sparse"` applies the
sparse T (≈ 66 non-zeros per row for radius 5) 2^n times to the K maps instead: the same result
to float tolerance (closer to exact, in fact: it runs in float64), in 0.2–0.7 s and ≈ 45 MB.
`method="dense"` is the official float32 computation, kept as the reference for small images.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse
import torch
import torch.nn.functional as F

from vwe.refine.path_index import PathIndex

ArrayLike = np.ndarray | torch.Tensor


def _numpy(x: ArrayLike) -> np.ndarray:
    """An array or tensor as a float32 numpy array (a view when it already is one)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def path_affinity(boundary_flat: np.ndarray, path_index: PathIndex) -> np.ndarray:
    """a = 1 − max boundary on the path of each pair: (n_dirs, n_src) (docs/refinement.md#losses,
    docs/refinement.md#random-walk step 3)."""
    groups = [boundary_flat[idx].max(axis=1) for idx in path_index.path_indices]
    return 1.0 - np.concatenate(groups, axis=0)


def walk_pairs(edge: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of real pixels and their affinities: (src, dst, a), flat indices into h·w.

    The edge map is padded with 1.0 (left r, right r, top 0, bottom r) as IRNet does, so pairs near
    the border see the padding as a boundary; pairs touching padding are dropped (they are cropped
    away in the dense version). Each unordered pair appears once (docs/refinement.md#random-walk
    step 3).
    """
    h, w = edge.shape
    padded = np.pad(edge, ((0, radius), (radius, radius)), constant_values=1.0)
    index = PathIndex(radius, padded.shape)
    aff = path_affinity(padded.reshape(-1), index)  # (n_dirs, n_src)
    real = np.full(padded.shape, -1, dtype=np.int64)  # padded position → real flat index
    real[:h, radius : radius + w] = np.arange(h * w).reshape(h, w)
    real = real.reshape(-1)
    src = np.broadcast_to(real[index.src_indices][None, :], aff.shape)
    dst = real[index.dst_indices]
    keep = (src >= 0) & (dst >= 0)
    return src[keep], dst[keep], aff[keep]


def _check_inputs(cams: np.ndarray, edge: np.ndarray, radius: int) -> None:
    """Shape checks shared by both methods (programming errors)."""
    if cams.ndim != 3 or edge.shape != cams.shape[1:]:
        raise ValueError(f"cams must be (K,h,w) and edge (h,w); got {cams.shape}, {edge.shape}")
    if radius < 2:
        raise ValueError(f"radius must be >= 2, got {radius}")
    if edge.size and (edge.min() < 0 or edge.max() > 1):
        raise ValueError(f"edge must be probabilities in [0, 1], got {edge.min()}..{edge.max()}")


def dense_transition(edge: np.ndarray, beta: float, radius: int) -> np.ndarray:
    """T = A^∘β / column sums as a dense (hw, hw) float32 matrix (docs/refinement.md#random-walk
    step 3). Small images only."""
    h, w = edge.shape
    src, dst, aff = walk_pairs(edge, radius)
    affinity = np.eye(h * w, dtype=np.float32)  # diag = 1, float32 as in IRNet
    affinity[src, dst] = aff
    affinity[dst, src] = aff
    scaled = affinity**beta
    return scaled / scaled.sum(axis=0, keepdims=True)


def sparse_step_matrix(edge: np.ndarray, beta: float, radius: int) -> scipy.sparse.csr_matrix:
    """Tᵀ = D⁻¹A^∘β in CSR float64, so one step of the walk is Y ← Tᵀ·Y with Y = xᵀ (hw, K).

    A is symmetric, so Tᵀ is A^∘β with each row i divided by the column sum c_i. float64 costs no
    time here (the product is bound by index reads); the walk's output is within 1e-7 relative of a
    float64 brute-force reference, the official float32 squaring within ~1.5e-4.
    """
    n = edge.size
    src, dst, aff = walk_pairs(edge.astype(np.float64), radius)
    diag = np.arange(n)
    rows = np.concatenate([src, dst, diag])
    cols = np.concatenate([dst, src, diag])
    vals = np.concatenate([aff, aff, np.ones(n)]) ** beta
    matrix = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(n, n))
    col_sums = np.asarray(matrix.sum(axis=0)).reshape(-1)
    matrix.data /= np.repeat(col_sums, np.diff(matrix.indptr))  # row i / c_i
    return matrix


def _walk_dense(x: np.ndarray, edge: np.ndarray, beta: float, exp_times: int,
                radius: int) -> np.ndarray:
    """x · T^(2^n) by repeated squaring of the dense T, as the official code does."""
    trans = dense_transition(edge, beta, radius)
    for _ in range(exp_times):
        trans = trans @ trans
    return x @ trans


def walk_scipy(x: np.ndarray, step: scipy.sparse.csr_matrix, steps: int) -> np.ndarray:
    """x · T^steps on the CPU: Y ← Tᵀ·Y for Y = xᵀ (hw, K), float64, scipy CSR.

    Single-threaded: 0.4–0.5 s for 94×125 whether or not other processes share the cores, while
    torch's 2-thread CSR product takes 0.12 s on idle cores but 3–4 s on busy ones (one thread
    barrier per step).
    """
    state = np.ascontiguousarray(x.T)
    for _ in range(steps):
        state = step @ state
    return state.T


def walk_torch(x: np.ndarray, step: scipy.sparse.csr_matrix, steps: int,
               device: torch.device) -> np.ndarray:
    """x · T^steps with a torch sparse CSR tensor on `device` (meant for GPUs), float64."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        matrix = torch.sparse_csr_tensor(
            torch.from_numpy(step.indptr.astype(np.int64)),
            torch.from_numpy(step.indices.astype(np.int64)),
            torch.from_numpy(step.data),
            size=step.shape,
            check_invariants=False,  # built by scipy, sorted and in range
        ).to(device)
    state = torch.from_numpy(np.ascontiguousarray(x.T)).to(device)  # (hw, K)
    for _ in range(steps):
        state = matrix @ state
    return state.T.cpu().numpy()


def random_walk(cams: ArrayLike, edge: ArrayLike, beta: float = 10, exp_times: int = 8,
                radius: int = 5, method: str = "sparse",
                device: str | torch.device | None = None) -> np.ndarray:
    """IRNet's `propagate_to_edge`: (cams ⊙ (1 − edge)) · T^(2^exp_times), shape (K, h, w).

    `cams` (K, h, w) and `edge` (h, w) (boundary probabilities in [0, 1]) live on the stride-4 grid
    (docs/refinement.md#random-walk step 3). "sparse" multiplies by the sparse transition
    2^exp_times times on `device` (default: the device of `cams` if it is a tensor, else the CPU;
    scipy on the CPU, torch CSR elsewhere); "dense" is the official float32 (hw)² computation, for
    small images.
    """
    if device is None and isinstance(cams, torch.Tensor) and cams.device.type != "cpu":
        device = cams.device
    cams_np, edge_np = _numpy(cams), _numpy(edge)
    _check_inputs(cams_np, edge_np, radius)
    k, h, w = cams_np.shape
    x = (cams_np * (1.0 - edge_np)[None]).reshape(k, h * w)  # float32 as in IRNet
    if method == "dense":
        out = _walk_dense(x, edge_np, beta, exp_times, radius)
    elif method == "sparse":
        step = sparse_step_matrix(edge_np, beta, radius)
        x = (cams_np.astype(np.float64) * (1.0 - edge_np.astype(np.float64))[None])
        device = torch.device(device or "cpu")
        if device.type == "cpu":
            out = walk_scipy(x.reshape(k, h * w), step, 2**exp_times)
        else:
            out = walk_torch(x.reshape(k, h * w), step, 2**exp_times, device)
    else:
        raise ValueError(f"method must be 'sparse' or 'dense', got {method!r}")
    return np.ascontiguousarray(out, dtype=np.float32).reshape(k, h, w)


def upsample_walk(rw: ArrayLike, image_size: tuple[int, int]) -> np.ndarray:
    """Walk maps ×4 bilinear (align_corners=False), cropped to the image, / global max
    (docs/refinement.md#random-walk step 4).

    The maximum is over all classes and pixels, not per class. All-zero maps stay zero (IRNet
    would divide by 0). Keep the result to sweep background thresholds without re-walking.
    """
    maps = torch.as_tensor(_numpy(rw))
    if maps.ndim != 3:
        raise ValueError(f"rw must be (K,h,w), got {tuple(maps.shape)}")
    height, width = image_size
    if maps.shape[0] == 0:
        return np.zeros((0, height, width), dtype=np.float32)
    up = F.interpolate(maps[None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    up = up[:, :height, :width]
    peak = up.max()
    if peak > 0:
        up = up / peak
    return up.numpy()


def walked_cam_scores(rw: ArrayLike, plane: ArrayLike, image_size: tuple[int, int]
                      ) -> np.ndarray:
    """Each class's walked CAM divided by the walked plane of ones, ×4 bilinear, cropped: the
    boundary-weighted mean of the CAM scores the walk gathers at each pixel, so on the CAM's own
    scale (docs/refinement.md#walked-background-plane).

    `rw` (K, h, w) walks cams ⊙ (1 − boundary); `plane` (1, h, w) walks (1 − boundary) alone. A
    constant CAM c gives c everywhere. Where the plane is ~0 (every neighbour a boundary) the
    divisor is floored at 1e-6.
    """
    maps = torch.as_tensor(_numpy(rw))
    ones = torch.as_tensor(_numpy(plane))
    if maps.ndim != 3 or ones.shape != (1, *maps.shape[1:]):
        raise ValueError(f"rw must be (K,h,w) and plane (1,h,w); got {tuple(maps.shape)}, "
                         f"{tuple(ones.shape)}")
    height, width = image_size
    both = F.interpolate(torch.cat([maps, ones])[None], scale_factor=4, mode="bilinear",
                         align_corners=False)[0][:, :height, :width]
    return (both[:-1] / both[-1:].clamp_min(1e-6)).numpy()


def walk_scores(rw: ArrayLike, plane: ArrayLike | None, image_size: tuple[int, int]
                ) -> np.ndarray:
    """The maps a background threshold is compared with (K, H, W): walked CAM scores given the
    walked plane, else IRNet's upsampled walk divided by its maximum."""
    if plane is None:
        return upsample_walk(rw, image_size)
    return walked_cam_scores(rw, plane, image_size)


def walk_to_labels(rw_up: np.ndarray, keys: np.ndarray,
                   bg_thres: float | np.ndarray = 0.25) -> np.ndarray:
    """Constant background plane `bg_thres` + argmax, mapped through [0, keys+1]
    (docs/refinement.md#random-walk step 5). A (K,) `bg_thres` gives each map its own: the
    maps are divided by it and compared with a plane of ones
    (docs/method.md#class-background-scores).

    `keys` are 0-based class indices of the K maps. Returns (H, W) uint8 with no ignore label.
    """
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    if rw_up.ndim != 3 or rw_up.shape[0] != keys.size:
        raise ValueError(f"rw_up must be (K,H,W) with K = len(keys); got {rw_up.shape}, {keys}")
    if keys.size and (keys.min() < 0 or keys.max() > 253):
        raise ValueError(f"keys must be class indices in [0, 253], got {keys}")
    if np.ndim(bg_thres):
        per_map = np.asarray(bg_thres, np.float32).reshape(-1)
        if per_map.size != keys.size:
            raise ValueError(f"{per_map.size} thresholds for {keys.size} maps")
        rw_up, bg_thres = rw_up.astype(np.float32) / per_map[:, None, None], 1.0
    bg = np.full((1, *rw_up.shape[1:]), bg_thres, dtype=np.float32)
    index = np.argmax(np.concatenate([bg, rw_up.astype(np.float32)]), axis=0)
    keys_ext = np.concatenate([[0], keys + 1]).astype(np.uint8)
    return keys_ext[index]


def propagated_to_label(rw: ArrayLike, keys: np.ndarray, image_size: tuple[int, int],
                        bg_thres: float = 0.25) -> np.ndarray:
    """Semantic pseudo label (H, W) uint8 from stride-4 walk maps (docs/refinement.md#random-walk
    steps 4–5)."""
    return walk_to_labels(upsample_walk(rw, image_size), keys, bg_thres)
