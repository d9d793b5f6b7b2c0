"""Random walk of CAMs over boundary-derived affinities, and the labels from it (irn.md §6).

IRNet builds the dense (hw)² transition matrix and squares it 8 times (408 s and > 3 GB for one
500×375 image on 2 CPU cores). The walk only needs x·T^(2^n), so `method="sparse"` applies the
sparse T (≈ 69 non-zeros per row for radius 5) 2^n times to the K maps instead: the same result
to float tolerance, in about a second. `method="dense"` is the official computation, kept as the
reference for small images.
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
    """A float32 numpy copy-or-view of an array or tensor."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def path_affinity(boundary_flat: np.ndarray, path_index: PathIndex) -> np.ndarray:
    """a = 1 − max boundary on the path of each pair: (n_dirs, n_src) (§5.4, §6 step 3)."""
    groups = [boundary_flat[idx].max(axis=1) for idx in path_index.path_indices]
    return 1.0 - np.concatenate(groups, axis=0)


def walk_pairs(edge: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of real pixels and their affinities: (src, dst, a), flat indices into h·w.

    The edge map is padded with 1.0 (left r, right r, top 0, bottom r) as IRNet does, so pairs
    near the border see the padding as a boundary; pairs touching padding are dropped (they are
    cropped away in the dense version). Each unordered pair appears once (§6 step 3).
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
    return src[keep], dst[keep], aff[keep].astype(np.float32)


def _check_inputs(cams: np.ndarray, edge: np.ndarray, radius: int) -> None:
    """Shape checks shared by both methods (programming errors)."""
    if cams.ndim != 3 or edge.shape != cams.shape[1:]:
        raise ValueError(f"cams must be (K,h,w) and edge (h,w); got {cams.shape}, {edge.shape}")
    if radius < 2:
        raise ValueError(f"radius must be >= 2, got {radius}")


def dense_transition(edge: np.ndarray, beta: float, radius: int) -> np.ndarray:
    """T = A^∘β / column sums as a dense (hw, hw) float32 matrix (§6 step 3). Small images only."""
    h, w = edge.shape
    src, dst, aff = walk_pairs(edge, radius)
    affinity = np.eye(h * w, dtype=np.float32)  # diag = 1
    affinity[src, dst] = aff
    affinity[dst, src] = aff
    scaled = affinity**beta
    return scaled / scaled.sum(axis=0, keepdims=True)


def sparse_step_matrix(edge: np.ndarray, beta: float, radius: int) -> scipy.sparse.csr_matrix:
    """Tᵀ = D⁻¹A^∘β in CSR, so that one step of the walk is Y ← Tᵀ·Y with Y = xᵀ (hw, K).

    A is symmetric, so Tᵀ is A^∘β with each row i divided by the column sum c_i.
    """
    n = edge.size
    src, dst, aff = walk_pairs(edge, radius)
    diag = np.arange(n)
    rows = np.concatenate([src, dst, diag])
    cols = np.concatenate([dst, src, diag])
    vals = np.concatenate([aff, aff, np.ones(n, dtype=np.float32)]) ** beta
    matrix = scipy.sparse.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(n, n))
    col_sums = np.asarray(matrix.sum(axis=0), dtype=np.float32).reshape(-1)
    matrix.data /= np.repeat(col_sums, np.diff(matrix.indptr))  # row i / c_i
    return matrix


def _walk_dense(x: np.ndarray, edge: np.ndarray, beta: float, exp_times: int,
                radius: int) -> np.ndarray:
    """x · T^(2^n) by repeated squaring of the dense T, as the official code does."""
    trans = dense_transition(edge, beta, radius)
    for _ in range(exp_times):
        trans = trans @ trans
    return x @ trans


