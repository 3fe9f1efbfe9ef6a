"""seqkit's generation against a hand-written cached loop in raw PyTorch and Hugging Face MarianMT,
with the same weights, interleaved in one process.

    OMP_NUM_THREADS=1 python examples/generation_bench.py [--repeat 7] [--new-tokens 64] [--quick]

The model is the issue's shape: an encoder-decoder Transformer, d_model 256, 4 heads, ffn 1024,
3+3 layers, vocabulary 8,000 (post-norm, so that it is a MarianMT model too), random weights with a
sharpened output head; the recurrent rows use an LSTM / GRU / RNN decoder (2 layers, Luong
"general" attention) over the same encoder. Every system decodes exactly ``--new-tokens`` tokens per
row (end of sequence banned before, as ``min_len = max_len``), from the same random sources
(32 tokens, a quarter of the rows padded), and the outputs are compared token for token first.

Greedy rows time seqkit as the other systems decode, without scores (``SearchConfig(scores=False)``:
neither the hand-written loop nor HF's ``generate`` computes any), and "seqkit+scores" with the
total log-probability of each output, a log-softmax a step.

Rows: greedy at batch 1 and 32 against the hand-written loop (and HF), beam 4 at batch 8 against
HF (``length_penalty=0``, ``early_stopping=False``: seqkit's search; where outputs differ, both are
scored under the model, as beam search's objective). Each repetition times every
system once, in a rotating order; printed are the median new tokens/s and, per ratio, the median
and range over repetitions of the ratio within a repetition.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor

from seqkit.config import load_config
from seqkit.generate import SearchConfig, generate, score
from seqkit.interfaces import BOS, EOS, PAD
from seqkit.model import ModelShape, build_model
from seqkit.plugins import make_plugin_manager

VOCAB, D_MODEL, HEADS, FFN, LAYERS, SOURCE_LEN = 8000, 256, 4, 1024, 3, 32


def seqkit_model(decoder: str, seed: int = 0):
    manager = make_plugin_manager()
    torch.manual_seed(seed)
    transformer = {"layers": LAYERS, "heads": HEADS, "ffn_size": FFN, "norm": "post"}
    decoders = {"transformer": {"name": "transformer", **transformer},
                **{cell: {"name": cell, "layers": 2} for cell in ("lstm", "gru", "rnn")}}
    data = {"model": {"d_model": D_MODEL, "tie_embeddings": False,
                      "encoder": {"name": "transformer", **transformer}, "decoder": decoders[decoder]}}
    config = load_config(data, manager=manager)
    shape = ModelShape("seq2seq", source_vocab=VOCAB, target_vocab=VOCAB)
    model = build_model(config.model, shape, manager).eval()
    with torch.no_grad():  # a sharper head than a fresh init: fewer near ties between systems
        model.head.weight.mul_(4.0)
    return model, config


def sources(batch: int, seed: int = 1) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    source = torch.randint(4, VOCAB, (batch, SOURCE_LEN), generator=generator)
    lengths = torch.full((batch,), SOURCE_LEN)
    lengths[: batch // 4] = SOURCE_LEN // 2  # a quarter of the rows padded
    mask = torch.arange(SOURCE_LEN) < lengths[:, None]
    return source.masked_fill(~mask, PAD), mask


# -- seqkit ---------------------------------------------------------------------------------------


def seqkit_decode(model, source, mask, new_tokens: int, beam: int = 1, scores: bool = False
                  ) -> list[list[int]]:
    """seqkit's tokens. Without scores, as the hand-written loop and HF's generate (whose
    ``output_scores`` is off) decode: no log-softmax a step; beam search scores anyway."""
    config = SearchConfig(max_len=new_tokens, min_len=new_tokens, beam=beam, scores=scores)
    return [row[0].tokens for row in generate(model, source, mask, config)]


# -- the hand-written loops -------------------------------------------------------------------------


@torch.inference_mode()
def raw_transformer_greedy(model, source: Tensor, mask: Tensor, new_tokens: int) -> list[list[int]]:
    """A cached greedy loop as one writes it by hand over the model's weights: preallocated keys
    and values, the memory's keys and values once, functional ops, no framework."""
    memory = model.encode(source, mask).memory  # the same encoder for every system
    decoder, B = model.decoder, source.size(0)
    hs = D_MODEL // HEADS
    memory_mask = None if bool(mask.all()) else mask[:, None, None, :]
    layers = []
    for layer in decoder.layers:
        k, v = F.linear(memory, layer.cross.kv.weight, layer.cross.kv.bias).split(D_MODEL, dim=2)
        layers.append((k.view(B, -1, HEADS, hs).transpose(1, 2), v.view(B, -1, HEADS, hs).transpose(1, 2),
                       torch.zeros(B, HEADS, new_tokens, hs), torch.zeros(B, HEADS, new_tokens, hs)))
    table = decoder.positions.table(0, new_tokens, memory.device)  # (L, D) sinusoids
    embedding, scale = model.target_embedding.weight, model.target_embedding.scale
    token = torch.full((B,), BOS, dtype=torch.long)
    out = []
    for t in range(new_tokens):
        x = (embedding[token] * scale + table[t])[:, None]  # (B, 1, D)
        for layer, (mk, mv, kc, vc) in zip(decoder.layers, layers, strict=True):
            q, k, v = F.linear(x, layer.attn.qkv.weight, layer.attn.qkv.bias).split(D_MODEL, dim=2)
            kc[:, :, t] = k.view(B, HEADS, hs)
            vc[:, :, t] = v.view(B, HEADS, hs)
            y = F.scaled_dot_product_attention(q.view(B, 1, HEADS, hs).transpose(1, 2), kc[:, :, : t + 1],
                                               vc[:, :, : t + 1])
            y = F.linear(y.transpose(1, 2).reshape(B, 1, D_MODEL), layer.attn.proj.weight,
                         layer.attn.proj.bias)
            x = F.layer_norm(x + y, (D_MODEL,), layer.ln_1.weight, layer.ln_1.bias)
            q = F.linear(x, layer.cross.q.weight, layer.cross.q.bias).view(B, 1, HEADS, hs).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, mk, mv, attn_mask=memory_mask)
            y = F.linear(y.transpose(1, 2).reshape(B, 1, D_MODEL), layer.cross.proj.weight,
                         layer.cross.proj.bias)
            x = F.layer_norm(x + y, (D_MODEL,), layer.ln_2.weight, layer.ln_2.bias)
            y = F.linear(F.gelu(F.linear(x, layer.mlp.fc.weight, layer.mlp.fc.bias)), layer.mlp.proj.weight,
                         layer.mlp.proj.bias)
            x = F.layer_norm(x + y, (D_MODEL,), layer.ln_3.weight, layer.ln_3.bias)
        logits = F.linear(x[:, 0], model.head.weight)  # (B, V)
        logits[:, : EOS + 1] = float("-inf")  # PAD, BOS, and EOS before the last token
        token = logits.argmax(-1)
        out.append(token)
    return torch.stack(out, 1).tolist()


