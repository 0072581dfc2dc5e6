"""The sampling flags of sample, chat and eval, defined once (each command chooses only its defaults),
checked by the shared rules of babyllama.checks while parsing."""

from __future__ import annotations

from babyllama import checks


def add_sampling_arguments(parser, *, temperature: float, max_new_tokens: int, seed=None,
                           top_k_top_p: bool = True) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--max_new_tokens", type=checks.flag_type(checks.positive_int, "max_new_tokens", int),
                       default=max_new_tokens, help=f"tokens to generate at most (default: {max_new_tokens})")
    group.add_argument("--temperature", type=checks.flag_type(checks.non_negative, "temperature", float),
                       default=temperature, help=f"sampling temperature; 0 is greedy (default: {temperature})")
    if top_k_top_p:
        group.add_argument("--top_k", type=checks.flag_type(checks.optional_positive_int, "top_k", int),
                           default=None, help="sample among the k most likely tokens (>= 1; default: no cut)")
        group.add_argument("--top_p", type=checks.flag_type(checks.probability_mass, "top_p", float),
                           default=None, help="nucleus sampling: the smallest set with this mass, in (0, 1] "
                                              "(default: no cut)")
    group.add_argument("--seed", type=checks.flag_type(checks.seed, "seed", int), default=seed,
                       help=f"seed for reproducible output (default: {seed})")
    group.add_argument("--guidance_scale", type=checks.flag_type(checks.non_negative, "guidance_scale", float),
                       default=1.0, help="classifier-free guidance: above 1 amplifies what the prompt changes in the "
                                         "model's predictions against --negative_prompt; costs a second forward "
                                         "pass per token (default: 1, off)")
    group.add_argument("--negative_prompt", default="",
                       help="the prompt guidance moves away from (chat and words: the user turn; default: empty)")


def positive_int_flag(name: str):
    """An argparse type for a count that must be >= 1 (num_samples, batch_size, ...)."""
    return checks.flag_type(checks.positive_int, name, int)
