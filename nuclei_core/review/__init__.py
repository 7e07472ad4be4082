"""The review workflows: a method scored against a pathologist's annotation (evaluate, evaluation), methods compared
with each other and their consensus (compare, agreement, consensus, method_runs), and a model fine-tuned on a lab's
own annotated slides (fine_tune, fine_tune_cli)."""