@torch.inference_mode()
def raw_recurrent_greedy(model, source: Tensor, mask: Tensor, new_tokens: int) -> list[list[int]]:
    """A cached greedy loop over the recurrent decoder's weights, one native cell call per layer
    (torch.lstm_cell / gru_cell / rnn_tanh_cell) and Luong "general" attention, by hand."""
    enc = model.encode(source, mask)
    decoder, B = model.decoder, source.size(0)
    rnn, cell = decoder.rnn, decoder.cell
    step = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell}[cell]
    weights = [[getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
               for layer in range(rnn.num_layers)]
    memory = torch.where(mask[:, :, None], enc.memory, 0.0)  # (B, S, D)
    memory_t = memory.transpose(1, 2)  # (B, D, S)
    padding = ~mask[:, None, :]
    lowest = torch.finfo(memory.dtype).min
    h = [torch.zeros(B, decoder.hidden_size) for _ in weights]
    c = [torch.zeros(B, decoder.hidden_size) for _ in weights]
    embedding, scale = model.target_embedding.weight, model.target_embedding.scale
    token = torch.full((B,), BOS, dtype=torch.long)
    out = []
    for _ in range(new_tokens):
        x = embedding[token] * scale
        for layer, w in enumerate(weights):
            if cell == "lstm":
                h[layer], c[layer] = step(x, (h[layer], c[layer]), *w)
            else:
                h[layer] = step(x, h[layer], *w)
            x = h[layer]
        query = F.linear(x, decoder.attention.query.weight)[:, None]  # (B, 1, D)
        scores = (query @ memory_t).masked_fill(padding, lowest)  # (B, 1, S)
        context = (scores.softmax(-1) @ memory)[:, 0]  # (B, D)
        hidden = torch.tanh(F.linear(torch.cat([context, x], -1), decoder.output.weight, decoder.output.bias))
        logits = F.linear(hidden, model.head.weight)
        logits[:, : EOS + 1] = float("-inf")
        token = logits.argmax(-1)
        out.append(token)
    return torch.stack(out, 1).tolist()


# -- Hugging Face ---------------------------------------------------------------------------------


def marian_model(model, config):
    """The same function as a transformers MarianMTModel (seqkit's export mapping)."""
    from transformers import MarianConfig, MarianMTModel

    from seqkit.marian import marian_config, to_marian_state

    components = {part: {"plugin": "seqkit_transformer", "name": "transformer"}
                  for part in ("encoder", "decoder")}
    run = SimpleNamespace(task=SimpleNamespace(name="bench"), model=config.model)
    keys = marian_config(run, components, model.shape)
    marian = MarianMTModel(MarianConfig(**keys)).eval()
    state = to_marian_state(model.state_dict(), D_MODEL, keys["share_encoder_decoder_embeddings"])
    marian.load_state_dict(state, strict=False)
    return marian


@torch.inference_mode()
def hf_decode(marian, source: Tensor, mask: Tensor, new_tokens: int, beam: int = 1) -> list[list[int]]:
    out = marian.generate(source, attention_mask=mask, num_beams=beam, do_sample=False,
                          min_new_tokens=new_tokens, max_new_tokens=new_tokens, length_penalty=0.0,
                          early_stopping=False, suppress_tokens=[PAD, BOS], decoder_start_token_id=BOS,
                          eos_token_id=EOS, pad_token_id=PAD, forced_eos_token_id=None)
    return out[:, 1:].tolist()


# -- timing ---------------------------------------------------------------------------------------


def log_probs(model, source: Tensor, mask: Tensor, rows: list[list[int]], new_tokens: int) -> list[float]:
    """Each output's total log-probability under ``model`` (its first ``new_tokens`` tokens, then
    end of sequence): what beam search maximises, to judge outputs that differ."""
    targets = torch.full((len(rows), new_tokens + 2), PAD)
    for i, row in enumerate(rows):
        tokens = [t for t in row if t not in (PAD, EOS)][:new_tokens]
        targets[i, : len(tokens) + 2] = torch.tensor([BOS, *tokens, EOS])
    return score(model, source, mask, targets).tolist()


def compare(name: str, systems: dict, batch: int, new_tokens: int, repeat: int, judge=None) -> dict:
    """Time each system ``repeat`` times, interleaved (rotating order); check outputs first.
    ``judge(rows)`` scores outputs: where a system's differ from seqkit's, count the rows where
    seqkit's output scores at least as high."""
    outputs = {system: run() for system, run in systems.items()}
    reference = outputs["seqkit"]
    agree = {system: sum(a == b for a, b in zip(out, reference, strict=True)) / len(reference)
             for system, out in outputs.items() if system != "seqkit"}
    seqkit_higher = {}
    if judge is not None:
        ours = judge(reference)
        for system, out in outputs.items():
            differ = [i for i, (a, b) in enumerate(zip(out, reference, strict=True)) if a != b]
            if system != "seqkit" and differ:
                theirs = judge(out)
                seqkit_higher[system] = f"{sum(ours[i] >= theirs[i] - 1e-4 for i in differ)}/{len(differ)}"
    times: dict[str, list[float]] = {system: [] for system in systems}
    names = list(systems)
    for rep in range(repeat):
        for system in names[rep % len(names):] + names[: rep % len(names)]:
            start = time.perf_counter()
            systems[system]()
            times[system].append(time.perf_counter() - start)
    tokens = batch * new_tokens
    ours = [system for system in names if system.startswith("seqkit")]
    result = {"case": name, "batch": batch, "new_tokens": new_tokens,
              "tokens_per_s": {s: tokens / statistics.median(t) for s, t in times.items()},
              "same_outputs": agree, "seqkit_scores_higher_where_they_differ": seqkit_higher, "ratios": {}}
    for mine in ours:  # seqkit / each other system: the other's time over seqkit's, per repetition
        for system in (s for s in names if s not in ours):
            ratios = sorted(b / a for a, b in zip(times[mine], times[system], strict=True))
            result["ratios"][f"{mine}/{system}"] = {"median": statistics.median(ratios), "min": ratios[0],
                                                    "max": ratios[-1]}
    return result


def systems_of(kind: str, batch: int, model, marian, L: int) -> tuple[dict, object]:
    """What a case compares: {name: a call that decodes the case's sources}, seqkit first, and
    for beam search the judge of outputs that differ."""
    source, mask = sources(batch)
    if kind == "greedy":
        systems = {"seqkit": lambda: seqkit_decode(model, source, mask, L),
                   "seqkit+scores": lambda: seqkit_decode(model, source, mask, L, scores=True),
                   "raw": lambda: raw_transformer_greedy(model, source, mask, L)}
        if marian is not None:
            systems["hf"] = lambda: hf_decode(marian, source, mask, L)
        return systems, None
    if kind == "beam":
        systems = {"seqkit": lambda: seqkit_decode(model, source, mask, L, beam=4)}
        if marian is not None:
            systems["hf"] = lambda: hf_decode(marian, source, mask, L, beam=4)
        return systems, lambda rows: log_probs(model, source, mask, rows, L)
    recurrent, _ = seqkit_model(kind)
    return {"seqkit": lambda: seqkit_decode(recurrent, source, mask, L),
            "seqkit+scores": lambda: seqkit_decode(recurrent, source, mask, L, scores=True),
            "raw": lambda: raw_recurrent_greedy(recurrent, source, mask, L)}, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--cases", default="greedy1,greedy32,beam8,lstm1,lstm32,gru1,rnn1")
    parser.add_argument("--no-hf", action="store_true", help="leave out Hugging Face")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    L, results = args.new_tokens, []
    model, config = seqkit_model("transformer")
    marian = None if args.no_hf else marian_model(model, config)
    for case in args.cases.split(","):
        kind, batch = case.rstrip("0123456789"), int(case.lstrip("abcdefghijklmnopqrstuvwxyz"))
        systems, judge = systems_of(kind, batch, model, marian, L)
        result = compare(case, systems, batch, L, args.repeat, judge)
        results.append(result)
        speeds = ", ".join(f"{s} {v:,.0f}" for s, v in result["tokens_per_s"].items())
        ratios = ", ".join(f"{pair} {r['median']:.2f} [{r['min']:.2f}, {r['max']:.2f}]"
                           for pair, r in result["ratios"].items())
        same = ", ".join(f"{s} {v:.0%}" for s, v in result["same_outputs"].items())
        higher = "".join(f"; where {s} differs, seqkit scores higher on {v}"
                         for s, v in result["seqkit_scores_higher_where_they_differ"].items())
        print(f"{case:9} new tokens/s: {speeds}; {ratios}; same outputs: {same}{higher}", flush=True)
    if args.json:
        meta = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                "threads": torch.get_num_threads(), "repeat": args.repeat}
        with open(args.json, "w") as file:
            json.dump({"meta": meta, "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
