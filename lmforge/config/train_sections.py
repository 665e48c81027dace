"""Config sections for the model and the stages that train it: model, the shared loop (pretrain),
synth, sft, reasoning, preferences, reward, ppo, dpo, grpo, and the experiment trackers (track).

    from lmforge.config import TrainConfig, PreferencesConfig
"""
from __future__ import annotations

from dataclasses import dataclass

from .fields import opt


@dataclass
class ModelConfig:
    vocab_size: int = opt(0, lo=0, help="0 = take it from the trained tokenizer")
    seq_len: int = opt(256, lo=8, hi=131_072, help="maximum context length")
    n_layer: int = opt(4, lo=1, hi=256)
    n_head: int = opt(4, lo=1, hi=256)
    n_kv_head: int = opt(0, lo=0, hi=256, help="grouped-query attention; 0 = n_head")
    d_model: int = opt(256, lo=8, hi=65_536)
    ffn_hidden: int = opt(0, lo=0, help="SwiGLU hidden size; 0 = about 8/3 d_model, rounded up to 64")
    rope_theta: float = opt(10_000.0, lo=1.0)
    qk_norm: bool = opt(False)
    tie_embeddings: bool = opt(True)
    norm_eps: float = opt(1e-5, lo=0.0, hi=0.1)
    init_std: float = opt(0.02, lo=0.0, hi=1.0)


@dataclass
class TrainConfig:
    """The shared training loop's settings; every gradient stage has its own copy."""
    batch_size: int = opt(16, lo=1, help="sequences per micro-batch per process")
    grad_accum: int = opt(1, lo=1)
    seq_len: int = opt(256, lo=8)
    optimizer: str = opt("muon", choices=["adamw", "muon"], help="muon = Muon for hidden matrices + AdamW for the rest")
    lr: float = opt(3e-3, lo=0.0, hi=10.0, help="AdamW learning rate")
    matrix_lr: float = opt(0.02, lo=0.0, hi=10.0, help="Muon learning rate for hidden matrices")
    weight_decay: float = opt(0.0, lo=0.0, hi=10.0)
    beta1: float = opt(0.9, lo=0.0, hi=0.99999)
    beta2: float = opt(0.95, lo=0.0, hi=0.99999)
    schedule: str = opt("wsd", choices=["cosine", "wsd", "constant"])
    warmup_steps: int = opt(20, lo=0)
    decay_fraction: float = opt(0.3, lo=0.0, hi=1.0, help="wsd: final fraction of steps spent decaying")
    min_lr_ratio: float = opt(0.0, lo=0.0, hi=1.0)
    max_steps: int = opt(1000, lo=1)
    tokens_per_param: float = opt(0.0, lo=0.0, hi=100_000.0, help="pretrain: plan ceil(ratio x parameters / tokens "
                                  "per step) steps instead of max_steps (Chinchilla's 20, nanochat's ratio); "
                                  "0 = max_steps")
    max_minutes: float = opt(0.0, lo=0.0, help="optional wall-time cap; the budget is max_steps, and a stage "
                             "the cap cuts short says so; 0 = no cap")
    clip_grad: float = opt(1.0, lo=0.0, help="0 = no clipping")
    dtype: str = opt("auto", choices=["auto", "fp32", "bf16"],
                     help="auto = bf16 on CUDA and on CPUs where bf16 is measured fast, else fp32 everywhere "
                          "(Muon's Newton-Schulz included); the setting is fingerprinted, the choice auto makes "
                          "and its probe are recorded in the manifest only")
    compile: bool = opt(False)
    parallel: str = opt("ddp", choices=["ddp", "fsdp"],
                        help="under torchrun: ddp = a whole model per process; fsdp = FSDP2, parameters, gradients "
                             "and optimizer state sharded across processes, with sharded (DCP) checkpoints that "
                             "resume at any process count (pretrain only)")
    eval_every: int = opt(50, lo=1)
    eval_batches: int = opt(8, lo=1, help="validation size, in global batches")
    patience: int = opt(4, lo=0, help="evals without val improvement before stopping; 0 = never stop early")
    min_delta: float = opt(1e-3, lo=0.0, help="smallest val-loss drop that counts as improvement")
    checkpoint_every: int = opt(100, lo=1)
    log_every: int = opt(10, lo=1)


