"""The makers of training tasks: data for SFT, preference tuning and reasoning RL, made from the
built-in world and judged against its ground truth.

    synth.py        the synth stage: instruction-tuning conversations from the fact table
    tool_data.py    tool-use conversations for SFT (calculator and lookup), and their eval questions
    phrasing.py     how the conversations are phrased: question styles, "I don't know", invented names
    reasoning.py    the reasoning stage: verifiable arithmetic word problems, loaders, answer checks
    preferences.py  the preferences stage: prompts, sampled answers, labels, preference pairs
    adversarial.py  answers built to fool the judge, checked before the judge labels pairs

They sit above the engine (they sample from trained models) and the scoring layer (evals/judge.py,
evals/overlap.py), and below the evaluations and trainers that read what they write.
"""
