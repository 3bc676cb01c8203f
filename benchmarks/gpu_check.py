# Run on a GPU machine from the repo root (after `prepare configs/tiny.yaml` built runs/tiny/world):
#   python benchmarks/gpu_check.py   (writes to $OUT or /tmp/out)
"""GPU check: the real trainer (accelerate, bf16 autocast) on the tiny preset for several plugins, and
EntroDrop's per-step overhead on a Qwen3-0.6B-shaped model, side by side with plain."""
import json, os, shutil, subprocess, sys, time, statistics
import torch
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
out = os.environ.get("OUT", "/tmp/out")
runs = "/tmp/gpu/runs"
os.makedirs(runs, exist_ok=True)
shutil.copytree("runs/tiny/world", f"{runs}/world", dirs_exist_ok=True)
cmd = [sys.executable, "-m", "entrodrop_bench.cli", "train", "configs/tiny.yaml", f"output.runs_dir={runs}",
       "output.results_dir=/tmp/gpu/results", "train.parallel_runs=1", "train.threads=null", "--no-progress"]
for r in ["plain", "entrodrop", "token_dropout", "neftune", "hidden_dropout@p=0.1", "weight_decay@weight_decay=0.1", "entrodrop_static"]:
    cmd += ["--run", r]
t0 = time.time()
res = subprocess.run(cmd, capture_output=True, text=True)
print("train rc", res.returncode, f"{time.time() - t0:.0f}s"); print(res.stdout[-3000:]); print(res.stderr[-3000:])
summary = {}
for run in os.listdir(f"{runs}/train"):
    d = f"{runs}/train/{run}/seed0"
    curve = json.load(open(f"{d}/val_curve.json"))
    st = json.load(open(f"{d}/status.json"))
    log = [json.loads(l) for l in open(f"{d}/train_log.jsonl")]
    summary[run] = {"state": st["state"], "min_val": min(p["overall"] for p in curve[1:]), "final_val": curve[-1]["overall"],
                    "min_epoch": min(curve[1:], key=lambda p: p["overall"])["target_epoch"], "tok_s": statistics.median(r["tokens_per_s"] for r in log),
                    "masked_fraction": log[-1].get("masked_fraction")}
print(json.dumps(summary, indent=1))
json.dump(summary, open(f"{out}/gpu_tiny_train.json", "w"), indent=1)

# EntroDrop step overhead at a Qwen3-0.6B shape (random weights), same batches, interleaved repeats.
from pathlib import Path
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM
from entrodrop_bench.regularizer import PrepareContext, TokenMeta, build_regularizer
torch.manual_seed(0)
cfg = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, max_position_embeddings=4096, tie_word_embeddings=True)
dev = torch.device("cuda")
B, T = 2, 4096
tok = AutoTokenizer.from_pretrained(f"{runs}/world/tokenizer")
docs = [torch.randint(0, 151936, (T,)).tolist() for _ in range(B)]
ids = torch.tensor(docs, device=dev)
meta_kw = dict(domain=torch.ones(B, T, dtype=torch.long, device=dev), doc_id=torch.arange(B, device=dev)[:, None].expand(B, T),
               position=torch.arange(T, device=dev).expand(B, T), is_special=torch.zeros(B, T, dtype=torch.bool, device=dev),
               is_pad=torch.zeros(B, T, dtype=torch.bool, device=dev), total_steps=100)
models, regs, opt = {}, {}, {}
for name in ("entrodrop", "plain"):
    torch.manual_seed(0)
    m = Qwen3ForCausalLM(cfg).to(dev)
    reg = build_regularizer(name, {"gamma_max": 0.1, "schedule": "static"} if name == "entrodrop" else {})
    t0 = time.time()
    reg.prepare(PrepareContext(model=m, base_model_path="random", tokenizer=tok, target_docs=docs, cache_dir=Path("/tmp/gpu/cache"),
                               seq_len=T, total_steps=100, device=dev, extra={"seed": 0}))
    print(name, "prepare", f"{time.time() - t0:.2f}s")
    m.train()
    models[name], regs[name], opt[name] = m, reg, torch.optim.AdamW(m.parameters(), lr=1e-5)

def step(n, j):
    m = models[n]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        e = m.get_input_embeddings()(ids)
        e = regs[n].transform_embeddings(e, TokenMeta(**meta_kw, step=j, generator=torch.Generator().manual_seed(j)))
        loss = m(inputs_embeds=e, labels=ids).loss
    loss.backward(); opt[n].step(); opt[n].zero_grad(set_to_none=True)

def timed(n, j):
    torch.cuda.synchronize(); t = time.perf_counter(); step(n, j); torch.cuda.synchronize(); return time.perf_counter() - t

for j in range(3):
    timed("entrodrop", j), timed("plain", j)
ratios, te, tp = [], [], []
for j in range(3, 23):
    a, b = timed("entrodrop", j), timed("plain", j)
    te.append(a); tp.append(b); ratios.append(a / b)
res = {"ratio_median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "entrodrop_s": statistics.median(te),
       "plain_s": statistics.median(tp), "tokens_per_step": B * T, "log": regs["entrodrop"].log_values()}
print(json.dumps(res, indent=1))
json.dump(res, open(f"{out}/gpu_step_ratio.json", "w"), indent=1)
