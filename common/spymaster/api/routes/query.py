"""``/v1/similar`` and ``/v1/partitions``: the similarity query and the partitions' base rates."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from spymaster.api.deps import MaxK, ServiceDep
from spymaster.api.schemas import Partitions, SimilarRequest, SimilarResponse
from spymaster.errors import InvalidQueryError

router = APIRouter(tags=["query"])


@router.post("/similar", response_model=SimilarResponse)
def similar(body: SimilarRequest, svc: ServiceDep, max_k: MaxK) -> dict[str, Any]:
    """Nearest earlier episodes of a state and the distribution of what followed."""
    if body.k > max_k:
        raise InvalidQueryError(f"k must be between 1 and {max_k}")
    return svc.similar(
        episode_id=body.episode_id,
        date=body.date,
        time=body.time,
        level_kind=body.level_kind,
        vector=body.vector,
        partition=body.partition.model_dump() if body.partition is not None else None,
        as_of=body.as_of,
        k=body.k,
        max_per_day=body.max_per_day,
        weights={str(g): w for g, w in body.weights.items()} if body.weights else None,
        horizon=body.horizon,
        max_k=max_k,
    )


@router.get("/partitions", response_model=Partitions)
def partitions(svc: ServiceDep) -> dict[str, Any]:
    """Episodes and primary-horizon base rates per partition."""
    return svc.partitions()