@dataclass
class SynthConfig:
    """Instruction data made locally from the fact table (lmforge/tasks/synth.py)."""
    seed: int = opt(11, lo=0)
    held_out_fact_fraction: float = opt(0.15, lo=0.0, hi=0.9, help="trained facts SFT never mentions")
    held_out_dev_share: float = opt(0.3, lo=0.0, hi=1.0, help="of those, the dev part (choosing SFT settings); "
                                    "the rest is the test part behind the headline figure")
    repeats: int = opt(1, lo=1, hi=100, help="single-question conversations per usable fact")
    multi_turn_fraction: float = opt(0.6, lo=0.0, hi=1.0, help="entities that also get a multi-turn chat")
    summary_fraction: float = opt(0.6, lo=0.0, hi=1.0, help="entities that also get a summary request")
    system_prompt_fraction: float = opt(0.3, lo=0.0, hi=1.0)
    style_noise: float = opt(0.4, lo=0.0, hi=1.0, help="single answers that ramble or are curt, as in real data")
    unknown_fraction: float = opt(0.02, lo=0.0, hi=0.5,
                                  help="extra conversations about invented names, answered \"I don't know\"")
    self_instruct: int = opt(0, lo=0, help="answers the base model writes itself (verified); 0 = off")
    reasoning_problems: int = opt(1500, lo=0, help="worked word problems from datasets/reasoning_sft.jsonl "
                                  "(the reasoning stage) added to the SFT data; 0 = none")
    tool_use: str = opt("calls", choices=["calls", "plain", "off"],
                        help="tool-use conversations: with tool calls and results (calls), the same conversations "
                             "with the calls written out as plain arithmetic or recalled text (plain: the no-tools "
                             "baseline), or none (off)")
    tool_problems: int = opt(1500, lo=0, help="worked word problems whose arithmetic goes through the calculator "
                             "(more problems of reasoning_sft.jsonl, after the plain ones)")
    lookup_questions: int = opt(1500, lo=0, help="questions answered from lookup results, about the shelf's practice "
                                "entities and the reserved unseen ones, every entity once before any twice")
    lookup_unanswerable: int = opt(600, lo=0, help="questions about invented names: lookup finds nothing relevant "
                                   "and the answer is \"I don't know\"")
    lookup_entities: int = opt(0, lo=0, help="ask SFT about at most this many of the shelf's practice entities "
                               "(0 = all); the rest stay unnamed for grpo.tasks=lookup to train on")
    no_tool_questions: int = opt(150, lo=0, help="conversations with tools offered that need none")


@dataclass
class SFTConfig(TrainConfig):
    """Supervised fine-tuning: the shared loop's settings plus how conversations become batches."""
    data_path: str = opt("", help="your own JSONL/Parquet (messages or prompt/completion); empty = datasets/sft.jsonl")
    packing: bool = opt(True, help="pack conversations into full rows (attention kept inside each); false = pad")
    pretrain_mix: float = opt(0.0, lo=0.0, hi=0.9, help="fraction of rows that are pretraining text")
    val_fraction: float = opt(0.05, lo=0.0, hi=0.5, help="conversations held out for validation loss")
    eval_limit: int = opt(400, lo=1, help="questions asked per evaluation split")


@dataclass
class ReasoningConfig:
    """Built-in verifiable word problems (lmforge/tasks/reasoning.py): how many, how hard, how split."""
    seed: int = opt(17, lo=0)
    problems_per_level: int = opt(2000, lo=1, hi=1_000_000, help="distinct problems per language and difficulty")
    max_difficulty: int = opt(3, lo=1, hi=8, help="difficulty = arithmetic steps; levels 1..max_difficulty")
    test_fraction: float = opt(0.05, lo=0.0, hi=0.5, help="solution chains held out for the headline evaluation only")
    dev_fraction: float = opt(0.05, lo=0.0, hi=0.5, help="solution chains held out for choosing settings (dev)")
    sft_fraction: float = opt(0.25, lo=0.0, hi=0.9, help="problems whose worked solutions synth may use")


