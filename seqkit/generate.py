"""Decoding over the decoder cache contract: greedy search, sampling and beam search, for every
decoder, for seq2seq models and for language models (prompt continuation).

The encoder runs once per source; the decoder's ``init_cache`` computes what depends on the memory
(cross-attention keys and values) once per source too, before beams are made by copying cache
rows. Rows that finish leave the working batch (``reorder_cache`` drops them), so one long output
does not slow the others. ``SearchConfig(use_cache=False)`` recomputes the whole prefix at every
step instead: the baseline that the cache must match token for token, and beat on speed.

Scores are log-probabilities under the model's full softmax (no temperature, nothing banned): a
hypothesis's ``score`` is the sum over its new tokens and the end-of-sequence token, the same
number ``score`` computes for that target. At ``max_len`` new tokens end-of-sequence is forced, so
every hypothesis ends with one. Prompt tokens are fed, never scored.

Beam search stops as fairseq and Hugging Face (``early_stopping=False``) do: an end-of-sequence
candidate finishes a hypothesis only when it is among the ``beam`` best candidates of its row; a
row keeps its ``beam`` best finished hypotheses and goes on while a live one can still rank above
them. Constraints are never bent: a hypothesis with no allowed token (``no_repeat_ngram`` banning
every word before ``min_len``) drops out, and a row left with nothing is a ``GenerationError``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from seqkit.errors import ConfigError, GenerationError
from seqkit.interfaces import BOS, EOS, PAD, EncoderOutput, iter_tensors
from seqkit.model import SeqModel

NEG_INF = float("-inf")
assert (PAD, BOS) == (0, 1), "log_probs bans PAD and BOS as the slice [:2]"


@dataclass(frozen=True)
class SearchConfig:
    """How to search. ``beam = 1`` without ``sample`` is greedy search."""

    max_len: int = 128  # most new tokens; end-of-sequence is forced after them
    min_len: int = 0  # fewest new tokens before end-of-sequence is allowed
    beam: int = 1  # beam size
    nbest: int = 1  # hypotheses returned per input (at most beam)
    length_penalty: float = 0.0  # GNMT alpha >= 0: rank by score / ((5 + length) / 6) ** alpha
    no_repeat_ngram: int = 0  # n > 0: no n-gram occurs twice in prompt + output
    sample: bool = False  # draw each token instead of taking the most likely one
    temperature: float = 1.0  # sampling: divide logits by this
    top_k: int = 0  # sampling: keep the k most likely tokens (0: all)
    top_p: float = 1.0  # sampling: keep the smallest set of tokens with this much probability
    seed: int | None = None  # sampling: the same seed draws the same tokens
    use_cache: bool = True  # False recomputes the prefix every step (a baseline for tests, benchmarks)

    def __post_init__(self):
        _at_least(self, "max_len", 1)
        _at_least(self, "min_len", 0)
        _at_least(self, "beam", 1)
        _at_least(self, "nbest", 1)
        _at_least(self, "no_repeat_ngram", 0)
        _at_least(self, "top_k", 0)
        if self.min_len > self.max_len:
            raise ConfigError(f"min_len: {self.min_len} is above max_len {self.max_len}", "min_len")
        if self.nbest > self.beam:
            raise ConfigError(f"nbest: {self.nbest} is above the beam size {self.beam}", "nbest")
        _number(self, "length_penalty", 0 <= _real(self.length_penalty) < math.inf, ">= 0 and finite")
        _number(self, "temperature", 0 < _real(self.temperature) < math.inf, "> 0 and finite")
        _number(self, "top_p", 0 < _real(self.top_p) <= 1, "in (0, 1]")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)
                                      or not 0 <= self.seed < 2**64):
            raise ConfigError(f"seed: must be an integer from 0 to 2**64 - 1, got {self.seed!r}", "seed")
        if self.sample and self.beam > 1:
            raise ConfigError("sample: sampling draws one hypothesis; it cannot run with beam > 1", "sample")

    def rank(self, score: float, length: int) -> float:
        """What beam search orders finished hypotheses by; ``length`` counts end-of-sequence."""
        if self.length_penalty == 0:
            return score
        return score / ((5 + length) / 6) ** self.length_penalty


def _real(value) -> float:
    """``value`` as a float for a range check; nan (fails every check) when it is not a number."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _number(config: SearchConfig, name: str, ok: bool, wanted: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: must be {wanted}, got {getattr(config, name)!r}", name)