def _walk_sparse(x: np.ndarray, step: scipy.sparse.csr_matrix, steps: int,
                 device: torch.device) -> np.ndarray:
    """Apply the sparse step `steps` times: torch CSR × dense (hw, K) on `device`.

    torch's CSR product is about 2× faster than scipy's on 2 CPU cores and also runs on a GPU.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        matrix = torch.sparse_csr_tensor(
            torch.from_numpy(step.indptr.astype(np.int64)),
            torch.from_numpy(step.indices.astype(np.int64)),
            torch.from_numpy(step.data),
            size=step.shape,
            check_invariants=False,  # built by scipy, sorted and in range
        ).to(device)
    state = torch.from_numpy(np.ascontiguousarray(x.T)).to(device)  # Y = xᵀ (hw, K)
    for _ in range(steps):
        state = matrix @ state
    return state.T.cpu().numpy()


def random_walk(cams: ArrayLike, edge: ArrayLike, beta: float = 10, exp_times: int = 8,
                radius: int = 5, method: str = "sparse",
                device: str | torch.device | None = None) -> np.ndarray:
    """IRNet's `propagate_to_edge`: (cams ⊙ (1 − edge)) · T^(2^exp_times), shape (K, h, w).

    `cams` (K, h, w) and `edge` (h, w) (boundary probabilities in [0, 1]) live on the stride-4
    grid (§6 step 3). "sparse" multiplies by the sparse transition 2^exp_times times (torch CSR) on
    `device`, by default the device of `cams` if it is a tensor, else the CPU; "dense" is the
    official (hw)² computation (CPU, numpy), for verification on small images.
    """
    if device is None and isinstance(cams, torch.Tensor) and cams.device.type != "cpu":
        device = cams.device
    cams_np, edge_np = _numpy(cams), _numpy(edge)
    _check_inputs(cams_np, edge_np, radius)
    k, h, w = cams_np.shape
    x = (cams_np * (1.0 - edge_np)[None]).reshape(k, h * w)
    if method == "dense":
        out = _walk_dense(x, edge_np, beta, exp_times, radius)
    elif method == "sparse":
        step = sparse_step_matrix(edge_np, beta, radius)
        out = _walk_sparse(x, step, 2**exp_times, torch.device(device or "cpu"))
    else:
        raise ValueError(f"method must be 'sparse' or 'dense', got {method!r}")
    return np.ascontiguousarray(out, dtype=np.float32).reshape(k, h, w)


def upsample_walk(rw: ArrayLike, image_size: tuple[int, int]) -> np.ndarray:
    """Walk maps ×4 bilinear (align_corners=False), cropped to the image, / global max (§6 step 4).

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


def walk_to_labels(rw_up: np.ndarray, keys: np.ndarray, bg_thres: float = 0.25) -> np.ndarray:
    """Constant background plane `bg_thres` + argmax, mapped through [0, keys+1] (§6 step 5).

    `keys` are 0-based class indices of the K maps. Returns (H, W) uint8 with no ignore label.
    """
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    if rw_up.ndim != 3 or rw_up.shape[0] != keys.size:
        raise ValueError(f"rw_up must be (K,H,W) with K = len(keys); got {rw_up.shape}, {keys}")
    if keys.size and (keys.min() < 0 or keys.max() > 253):
        raise ValueError(f"keys must be class indices in [0, 253], got {keys}")
    bg = np.full((1, *rw_up.shape[1:]), bg_thres, dtype=np.float32)
    index = np.argmax(np.concatenate([bg, rw_up.astype(np.float32)]), axis=0)
    keys_ext = np.concatenate([[0], keys + 1]).astype(np.uint8)
    return keys_ext[index]


def propagated_to_label(rw: ArrayLike, keys: np.ndarray, image_size: tuple[int, int],
                        bg_thres: float = 0.25) -> np.ndarray:
    """Semantic pseudo label (H, W) uint8 from stride-4 walk maps (§6 steps 4–5)."""
    return walk_to_labels(upsample_walk(rw, image_size), keys, bg_thres)