@dataclass
class PreferencesConfig:
    """The preferences stage (lmforge/tasks/preferences.py) and `lmforge label`: prompts, candidates, annotator.
    Called `label` before; that name is still read."""
    seed: int = opt(23, lo=0)
    annotator: str = opt("auto", choices=["auto", "human"],
                         help="auto = judge candidates by the world's ground truth; human = use only labels "
                              "people gave with `lmforge label`")
    prompts: int = opt(800, lo=1, help="training prompts sampled for labeling (reward/DPO train pairs, PPO prompts)")
    dev_prompts: int = opt(100, lo=1, help="dev prompts labeled too: reward and DPO checkpoint selection")
    test_prompts: int = opt(200, lo=1, help="test prompts labeled too: the reward model's headline accuracy")
    candidates: int = opt(6, lo=2, hi=16, help="answers sampled per prompt (N)")
    held_out_entity_share: float = opt(0.35, lo=0.0, hi=1.0,
                                       help="share of prompts asking about entities the model never saw")
    eval_entity_fraction: float = opt(0.5, lo=0.0, hi=0.9,
                                      help="unused since unseen entities are partitioned by world.unseen_*_share "
                                           "(kept so older run folders load)")
    dev_fact_share: float = opt(0.15, lo=0.0, hi=0.45, help="known-entity facts (with their reverses) asked only "
                                "by dev prompts")
    test_fact_share: float = opt(0.25, lo=0.0, hi=0.45, help="known-entity facts asked only by test prompts")
    eval_prompts: int = opt(200, lo=10, help="test prompts in datasets/preferences_eval.jsonl: PPO/DPO headline")
    eval_dev_prompts: int = opt(100, lo=1, help="dev prompts there: for tuning PPO/DPO settings")
    noise: float = opt(0.1, lo=0.0, hi=0.5, help="automatic annotator: share of pairs it gets wrong")
    noise_model: str = opt("flip", choices=["flip", "gap"],
                           help="flip = every pair equally likely wrong; gap = Bradley-Terry, close calls "
                                "wrong more often (mean rate still `noise`)")
    temperature: float = opt(1.0, lo=0.0, hi=10.0, help="sampling temperature of the candidates")
    max_new_tokens: int = opt(48, lo=4, hi=4096)
    host: str = opt("127.0.0.1", help="`lmforge label` web page address")
    port: int = opt(8100, lo=0, hi=65535)


@dataclass
class RewardConfig(TrainConfig):
    """Reward model (lmforge/train/reward.py): the shared loop's settings plus the Bradley-Terry loss's."""
    data_path: str = opt("", help="preference JSONL (prompt/chosen/rejected); empty = datasets/preferences.jsonl")
    val_fraction: float = opt(0.1, lo=0.01, hi=0.5, help="your own pairs (no split given): the dev share, by prompt; "
                              "the world's pairs carry their split (by fact) from the preferences stage")
    test_fraction: float = opt(0.1, lo=0.01, hi=0.5, help="your own pairs (no split given): the test share, by prompt")
    margin: float = opt(0.0, lo=0.0, hi=100.0, help="required reward gap: -log sigmoid(r_c - r_r - margin)")
    center_coef: float = opt(0.01, lo=0.0, hi=10.0, help="reward centering: coef * (r_c + r_r)^2 keeps rewards near 0")
    likelihood: bool = opt(True, help="add the answer's mean and min log-probability under the backbone's own LM "
                                      "(learned weights) to the head's score")