def _at_least(config: SearchConfig, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name}: must be an integer >= {minimum}, got {value!r}", name)


@dataclass
class Hypothesis:
    """One output: its new token ids (no BOS, prompt or EOS), its total log-probability (EOS
    included) and the rank beam search ordered it by (the score after the length penalty)."""

    tokens: list[int]
    score: float
    rank: float


@torch.inference_mode()
def generate(model: SeqModel, source: Tensor | None = None, source_mask: Tensor | None = None,
             config: SearchConfig | None = None, prompts: Sequence[Sequence[int]] | None = None,
             batch_size: int | None = None) -> list[list[Hypothesis]]:
    """The ``config.nbest`` best hypotheses of each row, best first.

    ``source`` (B, S[, F]) with ``source_mask`` (B, S) for a seq2seq model; None for a language
    model, which then takes ``prompts`` (token ids to continue, without BOS) or ``batch_size``.
    A seq2seq model may take ``prompts`` too: a forced prefix of each output.
    """
    config = config or SearchConfig()
    enc = model.encode(source, source_mask) if model.encoder is not None else None
    rows = source.size(0) if enc is not None else len(prompts) if prompts is not None else batch_size
    if rows is None:
        raise ValueError("a language model needs prompts or a batch size")
    search = _Search(model, enc, rows, prompts, config)
    return search.run_single() if config.beam == 1 else search.run_beam()


@torch.inference_mode()
def greedy(model: SeqModel, source: Tensor | None, source_mask: Tensor | None, max_len: int,
           batch_size: int | None = None) -> list[list[int]]:
    """Greedy token ids of each row (no BOS, no EOS): what evaluation decodes with."""
    found = generate(model, source, source_mask, SearchConfig(max_len=max_len), batch_size=batch_size)
    return [hypotheses[0].tokens for hypotheses in found]


@torch.inference_mode()
def score(model: SeqModel, source: Tensor | None, source_mask: Tensor | None, targets: Tensor) -> Tensor:
    """Total log-probability (B,) float32 of each target (B, T), framed [BOS, ..., EOS] and padded
    with PAD: the sum over every token after BOS, EOS included."""
    enc = model.encode(source, source_mask) if model.encoder is not None else None
    logits, _ = model.decode(targets[:, :-1], enc)
    gold = targets[:, 1:]
    logp = logits.float().log_softmax(-1).gather(-1, gold.unsqueeze(-1)).squeeze(-1)
    return logp.masked_fill(gold == PAD, 0.0).sum(1)


