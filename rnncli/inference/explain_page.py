"""The `rnncli explain` page: one self-contained HTML file drawn from the data explain.py returns.

No script and nothing fetched: styles inline, charts as inline SVG, colours computed here, each
token's top predictions in its `title` (the browser shows them on hover) and the most surprising
tokens again in a table. It opens from file:// and reads the same with JavaScript off. Long texts
are bounded where the page would grow past what a browser shows at once: the surprise panel shows up
to SHOWN_TOKENS tokens, each strip (units, gates) the first STRIP_TOKENS of every passage; the page
says what it cut (the --json data has everything).
"""

from __future__ import annotations

import math
from html import escape

SHOWN_TOKENS = 50_000
STRIP_TOKENS = 2_000
TABLE_ROWS = 12
LINE_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")

WHITE = (255, 255, 255)
SURPRISE_HIGH = (227, 74, 51)  # a surprising token
UNIT_LOW, UNIT_HIGH = (33, 102, 172), (178, 24, 43)  # activation -1 and +1
GATE_HIGH = (27, 120, 55)  # a gate at 1 (open)

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; margin: 1em 0 0.3em; }
.read { color: #555; max-width: 60em; }
.text { font: 14px/1.9 ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-all;
        border: 1px solid #eee; padding: 0.5em; margin: 0.4em 0; }
.strip { line-height: 1.6; }
.tok { padding: 1px 0; }
.legend { display: flex; align-items: center; gap: 0.6em; margin: 0.5em 0; font-size: 13px; }
.legend .bar { width: 240px; height: 12px; border: 1px solid #aaa; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0; }
td, th { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f4f4f4; padding: 0 3px; }
.cut { color: #a33; font-size: 13px; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
"""


def _mix(low: tuple, high: tuple, x: float) -> str:
    x = min(max(x, 0.0), 1.0)
    r, g, b = (round(lo + (hi - lo) * x) for lo, hi in zip(low, high, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _rgb(c: tuple) -> str:
    return f"rgb({c[0]},{c[1]},{c[2]})"


def surprise_colour(value: float, top: float) -> str:
    return _mix(WHITE, SURPRISE_HIGH, value / top)


def unit_colour(value: float, top: float) -> str:
    return _mix(WHITE, UNIT_HIGH, value / top) if value >= 0 else _mix(WHITE, UNIT_LOW, -value / top)


def gate_colour(value: float) -> str:
    return _mix(WHITE, GATE_HIGH, value)


def _shown(s: str) -> str:
    return "↵" if s == "\n" else escape(s)


def _name(token: str) -> str:
    """A token's name where a blank would be invisible: a space as ␣, a tab as ⇥."""
    return token.replace(" ", "␣").replace("\t", "⇥") if token.strip() == "" or token != token.strip() else token


def _token_span(s: str, colour: str, title: str = "", data: str = "") -> str:
    title = f' title="{escape(title)}"' if title else ""
    br = "<br>" if s == "\n" else ""
    return f'<span class="tok" style="background:{colour}"{title}{data}>{_shown(s)}</span>{br}'


def _legend(element_id: str, gradient: str, low: str, high: str, caption: str) -> str:
    return (f'<div class="legend" id="{element_id}"><span>{escape(caption)}</span><span>{escape(low)}</span>'
            f'<span class="bar" style="background:linear-gradient(to right, {gradient})"></span>'
            f"<span>{escape(high)}</span></div>")


def _cut_note(shown: int, total: int, what: str) -> str:
    if shown >= total:
        return ""
    return f'<p class="cut">{escape(what)}: the first {shown:,} of {total:,} tokens (--json has them all).</p>'


# ---- panels ---------------------------------------------------------------------------------------


def header(data: dict, unit: str) -> str:
    m = data["model"]
    val = m["best_val_loss"] if m["best_val_loss"] is not None else m["val_loss"]
    trained = f"trained on {escape(str(m['corpus']))}" if m["corpus"] else "trained"
    val_text = f", validation loss {val:.3f} nats/token" if isinstance(val, int | float) else ""
    scale = 1 / math.log(2) if unit == "bits" else 1.0
    return (f"<h1>Inside {escape(m['name'])}</h1>"
            f'<p id="model">{escape(m["cell"])}, {m["layers"]} layer{"s" * (m["layers"] > 1)} × {m["hidden"]} units, '
            f"{escape(m['level'])} level, vocabulary {m['vocab_size']:,}, {m['parameters']:,} parameters; "
            f"{trained} for {m['steps']:,} steps{val_text}.</p>"
            f'<p id="totals">The text: log P = {data["logprob"] * scale:.2f} {unit} over {data["tokens"]:,} tokens, '
            f"perplexity {data['perplexity']:.2f}.</p>")


def surprise_panel(data: dict, unit: str) -> str:
    scale = 1 / math.log(2) if unit == "bits" else 1.0
    values = sorted(-t["logprob"] for p in data["passages"] for t in p["per_token"])
    top = max(1.0, math.ceil(values[int(0.99 * (len(values) - 1))]))  # the 99th percentile, whole nats
    out = ["<section id=\"surprise\"><h2>What the model predicts: surprise per token</h2>",
           '<p class="read">Each token is coloured by its surprise, −log P(token | the text before it): '
           "white where the model expected it, red where it did not. Hover over a token for the model's five "
           "most likely tokens at that place; the table below lists the most surprising ones. "
           "These are the numbers <code>rnncli score --per-token</code> prints.</p>",
           _legend("surprise-legend", f"{_rgb(WHITE)}, {_rgb(SURPRISE_HIGH)}", "0",
                   f"≥ {top * scale:.3g} {unit}", "surprise")]
    budget = SHOWN_TOKENS
    for index, p in enumerate(data["passages"]):
        tokens = p["per_token"][:max(budget, 0)]
        budget -= len(tokens)
        spans = []
        for t in tokens:
            nats = -t["logprob"]
            guesses = ", ".join(f"{_name(g['token'])} {math.exp(g['logprob']):.3f}" for g in t["top"])
            title = (f"{_name(t['token'])}: {nats * scale:.3f} {unit}, P = {math.exp(t['logprob']):.4f}\n"
                     f"expected: {guesses}")
            spans.append(_token_span(t["shown"], surprise_colour(nats, top), title, f' data-nats="{nats!r}"'))
        lp = p["logprob"] * scale
        out.append(f'<h3>Text {index + 1}: log P = {lp:.2f} {unit}, perplexity {p["perplexity"]:.2f}</h3>'
                   f'<div class="text passage" data-passage="{index}">{"".join(spans)}</div>')
        out.append(_cut_note(len(tokens), len(p["per_token"]), "shown"))
    every = [(-t["logprob"], i, j, t) for i, p in enumerate(data["passages"]) for j, t in enumerate(p["per_token"])]
    rows = sorted(every, key=lambda r: -r[0])[:TABLE_ROWS]
    out.append('<table id="surprise-top"><tr><th>text</th><th>position</th><th>token</th>'
               f"<th>surprise ({unit})</th><th>the model expected</th></tr>")
    for nats, i, j, t in rows:
        guesses = ", ".join(f"<code>{escape(_name(g['token']))}</code> {math.exp(g['logprob']):.3f}" for g in t["top"])
        out.append(f'<tr><td class="num">{i + 1}</td><td class="num">{j + 1}</td><td><code>{escape(_name(t["token"]))}'
                   f'</code></td><td class="num">{nats * scale:.3f}</td><td>{guesses}</td></tr>')
    out.append("</table></section>")
    return "".join(out)


def units_panel(data: dict) -> str:
    values = [abs(v) for p in data["passages"] for unit in p["units"].values() for v in unit[:STRIP_TOKENS]]
    top = max(values, default=1.0) or 1.0
    layer, layers = data["layer"], data["model"]["layers"]
    out = [f'<section id="units"><h2>What cells track: layer {layer} of {layers}</h2>',
           '<p class="read">Each row is one hidden unit h<sub>j</sub> of this layer over the text: red where it is '
           "positive, blue where negative, the colour under the character the model has just read. "
           f"Units {escape(data['units_how'])}.</p>",
           _legend("units-legend", f"{_rgb(UNIT_LOW)}, {_rgb(WHITE)}, {_rgb(UNIT_HIGH)}", f"{-top:.2g}",
                   f"{top:.2g}", "activation")]
    if not data["units"]:
        out.append("<p>No unit to show: the text has none of the features (give --units).</p>")
    for u in data["units"]:
        why = f" — {escape(u['feature'])} (r = {u['r']:+.2f})" if u["feature"] else ""
        out.append(f"<h3>unit {u['unit']}{why}</h3>")
        for p in data["passages"]:
            shown = [t["shown"] for t in p["per_token"]][:STRIP_TOKENS]
            acts = p["units"][str(u["unit"])]
            spans = "".join(_token_span(s, unit_colour(a, top)) for s, a in zip(shown, acts, strict=False))
            out.append(f'<div class="text strip unit" data-unit="{u["unit"]}">{spans}</div>')
            out.append(_cut_note(len(shown), len(p["per_token"]), "this strip shows"))
    out.append("</section>")
    return "".join(out)


def _histogram_svg(shares: list[float]) -> str:
    w, h, n = 160, 44, len(shares)
    top = max(shares, default=1.0) or 1.0
    bars = "".join(f'<rect x="{i * w / n + 1:.1f}" y="{h - 12 - (h - 14) * s / top:.1f}" width="{w / n - 2:.1f}" '
                   f'height="{(h - 14) * s / top:.1f}" fill="{gate_colour((i + 0.5) / n)}" stroke="#888" '
                   'stroke-width="0.5"/>'
                   for i, s in enumerate(shares))
    return (f'<svg class="histogram" width="{w}" height="{h}" viewBox="0 0 {w} {h}">{bars}'
            f'<text x="0" y="{h - 1}">0</text><text x="{w - 8}" y="{h - 1}">1</text></svg>')


def gates_panel(data: dict) -> str:
    first = data["passages"][0]["gates"]
    if not first or not first[0]:
        return ('<section id="gates"><h2>Gates</h2><p>A plain RNN cell has no gates: every step rewrites the whole '
                "state, which is why its gradients fade fastest (below).</p></section>")
    out = ['<section id="gates"><h2>Gates</h2>',
           '<p class="read">Each strip is one gate of one layer, averaged over the layer\'s units, under each token: '
           "white = closed (0), green = open (1). An update gate near 0 keeps the memory as it is (the notes' "
           "Γ<sub>u</sub> in c⟨t⟩ = Γ<sub>u</sub> c̃⟨t⟩ + (1 − Γ<sub>u</sub>) c⟨t−1⟩); an LSTM's forget gate "
           "near 1 does the same for c. The table gives how often each gate is saturated (below 0.1 or above "
           "0.9) over all units and tokens, and the histogram of its values.</p>",
           _legend("gates-legend", f"{_rgb(WHITE)}, {_rgb(GATE_HIGH)}", "0", "1", "gate value")]
    for layer in range(len(first)):
        out.append(f"<h3>Layer {layer + 1}</h3>")
        for name in first[layer]:
            out.append(f"<div><b>{escape(name)} gate</b></div>")
            for p in data["passages"]:
                shown = [t["shown"] for t in p["per_token"]][:STRIP_TOKENS]
                means = p["gates"][layer][name]["mean_per_token"]
                spans = "".join(_token_span(s, gate_colour(v)) for s, v in zip(shown, means, strict=False))
                out.append(f'<div class="text strip gate" data-layer="{layer + 1}" data-gate="{escape(name)}">'
                           f"{spans}</div>")
                out.append(_cut_note(len(shown), len(p["per_token"]), "this strip shows"))
        out.append('<table class="saturation"><tr><th>gate</th><th>near 0</th><th>near 1</th>'
                   "<th>values 0 … 1</th></tr>")
        for name in first[layer]:
            g = [p["gates"][layer][name] for p in data["passages"]]
            weights = [p["tokens"] for p in data["passages"]]
            total = sum(weights)
            near0 = sum(x["share_near_0"] * w for x, w in zip(g, weights, strict=True)) / total
            near1 = sum(x["share_near_1"] * w for x, w in zip(g, weights, strict=True)) / total
            hist = [sum(x["histogram"][b] * w for x, w in zip(g, weights, strict=True)) / total
                    for b in range(len(g[0]["histogram"]))]
            out.append(f'<tr><td>{escape(name)}</td><td class="num">{near0:.1%}</td><td class="num">{near1:.1%}</td>'
                       f"<td>{_histogram_svg(hist)}</td></tr>")
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


def gradient_chart(models: list[dict]) -> str:
    """Log-scale line chart of ‖∂L/∂h⟨n−k⟩‖ against k, one polyline per model."""
    W, H, left, right, top_m, bottom = 720, 340, 60, 20, 20, 40
    K = max(len(m["norms"]) - 1 for m in models) or 1
    logs = [math.log10(v) for m in models for v in m["norms"] if v > 0]
    lo, hi = (math.floor(min(logs)), math.ceil(max(logs))) if logs else (-1, 0)
    hi = max(hi, lo + 1)

    def x(k: float) -> float:
        return left + (W - left - right) * k / K

    def y(v: float) -> float:
        return top_m + (H - top_m - bottom) * (hi - v) / (hi - lo)

    parts = [f'<svg id="gradient-chart" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
             'aria-label="gradient norm against steps back">']
    step = max(1, (hi - lo) // 8)
    for d in range(lo, hi + 1, step):
        parts.append(f'<line x1="{left}" x2="{W - right}" y1="{y(d):.1f}" y2="{y(d):.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 6}" y="{y(d) + 4:.1f}" text-anchor="end">1e{d}</text>')
    for k in range(0, K + 1, max(1, K // 10)):
        parts.append(f'<text x="{x(k):.1f}" y="{H - bottom + 16}" text-anchor="middle">{k}</text>')
    parts.append(f'<text x="{(W + left) / 2}" y="{H - 6}" text-anchor="middle">k: steps back from the last token</text>'
                 f'<rect x="{left}" y="{top_m}" width="{W - left - right}" height="{H - top_m - bottom}" fill="none" '
                 'stroke="#999"/>')
    for i, m in enumerate(models):
        points = " ".join(f"{x(k):.1f},{y(math.log10(v)):.1f}" for k, v in enumerate(m["norms"]) if v > 0)
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        parts.append(f'<polyline class="gradient-line" data-model="{escape(m["name"])}" points="{points}" fill="none" '
                     f'stroke="{colour}" stroke-width="2"/>')
    parts.append("</svg>")
    keys = "".join(f'<li><span style="color:{LINE_COLOURS[i % len(LINE_COLOURS)]}">━━</span> {escape(m["name"])} '
                   f"({escape(m['cell'])}, {m['layers']} × {m['hidden']}): ‖∂L/∂h⟨n⟩‖ = {m['norms'][0]:.3g}, "
                   f"after {len(m['norms']) - 1} steps {m['norms'][-1]:.3g}</li>" for i, m in enumerate(models))
    return "".join(parts) + f'<ul id="gradient-legend">{keys}</ul>'


def gradients_panel(data: dict) -> str:
    g = data["gradient"]
    return ('<section id="gradients"><h2>How gradients fade</h2>'
            '<p class="read">The size of the gradient of the loss at the last token of the first text, '
            "‖∂L⟨n⟩/∂h⟨n−k⟩‖ over every layer's hidden state, k steps back (log scale), from the model's own "
            "backward pass. A line that falls fast is a model that cannot learn from what lies that far back: "
            "the notes' vanishing gradients. Train an rnn, a gru and an lstm on the same corpus and draw them "
            "together with <code>--compare</code>.</p>" + gradient_chart(g["models"]) + "</section>")


def render(data: dict, unit: str = "nats") -> str:
    """The whole page for `explain`'s data; `unit` (nats or bits) for surprise and log-probabilities."""
    body = (header(data, unit) + surprise_panel(data, unit) + units_panel(data) + gates_panel(data)
            + gradients_panel(data))
    title = escape(f"rnncli explain: {data['model']['name']}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body>{body}<footer><p class=\"read\">Made by rnncli explain.</p></footer></body></html>\n")
