"""cotfaith: does a model's chain of thought actually drive its answer?

Data flows one way: config -> task -> stage 1 (sample CoTs) -> stage 2 (interventions) ->
answers -> tidy records (records.jsonl) -> metrics -> figures and report.
"""

__version__ = "0.1.0"
