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
from torch import Tensor, nn

from seqkit.errors import ConfigError, GenerationError
from seqkit.interfaces import BOS, EOS, PAD, EncoderOutput, iter_tensors
from seqkit.model import SeqModel, TokenEmbedding
from seqkit.packing import is_plain, linear, packed

NEG_INF = float("-inf")
assert (PAD, BOS, EOS) == (0, 1, 2), "log_probs bans PAD, BOS (and EOS) as the slices [:2] ([:3])"


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
    compile: bool = False  # torch.compile the decode step over a static cache (seqkit.compiled_decode)
    scores: bool = True  # False: the caller needs no scores, so greedy search skips the per-step
    #   log-softmax (its hypotheses' score and rank are nan); beam search and sampling need it anyway

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
        for name in ("compile", "scores"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: must be true or false, got {getattr(self, name)!r}", name)
        if self.compile and not self.use_cache:
            raise ConfigError("compile: compiled decoding steps through the cache; it cannot run with "
                              "use_cache = false", "compile")
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
    found = generate(model, source, source_mask, SearchConfig(max_len=max_len, scores=False),
                     batch_size=batch_size)
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
                 use_cache: bool, max_len: int, compile: bool = False):
        self.model, self.enc, self.rows = model, enc, rows  # rows: before any is dropped
        # compiled: the decode step over the decoder's static cache (in eval mode; training mode
        # keeps the model's own path, dropout and all)
        self.step = None
        if compile and not model.training:
            from seqkit.compiled_decode import compiled_step

            self.step = compiled_step(model)
        self.capacity, self.fed = capacity, 0
        # the vocabulary head over its packed weight (seqkit.packing) when it is a plain Linear
        self.head = self.embed = None  # eval mode only (training mode runs model.decode)
        if not model.training:
            if is_plain(model.head, nn.Linear):
                self.head = packed(model.head)
            embedding = model.target_embedding  # with no hook to run, its forward without the call
            self.embed = embedding.forward if is_plain(embedding, TokenEmbedding) else embedding
        # recomputing needs no cache, but a decoder that cannot hold ``capacity`` positions says so
        # here, once, before any work (the cache contract's ValueError): made for one row only
        probe_enc = enc if use_cache or enc is None else enc.index_select(torch.zeros(1, dtype=torch.long,
                                                                                       device=enc.memory.device))
        try:
            init = self.step.init_cache if self.step is not None else model.decoder.init_cache
            cache = init(probe_enc, rows if use_cache else 1, capacity)
        except ValueError as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"max_len: {max_len} new tokens need {capacity} decoder positions (with "
                              f"BOS and the longest prompt); the decoder cannot hold them: {reason}",
                              "max_len") from None
        self.cache = cache if use_cache else None
        self.prefix: Tensor | None = None  # (N, t) everything fed so far, recompute mode only
        # source state shared by beams: only through the cache (recomputing needs enc per row)
        self.shared = use_cache and bool(getattr(model.decoder, "shares_source", False))

    def check_room(self, copies: int) -> None:
        """Refuse, before allocating, ``copies`` of every row of the cache (the beams) that cannot
        fit in memory: caches are batch-first, so bytes scale with the rows (and a reorder holds
        the old cache and the new one at once)."""
        if self.cache is None or copies == 1:
            return
        from seqkit.preflight import available_memory

        per_hypothesis = ({k: v for k, v in self.cache.items() if k != "source"} if self.shared
                          else self.cache)  # a shared source part is not copied per beam
        held = sum(t.numel() * t.element_size() for t in iter_tensors(per_hypothesis))
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
            return logits[:, -1].float()
        model = self.model
        if self.step is not None:
            self.fed += tokens.size(1)
            if self.fed > self.capacity:  # the compiled step does not check its index
                raise ValueError(f"the cache holds {self.capacity} positions; {self.fed} fed")
            logits, self.cache = self.step(tokens, self.cache)
            return logits
        if model.training:  # dropout on: the model's own path
            logits, self.cache = model.decode(tokens, self.enc, self.cache)
            return logits[:, -1].float()
        # in eval mode the embedding dropout is the identity, and only the last position's logits
        # are wanted: the output head runs on that one (a prompt's prefill skips T-1 head GEMMs)
        embed = self.embed if self.embed is not None else model.target_embedding  # (eval since)
        hidden, self.cache = model.decoder(embed(tokens), self.enc, self.cache)
        last = hidden[:, -1]
        logits = linear(last, *self.head) if self.head is not None else model.head(last)
        return logits if logits.dtype == torch.float32 else logits.float()

    def expand(self, beams: int) -> None:
        """Make ``beams`` working rows of each row, consecutive (beam search's start)."""
        index = torch.arange(self.rows, device=next(self.model.parameters()).device)
        self.select(index.repeat_interleave(beams), None)

    def select(self, index: Tensor, sources: Tensor | None) -> None:
        """Keep working rows ``index``. ``sources``: the source rows still decoded, as positions
        among the current ones (None: all stay). A decoder that shares source state
        (``shares_source``) keeps one copy of it per source, and the encoder output stays per
        source too; any other decoder gets every row copied (cache and encoder output)."""
        if self.shared:
            self.cache = self.model.decoder.reorder_hypotheses(self.cache, index, sources)
            if self.enc is not None and sources is not None:
                self.enc = self.enc.index_select(sources)
            return
        if self.cache is not None:
            self.cache = self.model.decoder.reorder_cache(self.cache, index)
        else:
            self.prefix = self.prefix.index_select(0, index)
        if self.enc is not None:
            self.enc = self.enc.index_select(index)


