"""The translation alignment score of Isik et al. 2024 (arXiv 2402.04177, section 2).

A(D, T) = P_src * P_dest + 0.7 * P_src + 0.8 * P_dest, where P_x is the share of language x in the
pretraining mixture D and T translates L_src -> L_dest. 50/50 en+fr for en->fr gives 1.0, en only 0.7,
fr only 0.8, an unrelated language 0.

Languages are compared by their canonical code: a synthetic language plays the role of the real one it
is named after (`syn_en` -> `en`), so the score of a synthetic mixture for a synthetic pair reads like
the paper's. A source's language comes from the data registry (`language` of configs/data/*.yaml).
"""

from __future__ import annotations

from collections.abc import Mapping

from testbed.errors import TestbedError

SYNTHETIC_PREFIX = "syn_"


def canonical_language(language: str) -> str:
    """'syn_en' -> 'en'; 'en' -> 'en'."""
    return language.removeprefix(SYNTHETIC_PREFIX)


def alignment_score(p_src: float, p_dest: float) -> float:
    for name, share in (("P_src", p_src), ("P_dest", p_dest)):
        if not 0.0 <= share <= 1.0 + 1e-9:
            raise TestbedError(f"alignment: {name}={share!r} is not a share within [0, 1]")
    return p_src * p_dest + 0.7 * p_src + 0.8 * p_dest


def language_shares(mixture: Mapping[str, float], languages: Mapping[str, str] | None = None) -> dict[str, float]:
    """Canonical language -> share of the mixture. `languages`: source -> language (default: the registry)."""
    if languages is None:
        from testbed.data.sources import known_sources

        known = known_sources()
        languages = {name: known[name].language for name in mixture if name in known}
    total = sum(mixture.values())
    if total <= 0:
        raise TestbedError(f"alignment: mixture {dict(mixture)} has no weight")
    shares: dict[str, float] = {}
    for source, weight in mixture.items():
        if source not in languages:
            raise TestbedError(f"alignment: source {source!r} of the mixture has no known language")
        language = canonical_language(languages[source])
        shares[language] = shares.get(language, 0.0) + weight / total
    return shares


def mixture_alignment(
    mixture: Mapping[str, float], src: str, dest: str, languages: Mapping[str, str] | None = None
) -> float:
    """A(D, T) of a mixture (source -> weight) for translating language `src` into `dest`."""
    shares = language_shares(mixture, languages)
    return alignment_score(shares.get(canonical_language(src), 0.0), shares.get(canonical_language(dest), 0.0))
