"""Simulated respondents: a model backend with known trait levels and injectable response biases.

A simulated respondent answers through the same interface as a real model: it reads the chat messages,
recognises the statement (item text or paraphrase) and the displayed options, and replies with text or
with log-probabilities over the displayed labels. Because its traits are known, the whole pipeline
(design, prompts, parsing, scoring, psychometrics) can be tested against ground truth.

Response model
--------------
Samejima's graded response model (GRM). For an item with keying sign :math:`s` on trait :math:`\\theta`
and displayed categories :math:`k = 0..K-1` ordered by meaning, the latent agreement is

.. math:: \\eta = s\\,\\theta + \\alpha + \\sigma z, \\quad z \\sim N(0, 1)

with acquiescence :math:`\\alpha` (agreement regardless of keying) and state noise :math:`\\sigma`, and

.. math:: P(X \\ge k) = \\operatorname{logistic}(a(\\eta - b_k)), \\quad k = 1..K-1

with discrimination :math:`a` and ordered thresholds :math:`b_k` (evenly spaced on [-1.5, 1.5] plus a
per-item shift drawn once from the item text, so items differ in difficulty as real items do).
Midpoint preference multiplies the middle category's probability by :math:`e^{m}`; position bias
multiplies the first or last *displayed* option's probability by :math:`e^{p}`; refusals replace a reply
with a refusal (text mode) or move that share of probability off the options (probability mode).

Personas: when the system message contains a persona the respondent knows (the shipped sets, or a set
passed to :meth:`SimulatedRespondent.prepare`), its trait levels move by ``persona_effect`` times the
persona's targets, and, with ``persona_spread`` > 0, by a persona-specific N(0, spread) offset per trait,
so that every biography is a different simulated person with known traits.

Behavioural tasks: when the first user message is a known task variant (shipped tasks, or tasks passed to
:meth:`SimulatedRespondent.prepare_tasks`), the respondent acts on a behavioural tendency

.. math:: \\ell = d\\,(\\rho\\,\\theta_T + \\sqrt{1-\\rho^2}\\,z), \\quad z \\sim N(0, 1)

for the task's trait :math:`T` and declared direction :math:`d`, with ``behavior_link`` :math:`\\rho`
(0.8 by default; 0 makes behaviour unrelated to the traits that drive the questionnaire answers). The
task's scoring rule writes the reply text (its ``simulate``), so the reply goes through the same parser
as a real model's.

Reference: Samejima, F. (1969). Estimation of latent ability using a response pattern of graded
scores. Psychometrika Monograph Supplement, 34(4, Pt. 2), 100.

Items are keyed as the inventory they are asked from keys them: the request names its inventory
(:attr:`~psychometrics.models.base.ModelRequest.inventory`, set by the planner), and the respondent looks
the statement up among that inventory's items only. An item text two inventories share with different
keys (IPIP "Am not really interested in others": agreeableness in Mini-IPIP, extraversion in IPIP-NEO-300)
therefore takes the key of the inventory being administered. A request that does not name its inventory
(a hand-made prompt, a sim served over HTTP) is matched against the inventories given to
:meth:`SimulatedRespondent.prepare` first, then the shipped ones; only a wording that several of those
key differently and nothing in the prompt tells apart is given the mean of their keys.

Model strings: ``sim/default`` or ``sim/`` followed by comma-separated ``key=value`` pairs, e.g.
``sim/extraversion=1.5,neuroticism=-1,acquiescence=0.8,seed=3``. Keys are trait names (the ``trait``
vocabulary of the shipped inventories, the behavioural tasks' traits, the traits persona sets target and
those of the inventories the respondent is made with; ``e a c n o`` abbreviate the Big Five), the
parameters in :data:`PARAMETERS` and ``traits``. Any other key is refused (a typo such as
``extroversion`` would otherwise leave the intended trait at 0), with the closest valid key suggested.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from psychometrics.errors import ModelSpecError
from psychometrics.inventories.model import Inventory
from psychometrics.models.base import ModelBackend, ModelReply, ModelRequest

TRAIT_ALIASES = {
    "e": "extraversion",
    "a": "agreeableness",
    "c": "conscientiousness",
    "n": "neuroticism",
    "o": "openness",
}

#: Tunable parameters, their defaults and allowed ranges (inclusive).
PARAMETERS: dict[str, tuple[float, float, float]] = {
    "acquiescence": (0.0, -5.0, 5.0),
    "midpoint": (0.0, -10.0, 10.0),
    "position_first": (0.0, -10.0, 10.0),
    "position_last": (0.0, -10.0, 10.0),
    "refusal": (0.0, 0.0, 1.0),
    "noise": (0.0, 0.0, 10.0),
    "discrimination": (1.8, 0.05, 20.0),
    "seed": (0, 0, 2**31 - 1),
    "verbose": (0, 0, 1),
    "latency": (0.0, 0.0, 60.0),
    "persona_effect": (1.0, -5.0, 5.0),
    "persona_spread": (0.0, 0.0, 5.0),
    "behavior_link": (0.8, -1.0, 1.0),
}
TRAIT_MODES = ("zero", "random")

REFUSAL_TEXT = "As an AI, I don't have personal feelings or experiences, so I can't rate that statement."
CONFUSED_TEXT = "I'm not sure how to answer that."


@dataclass(frozen=True)
class SimConfig:
    """Parsed ``sim/...`` model string."""

    traits: dict[str, float] = field(default_factory=dict)
    trait_mode: str = "zero"
    params: dict[str, float] = field(default_factory=dict)

    def get(self, name: str) -> float:
        return self.params.get(name, PARAMETERS[name][0])


def shipped_traits() -> frozenset[str]:
    """Trait names a simulated respondent knows without being told: those of the shipped inventories'
    scales, the behavioural tasks' traits and the traits the shipped persona sets target."""
    global _SHIPPED_TRAITS
    if _SHIPPED_TRAITS is None:
        from psychometrics.behavior.task import TRAITS
        from psychometrics.design.personas import resolve_persona_set, shipped_persona_sets
        from psychometrics.inventories.library import load_all_shipped

        names = set(TRAITS) | set(TRAIT_ALIASES.values())
        names |= {scale.trait for inventory in load_all_shipped() for scale in inventory.scales if scale.trait}
        for set_name in shipped_persona_sets():
            names |= {t for persona in resolve_persona_set(set_name).personas for t in persona.targets}
        _SHIPPED_TRAITS = frozenset(names)
    return _SHIPPED_TRAITS