@dataclass
class PPOConfig(TrainConfig):
    """RLHF with PPO (lmforge/train/ppo.py). batch_size = rollouts per loss micro-batch;
    max_steps counts rollout batches."""
    data_path: str = opt("", help="prompt JSONL ({\"prompt\": messages or text}); empty = datasets/label_items.jsonl")
    prompts_per_step: int = opt(32, lo=1, help="prompts (one rollout each) per PPO step")
    max_completion_tokens: int = opt(48, lo=1)
    temperature: float = opt(1.0, lo=0.01, hi=10.0)
    top_p: float = opt(1.0, lo=0.01, hi=1.0)
    kl_coef: float = opt(0.05, lo=0.0, hi=100.0, help="per-token KL penalty to the reference (SFT) model")
    kl_estimator: str = opt("k1", choices=["k1", "k3"])
    gamma: float = opt(1.0, lo=0.0, hi=1.0)
    lam: float = opt(0.95, lo=0.0, hi=1.0, help="GAE lambda")
    cliprange: float = opt(0.2, lo=0.0, hi=10.0, help="policy ratio clip")
    cliprange_value: float = opt(0.2, lo=0.0, hi=100.0, help="value prediction clip")
    vf_coef: float = opt(0.5, lo=0.0, hi=100.0)
    value_lr: float = opt(1e-4, lo=0.0, hi=10.0, help="AdamW learning rate of the value model")
    iterations: int = opt(2, lo=1, hi=64, help="PPO epochs over each rollout batch")
    whiten_advantages: bool = opt(True)
    missing_end_penalty: float = opt(1.0, lo=0.0, hi=100.0, help="subtracted from the reward of answers that never end")
    freeze_embeddings: bool = opt(False, help="keep the policy's token embeddings (and a tied LM head) fixed")
    reward_norm_samples: int = opt(256, lo=0, help="SFT answers scored once to shift and scale the reward model "
                                   "to mean 0, std 1 on them; 0 = raw scores")
    eval_prompts: int = opt(200, lo=1, help="held-out prompts in the before/after evaluation")


@dataclass
class DPOConfig(TrainConfig):
    """Direct preference optimization (lmforge/train/dpo.py)."""
    data_path: str = opt("", help="preference JSONL; empty = datasets/preferences.jsonl")
    loss_type: str = opt("sigmoid", choices=["sigmoid", "ipo"])
    beta: float = opt(0.1, lo=0.0, hi=100.0)
    label_smoothing: float = opt(0.0, lo=0.0, hi=0.5, help="conservative DPO: assumed label-flip rate")
    rpo_alpha: float = opt(0.0, lo=0.0, hi=100.0,
                           help="add alpha x the chosen answer's per-token NLL (RPO), so chosen answers gain "
                                "likelihood instead of only losing less than rejected ones")
    val_fraction: float = opt(0.1, lo=0.01, hi=0.5, help="your own pairs (no split given): the dev share, by prompt")
    test_fraction: float = opt(0.1, lo=0.01, hi=0.5, help="your own pairs (no split given): the test share, by prompt")
    eval_prompts: int = opt(200, lo=1, help="test prompts in the before/after evaluation")


