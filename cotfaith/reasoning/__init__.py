"""Reasoning methods (stage 1): how a question becomes a reasoning trace and a reference answer.

Each method is one module here registered with `@register("reasoning", name, config=...)`;
interventions run on whatever trace a method produced.
"""