class _Decoding:
    """Feeds tokens to the decoder and returns next-token logits: through the cache, or by
    recomputing the whole prefix (``use_cache=False``). ``select`` keeps rows ``index``."""

    def __init__(self, model: SeqModel, enc: EncoderOutput | None, rows: int, capacity: int,
                 use_cache: bool, max_len: int):
        self.model, self.enc = model, enc
        # recomputing needs no cache, but a decoder that cannot hold ``capacity`` positions says so
        # here, once, before any work (the cache contract's ValueError): made for one row only
        probe_enc = enc if use_cache or enc is None else enc.index_select(torch.zeros(1, dtype=torch.long,
                                                                                       device=enc.memory.device))
        try:
            cache = model.decoder.init_cache(probe_enc, rows if use_cache else 1, capacity)
        except ValueError as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"max_len: {max_len} new tokens need {capacity} decoder positions (with "
                              f"BOS and the longest prompt); the decoder cannot hold them: {reason}",
                              "max_len") from None
        self.cache = cache if use_cache else None
        self.prefix: Tensor | None = None  # (N, t) everything fed so far, recompute mode only

    def check_room(self, copies: int) -> None:
        """Refuse, before allocating, ``copies`` of every row of the cache (the beams) that cannot
        fit in memory: caches are batch-first, so bytes scale with the rows (and a reorder holds
        the old cache and the new one at once)."""
        if self.cache is None or copies == 1:
            return
        from seqkit.preflight import available_memory

        held = sum(t.numel() * t.element_size() for t in iter_tensors(self.cache))
        need, available = 2 * held * copies, available_memory(next(self.model.parameters()).device)
        if need > available:
            raise ConfigError(f"beam: {copies} beams need about {need / 1e9:.3g} GB of decoder cache "
                              f"({held / 1e6:.3g} MB for one beam of each input); this machine has "
                              f"{available / 1e9:.3g} GB available", "beam")

    def feed(self, tokens: Tensor) -> Tensor:
        """tokens (N, t) -> float32 logits (N, V) of the position after them."""
        if self.cache is None:
            self.prefix = tokens if self.prefix is None else torch.cat([self.prefix, tokens], dim=1)
            logits, _ = self.model.decode(self.prefix, self.enc)
        else:
            logits, self.cache = self.model.decode(tokens, self.enc, self.cache)
        return logits[:, -1].float()

    def select(self, index: Tensor) -> None:
        if self.cache is not None:
            self.cache = self.model.decoder.reorder_cache(self.cache, index)
        else:
            self.prefix = self.prefix.index_select(0, index)
        if self.enc is not None:
            self.enc = self.enc.index_select(index)


