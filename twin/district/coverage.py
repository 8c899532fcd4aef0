"""Exact, area-weighted overlap of vector features with grid cells (shapely 2, vectorised).

Coverage is the true intersection area of each feature with each cell, never a sample
at the cell centre. Cells that lie wholly inside a feature take the cell area without
computing an intersection (a prepared ``contains_properly`` test), so only cells on a
feature's boundary pay for a polygon clip.

Features that overlap one another (crowd counters' coverage polygons) are cut into the faces of their
overlay first (`shared_coverage`), so a piece of a cell covered by two features is known as one piece
covered twice, not as two unrelated fractions of the cell (docs/science/crowd.md 1.4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from twin.district.grid import GridSpec


def candidate_pairs(grid: GridSpec, geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature and flat cell indices of every (feature, cell) pair whose boxes overlap.

    Parameters
    ----------
    grid : GridSpec
    geoms : ndarray of shapely geometries in the grid CRS.
    """
    geoms = np.asarray(geoms, dtype=object)
    if geoms.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    b = shapely.bounds(geoms)
    s = grid.cell_size
    c0 = np.clip(np.floor((b[:, 0] - grid.x0) / s), 0, grid.nx - 1).astype(np.int64)
    c1 = np.clip(np.floor((b[:, 2] - grid.x0) / s), 0, grid.nx - 1).astype(np.int64)
    r0 = np.clip(np.floor((grid.y0 - b[:, 3]) / s), 0, grid.ny - 1).astype(np.int64)
    r1 = np.clip(np.floor((grid.y0 - b[:, 1]) / s), 0, grid.ny - 1).astype(np.int64)
    xmin, ymin, xmax, ymax = grid.bounds
    outside = (b[:, 2] <= xmin) | (b[:, 0] >= xmax) | (b[:, 3] <= ymin) | (b[:, 1] >= ymax)
    outside |= np.isnan(b).any(axis=1)
    ncol = np.where(outside, 0, c1 - c0 + 1)
    nrow = np.where(outside, 0, r1 - r0 + 1)
    counts = ncol * nrow
    gi = np.repeat(np.arange(geoms.size), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    ncol_g = ncol[gi]
    row = r0[gi] + k // np.maximum(ncol_g, 1)
    col = c0[gi] + k % np.maximum(ncol_g, 1)
    return gi, row * grid.nx + col


BLOCK_CELLS = 16
"""Features wider than this many cells are cut into blocks of this size before clipping."""


def split_into_blocks(grid: GridSpec, geoms: np.ndarray, block: int = BLOCK_CELLS,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Cut large features along a block lattice aligned with the cells.

    Clipping a large polygon (a river, a park) against each boundary cell costs its whole
    vertex count per cell; cut into blocks first, each cell only meets a small piece.
    Returns the pieces and the index of the feature each came from.
    """
    b = shapely.bounds(geoms)
    span = block * grid.cell_size
    big = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) > span
    big &= shapely.get_num_coordinates(geoms) > 64
    if not big.any():
        return geoms, np.arange(geoms.size)
    blocks = GridSpec(grid.crs, grid.x0, grid.y0, span, -(-grid.ny // block), -(-grid.nx // block))
    gi, bcell = candidate_pairs(blocks, geoms[big])
    brow, bcol = np.divmod(bcell, blocks.nx)
    bx = blocks.x0 + bcol * span
    by = blocks.y0 - brow * span
    pieces = shapely.intersection(geoms[big][gi], shapely.box(bx, by - span, bx + span, by))
    keep = ~shapely.is_empty(pieces)
    origin = np.concatenate([np.flatnonzero(~big), np.flatnonzero(big)[gi[keep]]])
    return np.concatenate([geoms[~big], pieces[keep]]), origin


def overlap_areas(grid: GridSpec, geoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection area of every feature with every cell it overlaps.

    Returns
    -------
    feature : ndarray of int64
        Index into ``geoms``.
    cell : ndarray of int64
        Flat row-major cell index.
    area : ndarray of float64
        Intersection area. [m2] Pairs with zero area are dropped.
    """
    geoms = np.asarray(geoms, dtype=object)
    if geoms.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    geoms, origin = split_into_blocks(grid, geoms)
    gi, cell = candidate_pairs(grid, geoms)
    if gi.size == 0:
        return gi, cell, np.zeros(0)
    s = grid.cell_size
    row, col = np.divmod(cell, grid.nx)
    xmin = grid.x0 + col * s
    ymax = grid.y0 - row * s
    boxes = shapely.box(xmin, ymax - s, xmin + s, ymax)
    shapely.prepare(geoms)
    inside = shapely.contains_properly(geoms[gi], boxes)
    area = np.where(inside, s * s, 0.0)
    edge = ~inside & shapely.intersects(geoms[gi], boxes)
    if edge.any():
        area[edge] = shapely.area(shapely.intersection(geoms[gi[edge]], boxes[edge]))
    keep = area > 0
    return origin[gi[keep]], cell[keep], area[keep]


def clip_to_grid(grid: GridSpec, geoms) -> np.ndarray:
    """Features clipped to the grid's bounds (empty ones removed), made valid first."""
    geoms = shapely.make_valid(np.asarray(geoms, dtype=object))
    clipped = shapely.clip_by_rect(geoms, *grid.bounds)
    polys = shapely.get_parts(clipped)
    polys = polys[shapely.get_type_id(polys).astype(int) == 3]  # 3 = Polygon
    return polys[~shapely.is_empty(polys)]


def union_parts(grid: GridSpec, geoms) -> np.ndarray:
    """Non-overlapping polygon pieces of the union of the features, clipped to the grid."""
    polys = clip_to_grid(grid, geoms)
    if polys.size == 0:
        return polys
    union = shapely.union_all(polys)
    parts = shapely.get_parts(union)
    return parts[shapely.get_type_id(parts).astype(int) == 3]


def coverage_area(grid: GridSpec, geoms) -> np.ndarray:
    """Area of each cell covered by the union of the polygons, shape (ny, nx). [m2]

    Overlapping features are counted once (the union is taken first).
    """
    parts = union_parts(grid, geoms)
    out = np.zeros(grid.size)
    if parts.size:
        _, cell, area = overlap_areas(grid, parts)
        out += np.bincount(cell, weights=area, minlength=grid.size)
    return np.minimum(out, grid.cell_area).reshape(grid.shape)


def coverage_fraction(grid: GridSpec, geoms) -> np.ndarray:
    """Fraction of each cell covered by the union of the polygons, in [0, 1], shape (ny, nx). [1]"""
    return coverage_area(grid, geoms) / grid.cell_area


def _areal(geoms) -> np.ndarray:
    """Each feature made valid and reduced to its polygonal part (an empty polygon where it has none)."""
    out = []
    for geom in shapely.make_valid(np.asarray(geoms, dtype=object)):
        parts = shapely.get_parts(geom) if geom is not None else np.zeros(0, dtype=object)
        polys = [p for p in parts if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
        out.append(shapely.union_all(polys) if polys else shapely.Polygon())
    return np.array(out, dtype=object)


def overlay_faces(geoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The overlay of polygons: faces that are each covered by one fixed set of the polygons.

    The polygons' boundaries are noded and polygonised; a face belongs to a polygon when more than half of
    its area lies inside it (a face of the noded overlay lies wholly inside or wholly outside each polygon,
    so the half is only a guard against rounding). Faces no polygon covers (holes, the space between
    polygons) are dropped. The faces owned by one polygon tile it: their areas sum to its area.

    Returns
    -------
    faces : ndarray of shapely polygons
        In the CRS of ``geoms``.
    owner_face, owner_feature : ndarray of int64
        Pairs saying that feature ``owner_feature[j]`` covers face ``owner_face[j]``.
    """
    polys = _areal(geoms)
    empty = np.zeros(0, np.int64)
    if polys.size == 0 or shapely.is_empty(polys).all():
        return np.zeros(0, dtype=object), empty, empty
    edges = shapely.union_all(shapely.boundary(polys[~shapely.is_empty(polys)]))
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(edges)))
    faces = faces[shapely.area(faces) > 0]
    face, feature = shapely.STRtree(polys).query(faces, predicate="intersects")
    inside = shapely.area(shapely.intersection(faces[face], polys[feature]))
    owned = inside > 0.5 * shapely.area(faces[face])
    face, feature = face[owned], feature[owned]
    used = np.unique(face)
    renumber = np.full(faces.size, -1, np.int64)
    renumber[used] = np.arange(used.size)
    return faces[used], renumber[face], feature.astype(np.int64)


@dataclass(frozen=True)
class SharedCoverage:
    """Coverage of possibly overlapping features on a grid, cut into pieces.

    A piece is the part of one cell inside one face of the features' overlay (`overlay_faces`): every point
    of a piece is covered by the same features. Piece ``p`` lies in cell ``piece_cell[p]`` (flat row-major
    index) and has area ``piece_area[p]`` [m2]; feature ``owner_feature[j]`` covers piece ``owner_piece[j]``.
    A feature's pieces tile its part inside the grid, and pieces of different faces never overlap, so the
    covered area of a cell is the sum of its pieces' areas, counted once however many features cover it.
    """

    piece_cell: np.ndarray
    piece_area: np.ndarray
    owner_piece: np.ndarray
    owner_feature: np.ndarray

    def feature_area(self, n_features: int) -> np.ndarray:
        """Area of each feature inside the grid (sum of its pieces). [m2]"""
        return np.bincount(self.owner_feature, weights=self.piece_area[self.owner_piece], minlength=n_features)


def shared_coverage(grid: GridSpec, geoms) -> SharedCoverage:
    """Pieces of the features' coverage on the grid and which features cover each piece (`SharedCoverage`)."""
    faces, owner_face, owner_feature = overlay_faces(geoms)
    piece_face, cell, area = overlap_areas(grid, faces)
    order = np.argsort(owner_face, kind="stable")
    n_owners = np.bincount(owner_face, minlength=faces.size)
    first = np.cumsum(n_owners) - n_owners
    repeats = n_owners[piece_face]
    owner_piece = np.repeat(np.arange(piece_face.size, dtype=np.int64), repeats)
    k = np.arange(repeats.sum()) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    owners = owner_feature[order][first[piece_face][owner_piece] + k] if owner_piece.size else owner_feature[:0]
    return SharedCoverage(cell.astype(np.int64), area, owner_piece, owners.astype(np.int64))
