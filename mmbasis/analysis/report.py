"""The benchmark's tables (markdown rows) and its CSV."""

import csv
import math
import os
from typing import List, Sequence


def layer_table(rows: List[dict]) -> List[str]:
    lines = [
        '| model | first layer | S->R->T, kernel, stride @ input | MACs ours/plain | factorised+BN ms | '
        'conv+BN ms | ratio | basis conv at R ms | at R rounded down to 16 ms | plain conv ms |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        lines.append(
            f'| {r["model"]} | {r["layer"]} | {r["geometry"]} | {r["mac_ratio"]:.2f} | {r["ours_ms"]:.2f} | '
            f'{r["theirs_ms"]:.2f} | {r["ratio"]:.2f}x | {r["basis_ms"]:.2f} (R={r["rank"]}) | '
            f'{r["basis16_ms"]:.2f} (R={r["rank16"]}) | {r["plain_conv_ms"]:.2f} |'
        )
    return lines


def row_text(label: str, theirs: str, mode: str, t: dict) -> str:
    notes = []
    if 'reg_ms' in t:
        notes.append(f'regulariser {t["reg_ms"]:.1f} ms = {100 * t["reg_share"]:.1f} % of ours')
    if 'ours_compile_s' in t:
        notes.append(f'first call (compilation) ours {t["ours_compile_s"]:.0f} s, theirs {t["theirs_compile_s"]:.0f} s')
    if 'ours_dets' in t:
        thr = t['score_thr']
        notes.append(f'detections/image with score ≥ {thr:g}: ours {t["ours_dets"]:.1f}, theirs {t["theirs_dets"]:.1f}')
    if t.get('images'):
        n = float(t['images'])
        notes.append(f'images/s ours {1000 * n / t["ours_ms"]:.1f}, theirs {1000 * n / t["theirs_ms"]:.1f}')
    if 'ours_peak_mb' in t:
        notes.append(
            f'input {t["input"]}, peak memory ours {t["ours_peak_mb"]:.0f} MB, theirs {t["theirs_peak_mb"]:.0f} MB'
        )
    return (
        f'| {label} | {theirs} | {mode} | {t["ours_ms"]:.1f} | {t["theirs_ms"]:.1f} | '
        f'{t["ratio"]:.2f}x [{t["lo"]:.2f}, {t["hi"]:.2f}] | {"; ".join(notes) or "-"} |'
    )


def times_header() -> List[str]:
    return ['| ours | theirs | mode | ours ms | theirs ms | ratio [range] | notes |', '|---|---|---|---|---|---|---|']


def static_header() -> List[str]:
    return [
        '| model | params (M) | GMACs | deploy GMACs | state_dict MB (deploy) | train peak MB | deploy infer peak MB |',
        '|---|---|---|---|---|---|---|',
    ]


def static_row(who: str, s: dict) -> str:
    return (
        f'| {who} | {s["params"] / 1e6:.2f} | {s["gmacs"]:.3f} | {s["deploy_gmacs"]:.3f} | '
        f'{s["ckpt_mb"]:.1f} ({s["deploy_ckpt_mb"]:.1f}) | {s["peak_mb"]:.0f} | '
        f'{s.get("infer_peak_mb", math.nan):.0f} |'
    )


def static_columns(static: dict) -> dict:
    """The static measures of a pair as CSV columns (``ours_params``, ``theirs_gmacs``, ...)."""
    keys = ('params', 'gmacs', 'ckpt_mb', 'peak_mb', 'infer_peak_mb')
    return {f'{who}_{key}': static[who].get(key, math.nan) for key in keys for who in ('ours', 'theirs')}


def write_csv(path: str, rows: Sequence[dict], profiles: Sequence[str] = ()) -> None:
    """The rows (one per model and mode) as a CSV, its columns the union of the rows' keys, written atomically; the
    ``profiles`` (torch.profiler tables), if any, into ``.profile.txt`` beside it."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'w', newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    print(f'wrote {path}')
    if profiles:
        text_path = os.path.splitext(path)[0] + '.profile.txt'
        with open(text_path, 'w', encoding='utf-8') as f:
            f.write('\n\n'.join(profiles) + '\n')
        print(f'wrote {text_path}')