class _Search:
    """The state both searches share. Working rows ("slots") map to input rows through an
    ``owner`` index; ``history`` (slots, t) holds every slot's tokens after BOS: prompt, then output."""

    def __init__(self, model: SeqModel, enc: EncoderOutput | None, rows: int,
                 prompts: Sequence[Sequence[int]] | None, config: SearchConfig):
        self.model, self.config, self.rows = model, config, rows
        self.device = next(model.parameters()).device
        prompts = [list(p) for p in prompts] if prompts is not None else [[] for _ in range(rows)]
        if len(prompts) != rows:
            raise ValueError(f"{len(prompts)} prompts for {rows} rows")
        self.prompt_len = torch.tensor([len(p) for p in prompts], device=self.device)
        longest = self.longest = max((len(p) for p in prompts), default=0)
        self.prompt = torch.full((rows, max(longest, 1)), PAD, dtype=torch.long, device=self.device)
        for i, p in enumerate(prompts):
            self.prompt[i, : len(p)] = torch.tensor(p, dtype=torch.long)
        self.shortest = min((len(p) for p in prompts), default=0)  # prompt tokens every row has
        self.decoding = _Decoding(model, enc, rows, 1 + longest + config.max_len, config.use_cache,
                                  config.max_len)
        self.vocab = model.shape.target_vocab
        self.history = self.prompt[:, : self.shortest]

    def prefill(self) -> Tensor:
        """Feed BOS and the prompt tokens every row has, in one call; logits (rows, V)."""
        first = torch.full((self.rows, 1), BOS, dtype=torch.long, device=self.device)
        return self.decoding.feed(torch.cat([first, self.history], dim=1))

    def log_probs(self, logits: Tensor, owner: Tensor) -> tuple[Tensor, Tensor]:
        """Model log-probabilities (N, V), and the same with every token not allowed next at -inf.
        A slot still inside its prompt may only take the prompt's next token, at log-prob 0.
        Every slot is at the same position, so the checks below that cannot apply at this
        position are skipped without touching a tensor (a step at batch 1 is mostly overhead)."""
        config, position = self.config, self.history.size(1)
        logp = logits.log_softmax(-1)
        allowed = logp.clone()
        allowed[:, :2] = NEG_INF  # PAD and BOS (ids 0 and 1) are never generated
        if position < self.longest + config.min_len or position >= self.shortest + config.max_len:
            produced = (position - self.prompt_len[owner]).clamp(min=0)  # new tokens so far, per slot
            allowed[produced < config.min_len, EOS] = NEG_INF
            at_limit = produced >= config.max_len
            if at_limit.any():
                eos = allowed[:, EOS].clone()
                allowed[at_limit] = NEG_INF
                allowed[:, EOS] = torch.where(at_limit, logp[:, EOS], eos)
        if config.no_repeat_ngram:
            self._ban_repeats(allowed)  # may ban every token: the searches decide what that means
        if position < self.longest:
            forced = position < self.prompt_len[owner]
            if forced.any():
                rows = forced.nonzero().squeeze(1)
                token = self.prompt[owner[rows], position]
                logp = logp.clone()
                allowed[rows], logp[rows] = NEG_INF, NEG_INF
                allowed[rows, token], logp[rows, token] = 0.0, 0.0
        return logp, allowed

    def _ban_repeats(self, allowed: Tensor) -> None:
        """-inf on every token that would complete an n-gram already in the slot's tokens."""
        n = self.config.no_repeat_ngram
        for slot, tokens in enumerate(self.history.tolist()):
            if len(tokens) < n:
                continue
            tail = tokens[len(tokens) - n + 1:] if n > 1 else []
            banned = [tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tokens[i: i + n - 1] == tail]
            if banned:
                allowed[slot, banned] = NEG_INF

    def cannot_continue(self, row: int) -> GenerationError:
        """The error for an input row none of whose hypotheses has a token allowed next."""
        config, position = self.config, self.history.size(1)
        produced = position - int(self.prompt_len[row])
        if config.no_repeat_ngram:
            reason = f"no_repeat_ngram {config.no_repeat_ngram} bans every token after {produced} new tokens"
        else:
            reason = f"the model gives every allowed token zero probability after {produced} new tokens"
        return GenerationError(f"min_len {config.min_len} cannot be met: {reason}", row)

    def output(self, slot: int, owner: int) -> list[int]:
        """The slot's tokens after its prompt."""
        return self.history[slot, int(self.prompt_len[owner]):].tolist()

    # -- greedy search and sampling ---------------------------------------------------------------

    def run_single(self) -> list[list[Hypothesis]]:
        config, device = self.config, self.device
        generator = None
        if config.sample:  # a private generator: the global random state stays as it was
            generator = torch.Generator(device=device)
            generator.manual_seed(config.seed if config.seed is not None else int.from_bytes(os.urandom(7)))
        found: list[list[Hypothesis]] = [[] for _ in range(self.rows)]
        owner = torch.arange(self.rows, device=device)
        total = torch.zeros(self.rows, device=device)
        logits = self.prefill()
        while True:
            logp, allowed = self.log_probs(logits, owner)
            stuck = allowed.max(-1).values == NEG_INF  # end of sequence is banned, and so is every word
            if stuck.any():
                raise self.cannot_continue(int(owner[stuck.nonzero()[0, 0]]))
            token = _draw(allowed, config, generator) if config.sample else allowed.argmax(-1)
            total = total + logp.gather(1, token[:, None]).squeeze(1)
            self.history = torch.cat([self.history, token[:, None]], dim=1)
            done = token == EOS
            if done.any():
                for slot in done.nonzero().squeeze(1).tolist():
                    row, value = int(owner[slot]), float(total[slot])
                    tokens = self.output(slot, row)[:-1]
                    found[row] = [Hypothesis(tokens, value, config.rank(value, len(tokens) + 1))]
                keep = (~done).nonzero().squeeze(1)
                if keep.numel() == 0:
                    return found
                self.decoding.select(keep)
                owner, total, token, self.history = owner[keep], total[keep], token[keep], self.history[keep]
            logits = self.decoding.feed(token[:, None])

    # -- beam search ------------------------------------------------------------------------------

    def run_beam(self) -> list[list[Hypothesis]]:
        config, device, K, V = self.config, self.device, self.config.beam, self.vocab
        finished: list[list[Hypothesis]] = [[] for _ in range(self.rows)]
        logits = self.prefill()
        self.decoding.check_room(K)
        # beams are copies of their row's cache: cross-attention keys/values were computed once
        expand = torch.arange(self.rows, device=device).repeat_interleave(K)
        self.decoding.select(expand)
        self.history, logits = self.history[expand], logits[expand]
        owner = torch.arange(self.rows, device=device)  # input row of each working row of beams
        scores = torch.full((self.rows, K), NEG_INF, device=device)
        scores[:, 0] = 0.0  # one live beam per row until the first expansion
        while True:
            R = owner.size(0)
            logp, allowed = self.log_probs(logits, owner.repeat_interleave(K))
            del logp  # beam scores add allowed log-probs, which equal the model's where finite
            candidates = (scores.view(R * K, 1) + allowed).view(R, K * V)
            top_scores, top_index = candidates.topk(2 * K, dim=1)  # (R, 2K), best first
            top_beam, top_token = top_index // V, top_index % V
            is_eos = top_token == EOS
            # an end-of-sequence among the first K candidates finishes a hypothesis
            ending = is_eos[:, :K] & (top_scores[:, :K] > NEG_INF)
            if ending.any():
                self._finish(finished, owner, top_beam, top_scores, ending)
            # the K best candidates that go on: a stable sort puts the non-EOS ones first, in order
            order = is_eos.to(torch.int8).argsort(dim=1, stable=True)[:, :K]
            scores, beam = top_scores.gather(1, order), top_beam.gather(1, order)
            token = top_token.gather(1, order)
            done = self._rows_done(finished, owner, scores)
            for r in done.nonzero().squeeze(1).tolist():
                if not finished[int(owner[r])]:  # every hypothesis died before it could end
                    raise self.cannot_continue(int(owner[r]))
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                return [h[: config.nbest] for h in finished]
            slots = (keep[:, None] * K + beam[keep]).view(-1)  # working rows of the surviving beams
            self.decoding.select(slots)
            token = token[keep].view(-1, 1)
            self.history = torch.cat([self.history[slots], token], dim=1)
            owner, scores = owner[keep], scores[keep]
            logits = self.decoding.feed(token)

    def _finish(self, finished: list[list[Hypothesis]], owner: Tensor, top_beam: Tensor,
                top_scores: Tensor, ending: Tensor) -> None:
        """Add the ending candidates to their rows' finished hypotheses; each row keeps its
        ``beam`` best by rank, best first."""
        K = self.config.beam
        rows = set()
        for r, k in ending.nonzero().tolist():
            row, slot = int(owner[r]), r * K + int(top_beam[r, k])
            tokens, value = self.output(slot, row), float(top_scores[r, k])
            finished[row].append(Hypothesis(tokens, value, self.config.rank(value, len(tokens) + 1)))
            rows.add(row)
        for row in rows:  # a stable sort: of equal ranks, the one finished first stays first
            finished[row] = sorted(finished[row], key=lambda h: -h.rank)[:K]

    def _rows_done(self, finished: list[list[Hypothesis]], owner: Tensor, scores: Tensor) -> Tensor:
        """A row is done when no beam is alive, or when no live beam can still rank above its
        ``nbest``-th finished hypothesis. A live score only falls as tokens are added, so with
        length penalty 0 the best live score bounds every rank still to come; with a penalty the
        bound is the best live score at the longest length allowed (the rank of a negative score
        rises with length). Having ``beam`` finished hypotheses is no reason to stop: a live one
        may still beat them (Hugging Face's ``early_stopping=False``). Stopping at the ``nbest``-th
        rather than the ``beam``-th returns the same ``nbest``: nothing later can rank above it."""
        config = self.config
        best_live = scores.max(dim=1).values.tolist()
        done = []
        for r, row in enumerate(owner.tolist()):
            hypotheses = finished[row]
            if best_live[r] == NEG_INF:
                done.append(True)
            elif len(hypotheses) < config.nbest:
                done.append(False)
            else:
                bound = config.rank(best_live[r], config.max_len + 1)
                done.append(hypotheses[config.nbest - 1].rank >= bound)
        return torch.tensor(done, dtype=torch.bool, device=scores.device)


def _draw(allowed: Tensor, config: SearchConfig, generator: torch.Generator | None) -> Tensor:
    """One token per row from softmax(allowed / temperature), cut to top-k and top-p."""
    logits = allowed / config.temperature
    if config.top_k:
        kth = logits.topk(min(config.top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if config.top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the ones before it already hold top_p (the first one always stays)
        drop = probs.cumsum(-1) - probs >= config.top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, NEG_INF))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