_SHIPPED_TRAITS: frozenset[str] | None = None


def _unknown_key(model: str, key: str, traits: frozenset[str]) -> ModelSpecError:
    """The one-line error for a key that is neither a parameter nor a known trait: the closest valid
    key when there is a near miss, then every valid key."""
    import difflib

    parameters = sorted((*PARAMETERS, "traits"))
    trait_keys = sorted(traits)
    close = difflib.get_close_matches(key, [*parameters, *trait_keys, *TRAIT_ALIASES], n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ModelSpecError(
        f"--model {model}: unknown key {key!r}{hint}; valid keys are the parameters {', '.join(parameters)}, "
        f"the traits {', '.join(trait_keys)} and the abbreviations {', '.join(TRAIT_ALIASES)}"
    )


def parse_sim_spec(model: str, extra_traits: Iterable[str] = ()) -> SimConfig:
    """Parse ``sim/k=v,...``; bad keys or values raise a one-line :class:`ModelSpecError`.

    Trait keys must be in :func:`shipped_traits` or ``extra_traits`` (the traits of user inventories
    the respondent is made with)."""
    body = model.split("/", 1)[1] if "/" in model else ""
    if body in ("", "default"):
        return SimConfig()
    traits: dict[str, float] = {}
    params: dict[str, float] = {}
    trait_mode = "zero"
    for part in body.split(","):
        key, sep, raw = part.partition("=")
        key = key.strip().lower()
        raw = raw.strip()
        if not sep or not key:
            raise ModelSpecError(
                f"--model {model}: expected key=value pairs separated by commas, got {part!r}"
            )
        if key == "traits":
            if raw not in TRAIT_MODES:
                raise ModelSpecError(f"--model {model}: traits must be one of {', '.join(TRAIT_MODES)}, got {raw!r}")
            trait_mode = raw
            continue
        try:
            value = float(raw)
        except ValueError:
            raise ModelSpecError(f"--model {model}: {key} must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ModelSpecError(f"--model {model}: {key} must be finite, got {raw!r}")
        if key in PARAMETERS:
            _, low, high = PARAMETERS[key]
            if not low <= value <= high:
                raise ModelSpecError(f"--model {model}: {key} must be between {low:g} and {high:g}, got {raw}")
            if key in ("seed", "verbose") and value != int(value):
                raise ModelSpecError(f"--model {model}: {key} must be a whole number, got {raw}")
            params[key] = value
        elif re.fullmatch(r"[a-z][a-z0-9_]*", key):
            known = shipped_traits() | set(extra_traits)
            if TRAIT_ALIASES.get(key, key) not in known:
                raise _unknown_key(model, key, frozenset(known))
            if abs(value) > 6:
                raise ModelSpecError(f"--model {model}: trait {key} must be between -6 and 6 (SD units), got {raw}")
            traits[TRAIT_ALIASES.get(key, key)] = value
        else:
            raise ModelSpecError(f"--model {model}: {key!r} is neither a trait name nor a parameter")
    return SimConfig(traits=traits, trait_mode=trait_mode, params=params)


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def _unit_hash(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@dataclass
class _ItemKnowledge:
    canonical: str
    loadings: list[tuple[str, int]]  # (trait, sign) pairs: sign already includes reverse keying


class ItemBank:
    """What the simulated respondent 'understands', per inventory: which trait each wording of the
    inventory's items expresses and which way, and where each of its response labels sits on the
    agreement continuum (0 = lowest option, 1 = highest)."""

    def __init__(self) -> None:
        #: inventory id -> normalised wording (alone, or joined to the stem) -> what it measures there
        self.inventories: dict[str, dict[str, _ItemKnowledge]] = {}
        #: inventory id -> normalised label -> rank
        self.label_ranks: dict[str, dict[str, float]] = {}
        #: inventory id -> normalised instructions (to tell inventories apart in a prompt)
        self.instructions: dict[str, str] = {}
        self.label_rank: dict[str, float] = {}  # any inventory's labels: for prompts that name none
        self._known: dict[str, str] = {}  # inventory id -> content hash learned
        self.preferred: list[str] = []  # inventories given to prepare(), most recent first

    def learn(self, inventory: Inventory, *, prefer: bool = False) -> None:
        """Learn ``inventory`` (replacing an earlier inventory of the same id); ``prefer`` puts it
        first among the inventories a request that names none is matched against."""
        if prefer:
            self.preferred = [inventory.id, *(i for i in self.preferred if i != inventory.id)]
        if self._known.get(inventory.id) == inventory.content_hash:
            return
        self._known[inventory.id] = inventory.content_hash
        rs = inventory.response_scale
        ranks = {_normalize(label): (value - rs.min) / (rs.max - rs.min) for value, label in rs.labels.items()}
        self.label_ranks[inventory.id] = ranks
        for label, rank in ranks.items():
            self.label_rank.setdefault(label, rank)
        self.instructions[inventory.id] = _normalize(inventory.instructions or "")
        scales = {s.id: s for s in inventory.scales}
        from psychometrics.design.prompts import statement_text

        wordings: dict[str, _ItemKnowledge] = {}
        for item in inventory.items:
            scale = scales[inventory.scale_of_item[item.id]]
            if scale.trait is None:
                continue
            sign = scale.trait_sign * (-1 if item.reverse_keyed else 1)
            canonical = _normalize(item.text)
            for wording in (item.text, *item.paraphrases):
                for form in {_normalize(wording), _normalize(statement_text(inventory, wording))}:
                    entry = wordings.setdefault(form, _ItemKnowledge(canonical, []))
                    if (scale.trait, sign) not in entry.loadings:
                        entry.loadings.append((scale.trait, sign))
        self.inventories[inventory.id] = wordings

    def labels_of(self, inventory: str | None) -> dict[str, float]:
        """Label ranks of ``inventory`` (all known labels when it is unknown)."""
        return self.label_ranks.get(inventory or "", self.label_rank)

    def find_item(self, text: str, inventory: str | None = None, context: str = "") -> _ItemKnowledge | None:
        """What the statement in ``text`` measures, keyed as ``inventory`` keys it.

        Without ``inventory`` (or when that inventory does not have the statement) the inventories
        that have it are narrowed down: those given to :meth:`SimulatedRespondent.prepare`, then those
        whose instructions ``context`` (the system message) contains; if they still key it
        differently, the result carries every key they give (the respondent averages them).
        """
        words = _normalize(text).split()
        if inventory in self.inventories:
            found = self._longest(words, [inventory])
            if found:
                return found[0][1]
        found = self._longest(words, list(self.inventories))
        if not found:
            return None
        candidates = found
        preferred = [f for f in candidates if f[0] in self.preferred]
        if preferred:
            candidates = preferred
        context = _normalize(context)
        if context and len(candidates) > 1:
            instructed = [f for f in candidates if self.instructions.get(f[0]) and self.instructions[f[0]] in context]
            candidates = instructed or candidates
        if len({tuple(k.loadings) for _, k in candidates}) == 1:
            return candidates[0][1]
        loadings: list[tuple[str, int]] = []
        for _, knowledge in candidates:
            loadings += [pair for pair in knowledge.loadings if pair not in loadings]
        return _ItemKnowledge(candidates[0][1].canonical, loadings)

    def _longest(self, words: list[str], inventories: list[str]) -> list[tuple[str, _ItemKnowledge]]:
        """(inventory, knowledge) for the longest known wording in ``words`` among ``inventories``.

        Templates put the statement last, so the longest known suffix is tried first (fast); a scan
        of every known wording is the fallback.
        """
        for start in range(len(words)):
            suffix = " ".join(words[start:])
            hits = [(inv, self.inventories[inv][suffix]) for inv in inventories if suffix in self.inventories[inv]]
            if hits:
                return hits
        haystack = f" {' '.join(words)} "
        best_length, hits = 0, []
        for inv in inventories:
            for wording, knowledge in self.inventories[inv].items():
                if len(wording) >= best_length and f" {wording} " in haystack:
                    if len(wording) > best_length:
                        best_length, hits = len(wording), []
                    hits.append((inv, knowledge))
        return hits


def grm_probabilities(eta: float, discrimination: float, thresholds: np.ndarray) -> np.ndarray:
    """Category probabilities of Samejima's graded response model for latent value ``eta``."""
    cumulative = 1.0 / (1.0 + np.exp(-discrimination * (eta - thresholds)))  # P(X >= k), k = 1..K-1
    upper = np.concatenate(([1.0], cumulative))
    lower = np.concatenate((cumulative, [0.0]))
    return np.clip(upper - lower, 1e-12, None)


class SimulatedRespondent(ModelBackend):
    """A respondent with known trait levels (SD units) and configurable response biases."""

    def __init__(self, model: str, inventories: Sequence[Inventory] | None = None):
        """``inventories``: user inventories to know from the start (their traits become valid keys of
        the model string; :meth:`prepare` teaches the ones a run administers)."""
        self.name = model
        self.config = parse_sim_spec(
            model, {scale.trait for inventory in inventories or () for scale in inventory.scales if scale.trait})
        self.bank = ItemBank()
        from psychometrics.inventories.library import load_all_shipped

        for inventory in load_all_shipped():
            self.bank.learn(inventory)
        for inventory in inventories or ():
            self.bank.learn(inventory, prefer=True)
        from psychometrics.design.personas import resolve_persona_set, shipped_persona_sets

        self.personas: dict[str, tuple[str, dict[str, int]]] = {}
        for name in shipped_persona_sets():
            self._learn_personas(resolve_persona_set(name))
        self.tasks: dict[str, tuple] = {}
        self._tasks_loaded = False

    def prepare_tasks(self, tasks) -> None:
        for task in tasks:
            self._learn_task(task)

    def _learn_task(self, task) -> None:
        for variant in task.variants:
            # The longest stretch of fixed text between placeholders identifies the variant.
            pieces = re.split(r"\{[^{}]*\}", variant.turns[0].replace("{{", "{").replace("}}", "}"))
            fingerprint = max((_normalize(piece) for piece in pieces), key=len)[:160]
            if len(fingerprint) >= 20:
                self.tasks[fingerprint] = (task, variant)

    def find_task(self, first_user_text: str):
        """The known task variant whose fixed text the first user message contains, if any."""
        haystack = _normalize(first_user_text)
        for fingerprint, known in self.tasks.items():
            if fingerprint in haystack:
                return known
        return None

    def _known_task(self, first_user_text: str):
        """Find a task variant, learning the shipped tasks on first use (loading them costs ~0.1 s)."""
        if not self._tasks_loaded:
            self._tasks_loaded = True
            from psychometrics.behavior.task import resolve_tasks, shipped_tasks

            if shipped_tasks():
                for task in resolve_tasks("all"):
                    if not any(known[0].id == task.id for known in self.tasks.values()):
                        self._learn_task(task)
        return self.find_task(first_user_text)

    def _behave(self, request: ModelRequest, known, persona, rng: np.random.Generator) -> ModelReply:
        from psychometrics.behavior.kinds import get_kind

        task, variant = known
        link = self.config.get("behavior_link")
        theta = self.trait_level(task.trait, persona)
        level = task.direction * (link * theta + math.sqrt(max(0.0, 1 - link * link)) * float(rng.standard_normal()))
        messages = [(m.role, m.content) for m in request.messages]
        text = get_kind(task.kind).simulate(task, variant, messages, level, rng)
        n_in = sum(len(m.content.split()) for m in request.messages)
        return ModelReply(text=text, input_tokens=n_in, output_tokens=len(text.split()))

    def _behave_probs(self, request: ModelRequest, known, persona) -> ModelReply | None:
        """A task's option-label probabilities: the kind's choice probabilities for this respondent's level
        (one draw per variant and sample, whatever the option order), times ``exp(position_first)`` for the
        first label and ``exp(position_last)`` for the last, renormalised; ``refusal`` is the mass left off
        the labels. None when the kind cannot say."""
        from psychometrics.behavior.kinds import get_kind

        task, variant = known
        rng = _unit_hash("probs", int(self.config.get("seed")), request.seed, task.id, variant.id, persona[0] if persona else "")
        link = self.config.get("behavior_link")
        theta = self.trait_level(task.trait, persona)
        level = task.direction * (link * theta + math.sqrt(max(0.0, 1 - link * link)) * float(rng.standard_normal()))
        messages = [(m.role, m.content) for m in request.messages]
        probabilities = get_kind(task.kind).simulate_probs(task, variant, messages, level)
        if probabilities is None or len(probabilities) != len(request.choices):
            return None
        weights = np.asarray(probabilities, dtype=float)
        weights[0] *= math.exp(self.config.get("position_first"))
        weights[-1] *= math.exp(self.config.get("position_last"))
        weights = weights / weights.sum() * (1.0 - self.config.get("refusal"))
        logprobs = {c: math.log(max(float(p), 1e-300)) for c, p in zip(request.choices, weights)}
        n_in = sum(len(m.content.split()) for m in request.messages)
        return ModelReply(choice_logprobs=logprobs, input_tokens=n_in, output_tokens=1)

    def _learn_personas(self, persona_set) -> None:
        for persona in persona_set.personas:
            self.personas[_normalize(persona.text)] = (persona.id, dict(persona.targets))

    @property
    def params(self) -> dict[str, object]:
        return {
            "traits": dict(sorted(self.config.traits.items())),
            "trait_mode": self.config.trait_mode,
            **{k: self.config.get(k) for k in PARAMETERS},
        }

    def prepare(self, inventories: Sequence[Inventory], persona_set=None) -> None:
        """Learn the inventories a run administers (replacing shipped ones of the same id; a request that
        names no inventory is matched against these first) and its personas."""
        for inventory in inventories:
            self.bank.learn(inventory, prefer=True)
        if persona_set is not None:
            self._learn_personas(persona_set)

    def find_persona(self, system_text: str) -> tuple[str, dict[str, int]] | None:
        """The known persona whose text the system message contains (the longest match), if any."""
        haystack = _normalize(system_text)
        best = None
        for text, persona in self.personas.items():
            if text in haystack and (best is None or len(text) > len(best[0])):
                best = (text, persona)
        return best[1] if best else None

    def trait_level(self, trait: str, persona: tuple[str, dict[str, int]] | None = None) -> float:
        """The true level of ``trait`` (SD units) for this respondent, under ``persona`` if given:
        the model string's level (else 0, or a seeded N(0, 1) draw with ``traits=random``), plus the
        persona's target times ``persona_effect``, plus the persona's own offset (``persona_spread``)."""
        trait = TRAIT_ALIASES.get(trait, trait)
        seed = int(self.config.get("seed"))
        if trait in self.config.traits:
            level = self.config.traits[trait]
        elif self.config.trait_mode == "random":
            level = float(_unit_hash("trait", seed, trait).standard_normal())
        else:
            level = 0.0
        if persona is not None:
            persona_id, targets = persona
            level += self.config.get("persona_effect") * targets.get(trait, 0)
            spread = self.config.get("persona_spread")
            if spread:
                level += spread * float(_unit_hash("persona", seed, persona_id, trait).standard_normal())
        return level

    # -- reading the prompt --------------------------------------------------------------------------
    def _option_texts(self, prompt: str, choices: tuple[str, ...]) -> list[str] | None:
        texts = []
        for label in choices:
            match = re.search(rf"(?m)^\s*\(?{re.escape(label)}[\.\):]\s+(.+?)\s*$", prompt)
            if match:
                texts.append(match.group(1))
            elif re.search(rf"(?m)^\s*-\s*{re.escape(label)}\s*$", prompt):
                texts.append(label)  # the label is the option's words
            else:
                return None
        return texts

    def _display_order(self, prompt: str, choices: tuple[str, ...], inventory: str | None = None):
        """Displayed option texts and, for each semantic category, its display position (or None)."""
        option_texts = self._option_texts(prompt, choices)
        ranks = None
        for known in (self.bank.labels_of(inventory), self.bank.label_rank):
            ranks = [known.get(_normalize(t)) for t in option_texts] if option_texts else None
            if ranks and all(r is not None for r in ranks):
                break
        if not ranks or any(r is None for r in ranks):
            return None, None
        return option_texts, np.argsort(np.asarray(ranks, dtype=float), kind="stable")

    def _probabilities(self, statement: str, order: np.ndarray, rng: np.random.Generator, persona=None,
                       inventory: str | None = None, context: str = "") -> np.ndarray:
        """GRM probabilities with biases, by display position, for the item found in ``statement``, keyed
        as ``inventory`` keys it (see :meth:`ItemBank.find_item`)."""
        k = len(order)
        knowledge = self.bank.find_item(statement, inventory, context)
        cfg = self.config
        seed = int(cfg.get("seed"))
        if knowledge is not None:
            eta = float(np.mean([sign * self.trait_level(trait, persona) for trait, sign in knowledge.loadings]))
            shift = float(_unit_hash("item", seed, knowledge.canonical).normal(0.0, 0.3))
        else:
            eta, shift = 0.0, 0.0
        eta += cfg.get("acquiescence") + cfg.get("noise") * float(rng.standard_normal())
        thresholds = np.linspace(-1.5, 1.5, k - 1) + shift if k > 1 else np.array([])
        semantic = grm_probabilities(eta, cfg.get("discrimination"), thresholds)
        if k % 2 == 1:
            semantic[k // 2] *= math.exp(cfg.get("midpoint"))
        display = np.empty(k)
        display[order] = semantic
        display[0] *= math.exp(cfg.get("position_first"))
        display[-1] *= math.exp(cfg.get("position_last"))
        return display / display.sum()

    def _choose(self, probabilities: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
        if temperature <= 0:
            return int(np.argmax(probabilities))
        tempered = np.exp(np.log(probabilities) / temperature)
        return int(rng.choice(len(probabilities), p=tempered / tempered.sum()))

    async def complete(self, request: ModelRequest) -> ModelReply:
        latency = self.config.get("latency")
        if latency:
            await asyncio.sleep(latency)
        seed_material = (int(self.config.get("seed")), request.seed, request.choices, [m.content for m in request.messages])
        rng = _unit_hash("reply", *seed_material)
        refuse = rng.random() < self.config.get("refusal")
        prompt = "\n".join(m.content for m in request.messages if m.role == "user")
        system = "\n".join(m.content for m in request.messages if m.role == "system")
        persona = self.find_persona(system) if system else None
        if request.mode == "probs" and request.messages:
            first_user = next((m.content for m in request.messages if m.role == "user"), "")
            known = self._known_task(first_user)
            reply = self._behave_probs(request, known, persona) if known is not None else None
            if reply is not None:
                return reply
        if request.mode == "text":
            first_user = next((m.content for m in request.messages if m.role == "user"), "")
            known = self._known_task(first_user)
            if known is not None:
                if refuse:
                    return ModelReply(text=REFUSAL_TEXT, input_tokens=len(prompt.split()), output_tokens=18)
                return self._behave(request, known, persona, rng)
        option_texts, order = self._display_order(prompt, request.choices, request.inventory)
        n_in = sum(len(m.content.split()) for m in request.messages)
        if order is None:
            if request.mode == "probs":
                uniform = math.log(1.0 / len(request.choices))
                return ModelReply(choice_logprobs={c: uniform for c in request.choices}, input_tokens=n_in)
            return ModelReply(text=CONFUSED_TEXT, input_tokens=n_in, output_tokens=7)
        statements = re.findall(r"(?m)^S(\d+)\. (.+)$", prompt)
        if request.mode == "text" and not refuse and len(statements) > 1:
            lines = []
            for number, statement in statements:
                probabilities = self._probabilities(statement, order, rng, persona, request.inventory, system)
                position = self._choose(probabilities, request.temperature, rng)
                lines.append(f"S{number}: {request.choices[position]}")
            text = "\n".join(lines)
            return ModelReply(text=text, input_tokens=n_in, output_tokens=len(text.split()))
        probabilities = self._probabilities(prompt, order, rng, persona, request.inventory, system)
        if request.mode == "probs":
            on_options = 1.0 - self.config.get("refusal")
            logprobs = {c: math.log(max(p * on_options, 1e-300)) for c, p in zip(request.choices, probabilities)}
            return ModelReply(choice_logprobs=logprobs, input_tokens=n_in, output_tokens=1)
        if refuse:
            return ModelReply(text=REFUSAL_TEXT, input_tokens=n_in, output_tokens=18)
        position = self._choose(probabilities, request.temperature, rng)
        label = request.choices[position]
        if self.config.get("verbose"):
            shown = option_texts[position]
            text = f"My answer: {label}." if shown == label else f"I would say {label} ({shown})."
        else:
            text = label
        return ModelReply(text=text, input_tokens=n_in, output_tokens=len(text.split()))