@dataclass
class GRPOConfig(TrainConfig):
    """Reasoning RL with verifiable rewards (lmforge/train/grpo.py): the shared loop's settings plus GRPO's.
    batch_size is the number of completions per loss micro-batch; max_steps counts rollout batches."""
    tasks: str = opt("reasoning", choices=["reasoning", "lookup"],
                     help="reasoning: word problems (data_path, eval_path, dev_path); lookup: questions about the "
                          "shelf's practice entities, tested on unseen entities and unanswerable names, judged by "
                          "the fact judge (needs lookup in grpo.tools; lmforge/tasks/lookup_rl.py)")
    seed: int = opt(0, lo=0, help="seed of training's draws (task order, rollouts); 0 = run.seed. Repeating GRPO "
                    "with other seeds here leaves the earlier stages' fingerprints alone (run.seed is in them all)")
    lookup_values: str = opt("all", choices=["all", "number", "word"],
                             help="grpo.tasks=lookup: train on the practice questions whose answer is a number "
                                  "(\"1752\", \"240700\"), a word, or all; test and dev stay all of them")
    data_path: str = opt("", help="GSM8K-style or prompt-only JSONL; empty = datasets/reasoning.jsonl")
    eval_path: str = opt("", help="test problems (the headline), same formats; empty = datasets/reasoning_eval.jsonl, "
                         "or with your own data_path a held-out slice of it")
    dev_path: str = opt("", help="dev problems (for tuning); empty = datasets/reasoning_dev.jsonl, or with your own "
                        "data_path a held-out slice of it")
    holdout_fraction: float = opt(0.1, lo=0.01, hi=0.4, help="your own data_path without eval_path / dev_path: the "
                                  "share of its problems held out as each missing split (by a hash of the prompt)")
    skip_flat_groups: bool = opt(True, help="leave groups whose rewards are all equal out of the update (no forward "
                                 "or backward); false computes them (they carry zero advantage)")
    answer_column: str = opt("answer")
    rewards: list = opt(["correctness"], help="built-in names (correctness, format, steps, tool_format) or "
                        "module:function")
    tools: list = opt([], help="tools offered in rollouts and the tool evaluation: calculator, lookup, or "
                      "module:function; empty = none")
    reward_weights: list = opt([], help="one weight per reward; empty = all 1.0")
    prompts_per_step: int = opt(16, lo=1, help="prompts sampled per GRPO step")
    group_size: int = opt(8, lo=2, hi=1024, help="G: completions per prompt")
    max_completion_tokens: int = opt(64, lo=1)
    temperature: float = opt(1.0, lo=0.01, hi=10.0, help="rollout sampling temperature")
    top_p: float = opt(1.0, lo=0.01, hi=1.0)
    top_k: int = opt(0, lo=0)
    epsilon: float = opt(0.2, lo=0.0, hi=10.0, help="lower clip of the importance ratio: 1 - epsilon")
    epsilon_high: float = opt(0.28, lo=0.0, hi=10.0, help="upper clip: 1 + epsilon_high (DAPO clip-higher)")
    beta: float = opt(0.0, lo=0.0, hi=100.0, help="KL penalty to the reference (SFT) model, k3 estimator; 0 = off")
    scale_rewards: str = opt("group", choices=["group", "batch", "none"], help="divide advantages by this std")
    loss_type: str = opt("token_mean", choices=["grpo", "dr_grpo", "token_mean"])
    iterations: int = opt(1, lo=1, hi=64, help="mu: optimizer steps on each rollout batch")
    freeze_embeddings: bool = opt(False, help="keep the token embeddings (and a tied LM head) fixed")
    eval_per_difficulty: int = opt(60, lo=1, help="test problems evaluated (greedy pass@1) per difficulty level")
    dev_per_difficulty: int = opt(60, lo=0, help="dev problems evaluated (greedy pass@1 only) per difficulty level; "
                                  "0 = no dev evaluation")
    eval_k: int = opt(8, lo=1, hi=256, help="pass@k: samples per held-out problem")
    eval_k_per_difficulty: int = opt(0, lo=0, help="pass@k on only the first this many of each level; 0 = all")
    eval_temperature: float = opt(1.0, lo=0.01, hi=10.0)
    eval_examples: int = opt(4, lo=0, hi=50, help="worked examples shown in the report")


# Experiment trackers `track.loggers` may name (lmforge/train/trackers.py runs them).
TRACK_LOGGERS = ("tensorboard", "wandb")


@dataclass
class TrackConfig:
    """Experiment trackers beside the JSONL logs (lmforge/train/trackers.py). In no stage's fingerprint:
    they record a run, they do not change it."""
    loggers: list = opt([], help="tensorboard and/or wandb (`pip install 'lmforge[track]'`); [] = the JSONL logs only")
    tensorboard_dir: str = opt("", help="event files, one folder per stage: <run>/tensorboard/<stage>, or with a "
                               "folder of your own <folder>/<run name>/<stage>")
    wandb_project: str = opt("lmforge")
    wandb_entity: str = opt("", help="W&B team or user; empty = your default")
    wandb_mode: str = opt("", choices=["", "online", "offline", "disabled"],
                          help="empty = W&B's own ($WANDB_MODE, else online); offline writes <run>/wandb for "
                               "`wandb sync`")
