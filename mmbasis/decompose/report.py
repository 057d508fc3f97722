"""The report of a decomposition: per layer (weights), per basis group (fitting candidates), per stage (outputs),
overall, as plain Python types (stored in the decomposed checkpoint's ``meta``), and its readable table.
"""

from typing import List, Mapping, Optional, Sequence, Tuple

from ..utils.misc import brief


def relative(err2: float, ref2: float) -> float:
    """``sqrt(err2 / ref2)``: a relative error from squared norms (0 for a zero reference)."""
    return float((err2 / ref2) ** 0.5) if ref2 > 0 else 0.0


def summary(
    layers: List[dict],
    groups: List[dict],
    stages: List[dict],
    dropped: Sequence[str],
    sums: Sequence[Tuple[float, float]],
    copied: int,
    orthogonality_loss: Optional[float],
) -> dict:
    """The report of :func:`~mmbasis.decompose.decompose_resnet`: the rows of the layers, groups and stages, the
    source keys dropped, and the overall numbers (``sums``: ``(||M_j - Mhat_j||^2, ||M_j||^2)`` per layer)."""
    return dict(
        layers=layers,
        groups=groups,
        stages=stages,
        dropped_source_keys=list(dropped),
        overall=dict(
            weight_error=relative(sum(e for e, _ in sums), sum(r for _, r in sums)),
            max_layer_weight_error=max((la['weight_error'] for la in layers), default=0.0),
            output_error=stages[-1]['output_error'],
            decomposed_convs=len(layers),
            copied_tensors=copied,
        ),
        orthogonality_loss=orthogonality_loss,
    )


def _num(x: Optional[float]) -> str:
    return 'n/a' if x is None else f'{x:.4g}'


def format_report(report: Mapping) -> str:
    """A readable table of a :func:`decompose_resnet` report (relative errors ``||error|| / ||reference||``)."""
    lines = [f'{"layer":<18} {"kind":<11} {"T x S x k x k":<18} {"s+u":<9} weight error (BN-scaled)']
    for la in report['layers']:
        rank = 'whole' if la['rank'] is None else f'{la["rank"][0]}+{la["rank"][1]}'
        lines.append(
            f'{la["name"]:<18} {la["kind"]:<11} {"x".join(map(str, la["shape"])):<18} {rank:<9} '
            f'{_num(la["weight_error"])}'
        )
    lines += ['', f'{"basis (group)":<52} {"users":>5}  {"chosen":<28} candidates (weight error of the group)']
    for g in report['groups']:
        cands = ', '.join(f'{c} {_num(e)}' for c, e in g['candidates'].items())
        lines.append(f'{"+".join(g["bases"]):<52} {g["users"]:>5}  {g["method"]:<28} {cands}')
    lines += ['', f'{"stage":<8} {"output error (from the image)":<32} output error (stage alone, plain input)']
    for st in report['stages']:
        lines.append(f'{st["name"]:<8} {_num(st["output_error"]):<32} {_num(st["stage_alone_error"])}')
    o = report['overall']
    lines += [
        '',
        f'overall: weight error {_num(o["weight_error"])} over {o["decomposed_convs"]} decomposed '
        f'convolutions (worst layer {_num(o["max_layer_weight_error"])}), output error of the last stage '
        f'{_num(o["output_error"])}, orthogonality loss at the start {_num(report["orthogonality_loss"])}',
    ]
    if report.get('dropped_source_keys'):
        lines.append(f'dropped source keys (stages the target does not have): {brief(report["dropped_source_keys"])}')
    return '\n'.join(lines)