class _Search:
    """The state both searches share. Working rows ("slots") map to input rows through an
    ``owner`` index (on the device, and ``owners`` on the host).

    The host holds what the search decides with, so that a step costs one transfer from the device
    (the chosen tokens; for beam search the top candidates): every slot's tokens after BOS
    (prompt, then output) as a linked path ``(token, parent path)`` in ``paths``, the position,
    the prompt lengths. Nothing else in the loop waits for the device."""

    def __init__(self, model: SeqModel, enc: EncoderOutput | None, rows: int,
                 prompts: Sequence[Sequence[int]] | None, config: SearchConfig):
        self.model, self.config, self.rows = model, config, rows
        self.device = next(model.parameters()).device
        prompts = [list(p) for p in prompts] if prompts is not None else [[] for _ in range(rows)]
        if len(prompts) != rows:
            raise ValueError(f"{len(prompts)} prompts for {rows} rows")
        self.prompt_lengths = [len(p) for p in prompts]
        self.prompt_len = torch.tensor(self.prompt_lengths, device=self.device)
        longest = self.longest = max(self.prompt_lengths, default=0)
        self.prompt = torch.full((rows, max(longest, 1)), PAD, dtype=torch.long, device=self.device)
        for i, p in enumerate(prompts):
            self.prompt[i, : len(p)] = torch.tensor(p, dtype=torch.long)
        self.shortest = min(self.prompt_lengths, default=0)  # prompt tokens every row has
        self.decoding = _Decoding(model, enc, rows, 1 + longest + config.max_len, config.use_cache,
                                  config.max_len, config.compile)
        self.vocab = model.shape.target_vocab
        self.position = self.shortest  # tokens after BOS fed so far, the same for every slot
        self.paths = []
        for p in prompts:
            path = None
            for token in p[: self.shortest]:
                path = (token, path)
            self.paths.append(path)

    def prefill(self) -> Tensor:
        """Feed BOS and the prompt tokens every row has, in one call; logits (rows, V)."""
        first = torch.full((self.rows, 1), BOS, dtype=torch.long, device=self.device)
        return self.decoding.feed(torch.cat([first, self.prompt[:, : self.shortest]], dim=1))

    def log_probs(self, logits: Tensor, owner: Tensor) -> Tensor:
        """Model log-probabilities (N, V) with every token not allowed next at -inf (an allowed
        token's value is the model's log-probability, so nothing else is kept: scores gather
        from this). Computed in place over the step's logits, the search's own (a fresh (N, V)
        tensor cost ~10 µs a step at batch 1 in a decode, measured)."""
        return self.allowed(torch.log_softmax(logits, -1, out=logits), owner)

    def allowed(self, values: Tensor, owner: Tensor) -> Tensor:
        """``values`` (N, V), log-probabilities or logits, with every token not allowed next at
        -inf (in place where it can be). A slot still inside its prompt may only take the
        prompt's next token, at 0.
        Every slot is at the same position, so the checks below that cannot apply at this
        position are skipped without touching a tensor (a step at batch 1 is mostly overhead),
        and none of them waits for the device (no boolean indexing, no ``any()``)."""
        config, position, allowed = self.config, self.position, values
        same_length = self.longest == self.shortest  # one prompt length: every slot produced as many
        if same_length and position - self.shortest < config.min_len:
            allowed[:, : EOS + 1] = NEG_INF  # PAD, BOS and, before min_len, EOS: one fill
        else:
            allowed[:, :2] = NEG_INF  # PAD and BOS (ids 0 and 1) are never generated
        if position < self.longest + config.min_len or position >= self.shortest + config.max_len:
            if same_length:
                produced = position - self.shortest
                if produced >= config.max_len:
                    eos = allowed[:, EOS].clone()  # not banned above: min_len <= max_len
                    allowed.fill_(NEG_INF)
                    allowed[:, EOS] = eos
            else:
                produced = (position - self.prompt_len[owner]).clamp(min=0)  # new tokens, per slot
                model_eos = allowed[:, EOS].clone()  # what a slot at max_len gets for EOS
                allowed[:, EOS] = allowed[:, EOS].masked_fill(produced < config.min_len, NEG_INF)
                at_limit = produced >= config.max_len
                eos = torch.where(at_limit, model_eos, allowed[:, EOS])
                allowed.masked_fill_(at_limit[:, None], NEG_INF)
                allowed[:, EOS] = eos
        if config.no_repeat_ngram:
            self._ban_repeats(allowed)  # may ban every token: the searches decide what that means
        if position < self.longest:
            forced = (position < self.prompt_len[owner])[:, None]  # (N, 1)
            token = self.prompt[owner, position]  # (N,) the prompt's next token (PAD past its end)
            only = torch.full_like(allowed, NEG_INF).scatter_(1, token[:, None], 0.0)
            allowed = torch.where(forced, only, allowed)
        return allowed

    def _ban_repeats(self, allowed: Tensor) -> None:
        """-inf on every token that would complete an n-gram already in the slot's tokens."""
        n = self.config.no_repeat_ngram
        for slot, path in enumerate(self.paths):
            tokens = _tokens(path)
            if len(tokens) < n:
                continue
            tail = tokens[len(tokens) - n + 1:] if n > 1 else []
            banned = [tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tokens[i: i + n - 1] == tail]
            if banned:
                allowed[slot, banned] = NEG_INF

    def cannot_continue(self, row: int) -> GenerationError:
        """The error for an input row none of whose hypotheses has a token allowed next."""
        config = self.config
        produced = self.position - self.prompt_lengths[row]
        if config.no_repeat_ngram:
            reason = f"no_repeat_ngram {config.no_repeat_ngram} bans every token after {produced} new tokens"
        else:
            reason = f"the model gives every allowed token zero probability after {produced} new tokens"
        return GenerationError(f"min_len {config.min_len} cannot be met: {reason}", row)

    def output(self, path: tuple | None, owner: int) -> list[int]:
        """The tokens of ``path`` after the prompt of input row ``owner``."""
        return _tokens(path)[self.prompt_lengths[owner]:]

    # -- greedy search and sampling ---------------------------------------------------------------

    def run_single(self) -> list[list[Hypothesis]]:
        """One host transfer per step: the chosen tokens, which say which rows ended (EOS) and
        which cannot go on (PAD, never allowed, is what argmax and the draw give a row with no
        allowed token). Scores stay on the device until the end."""
        config, device = self.config, self.device
        generator = pad_only = None
        if config.sample:  # a private generator: the global random state stays as it was
            generator = torch.Generator(device=device)
            generator.manual_seed(config.seed if config.seed is not None else int.from_bytes(os.urandom(7)))
            pad_only = torch.full((self.vocab,), NEG_INF, device=device)
            pad_only[PAD] = 0.0
        owners = list(range(self.rows))
        owner = torch.arange(self.rows, device=device)
        total = torch.zeros(self.rows, device=device)
        final = torch.zeros(self.rows, device=device)  # each input row's total when it ended
        ended: list[tuple | None] = [None] * self.rows
        logits = self.prefill()
        # without scores, greedy search picks from the logits themselves (as a hand-written loop
        # does): the same order as the log-probabilities', without a softmax a step
        scoring = config.scores or config.sample
        while True:
            allowed = self.log_probs(logits, owner) if scoring else self.allowed(logits, owner)
            if config.sample:  # a row with no allowed token draws PAD, the sign that it is stuck
                stuck = (allowed.max(-1).values == NEG_INF)[:, None]
                token = _draw(torch.where(stuck, pad_only, allowed), config, generator)
                total = total + allowed.gather(1, token[:, None]).squeeze(1)  # the model's log-prob
            else:  # the first of equal maxima (PAD when all are -inf) and its log-prob, in one op
                best, token = allowed.max(-1)
                if scoring:
                    total = total + best
            chosen = token.tolist()  # the step's one wait for the device
            if PAD in chosen:
                raise self.cannot_continue(owners[chosen.index(PAD)])
            self.position += 1
            self.paths = [(t, path) for t, path in zip(chosen, self.paths, strict=True)]
            if EOS in chosen:
                done = token == EOS
                final.index_put_((owner,), torch.where(done, total, final[owner]))
                keep_slots = [slot for slot, t in enumerate(chosen) if t != EOS]
                for slot, t in enumerate(chosen):
                    if t == EOS:
                        ended[owners[slot]] = self.paths[slot][1]  # without the EOS
                if not keep_slots:
                    break
                # the rows that go on, in order, found on the device (a stable sort puts them first)
                keep = done.to(torch.int8).argsort(stable=True)[: len(keep_slots)]
                self.decoding.select(keep, keep)
                owner, total, token = owner[keep], total[keep], token[keep]
                owners = [owners[slot] for slot in keep_slots]
                self.paths = [self.paths[slot] for slot in keep_slots]
            logits = self.decoding.feed(token[:, None])
        found: list[list[Hypothesis]] = []
        values = final.tolist() if scoring else [math.nan] * self.rows
        for row, (value, path) in enumerate(zip(values, ended, strict=True)):
            tokens = self.output(path, row)
            found.append([Hypothesis(tokens, value, config.rank(value, len(tokens) + 1))])
        return found

    # -- beam search ------------------------------------------------------------------------------

    def run_beam(self) -> list[list[Hypothesis]]:
        """One host transfer per step: the 2K best candidates of each row (scores and indices),
        from which the host finishes hypotheses, decides which rows are done and follows the
        beams' paths; the device makes the same choice of the K candidates that go on."""
        config, device, K, V = self.config, self.device, self.config.beam, self.vocab
        finished: list[list[Hypothesis]] = [[] for _ in range(self.rows)]
        logits = self.prefill()
        self.decoding.check_room(K)
        self.decoding.expand(K)  # beams share their row's source-only cache (or copy it)
        logits = logits.repeat_interleave(K, dim=0)
        self.paths = [path for path in self.paths for _ in range(K)]
        owners = list(range(self.rows))
        owner = torch.arange(self.rows, device=device)  # input row of each working row of beams
        scores = torch.full((self.rows, K), NEG_INF, device=device)
        scores[:, 0] = 0.0  # one live beam per row until the first expansion
        offsets = torch.arange(self.rows, device=device)[:, None] * K  # first slot of each row
        while True:
            R = len(owners)
            allowed = self.log_probs(logits, owner.repeat_interleave(K))
            candidates = (scores.view(R * K, 1) + allowed).view(R, K * V)
            top_scores, top_index = candidates.topk(2 * K, dim=1)  # (R, 2K), best first
            # the step's one wait for the device: float64 holds the float32 scores and the indices exactly
            top = torch.stack((top_scores.double(), top_index.double())).tolist()
            top_beam, top_token = top_index // V, top_index % V
            # the K best candidates that go on: a stable sort puts the non-EOS ones first, in order
            order = (top_token == EOS).to(torch.int8).argsort(dim=1, stable=True)[:, :K]
            scores, beam = top_scores.gather(1, order), top_beam.gather(1, order)
            token = top_token.gather(1, order)
            keep_rows, slots_host, tokens_host = [], [], []
            for r, (row_scores, row_index) in enumerate(zip(*top, strict=True)):
                row, going, best_live = owners[r], 0, NEG_INF
                for k, (value, index) in enumerate(zip(row_scores, row_index, strict=True)):
                    b, t = divmod(int(index), V)
                    if t == EOS:  # an end-of-sequence among the first K candidates finishes one
                        if k < K and value > NEG_INF:
                            self._finish(finished[row], self.paths[r * K + b], row, value)
                    elif going < K:
                        best_live = max(best_live, value)
                        slots_host.append(r * K + b)
                        tokens_host.append(t)
                        going += 1
                if self._row_done(finished[row], best_live):
                    if not finished[row]:  # every hypothesis died before it could end
                        raise self.cannot_continue(row)
                    del slots_host[-K:], tokens_host[-K:]
                else:
                    keep_rows.append(r)
            self.position += 1
            if not keep_rows:
                return [h[: config.nbest] for h in finished]
            if len(keep_rows) < R:
                keep = _index(keep_rows, device)
                owner, scores, beam, token = owner[keep], scores[keep], beam[keep], token[keep]
                owners = [owners[r] for r in keep_rows]
                offsets = offsets[: len(keep_rows)]
                slots = (keep[:, None] * K + beam).view(-1)  # working rows of the surviving beams
                self.decoding.select(slots, keep)
            else:
                slots = (offsets + beam).view(-1)
                self.decoding.select(slots, None)
            self.paths = [(t, self.paths[slot]) for slot, t in zip(slots_host, tokens_host, strict=True)]
            logits = self.decoding.feed(token.view(-1, 1))

    def _finish(self, finished: list[Hypothesis], path: tuple | None, row: int, value: float) -> None:
        """Add an ending candidate to its row's finished hypotheses; a row keeps its ``beam`` best
        by rank, best first (a stable sort: of equal ranks, the one finished first stays first)."""
        tokens = self.output(path, row)
        finished.append(Hypothesis(tokens, value, self.config.rank(value, len(tokens) + 1)))
        finished.sort(key=lambda h: -h.rank)
        del finished[self.config.beam:]

    def _row_done(self, finished: list[Hypothesis], best_live: float) -> bool:
        """A row is done when no beam is alive, or when no live beam can still rank above its
        ``nbest``-th finished hypothesis. A live score only falls as tokens are added, so with
        length penalty 0 the best live score bounds every rank still to come; with a penalty the
        bound is the best live score at the longest length allowed (the rank of a negative score
        rises with length). Having ``beam`` finished hypotheses is no reason to stop: a live one
        may still beat them (Hugging Face's ``early_stopping=False``). Stopping at the ``nbest``-th
        rather than the ``beam``-th returns the same ``nbest``: nothing later can rank above it."""
        config = self.config
        if best_live == NEG_INF:
            return True
        if len(finished) < config.nbest:
            return False
        return finished[config.nbest - 1].rank >= config.rank(best_live, config.max_len + 1)


def _tokens(path: tuple | None) -> list[int]:
    """The tokens of a linked path ``(token, parent)``, first to last."""
    tokens = []
    while path is not None:
        token, path = path
        tokens.append(token)
    tokens.reverse()
    return tokens


def _index(values: list[int], device: torch.device) -> Tensor:
    """A host list as an index tensor on ``device``, without waiting for the device: on CUDA
    through pinned memory, copied asynchronously (a pageable copy would synchronise the stream)."""
    if device.type == "cuda":
        return torch.tensor(values, dtype=torch.long, pin_memory=True).to(device, non_blocking=True)
    return torch.tensor(values, dtype=torch.long, device=device)


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
