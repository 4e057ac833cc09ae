#!/usr/bin/env python3
"""Trains the cry detector's head on YAMNet embeddings and writes the model the add-on ships.

Reproducible: fixed seeds, the development set in ../shared/fixtures/audio-dev (read its README),
and YAMNet from models/yamnet/. Needs numpy, scipy, scikit-learn, onnx and onnxruntime (versions
are written into models/yamnet/cry-report.json; models/yamnet/README.md gives the results).

  python3 scripts/cry-train.py      # writes models/yamnet/yamnet-cry.onnx and models/yamnet/cry-report.json

What it does:
1. Every clip in three camera conditions: clean, G.711 (mu-law or A-law, 8 kHz round trip) and a
   noise-machine bed (pink, white, brown or fan-like noise at -45..-32 dBFS, the sound 2..14 dB
   above it) then G.711. The cries are all 8 kHz phone recordings, so G.711 on everything keeps a
   model from learning "no energy above 4 kHz = cry" (the set's README).
2. YAMNet's 1024-d embedding (the global average pool) per 0.975 s patch at a 0.48 s hop.
3. A logistic regression on the embeddings, split by recording (`group`): 75 % of the groups
   train, 25 % validate. Cats, laughter, speech and the other families YAMNet confuses with
   crying weigh more (hard negatives).
4. The detector rule (the same as src/audio/detector.rs) on the validation clips per condition,
   a long negative night, and the threshold curve; the default sensitivity is chosen from it.
5. YAMNet with two more outputs: `embedding` [1, 1024] and `cry` [1, 1], the head's probability.
"""
import audioop, csv, hashlib, json, math, os, wave
import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper, TensorProto
from scipy.signal import resample_poly
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupShuffleSplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV = os.path.join(ROOT, "..", "shared", "fixtures", "audio-dev")
YAMNET = os.path.join(ROOT, "models", "yamnet", "yamnet.onnx")
OUT = os.path.join(ROOT, "models", "yamnet")
EMBEDDING = "yamnet_frames/global_average_pooling2d/Mean_Squeeze__273:0"
PATCH, HOP, RATE = 15600, 7680, 16000
SEED = 20261204
# The rule (src/audio/detector.rs): a patch's probability, averaged over the last SMOOTH patches;
# crying starts when the average reaches the threshold, and ends `hold` after the last patch
# whose own probability reached threshold * RELEASE. Patches below the gate count as 0.
SMOOTH, RELEASE, GATE_DBFS = 3, 0.6, -50.0
HARD = {"animal": 3.0, "human_nonspeech": 2.0, "speech": 2.0, "music": 1.5}
# The head's regularisation and how much more a negative patch weighs than a balanced share.
C, NEGATIVE_WEIGHT = 0.05, 1.0
CRY_VOICED_DB = 6.0


def read(path):
    with wave.open(path) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


def g711(x, law):
    """8 kHz G.711 round trip, as a camera sends it."""
    narrow = resample_poly(x, 1, 2)
    pcm = (np.clip(narrow, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()
    if law == "u":
        back = audioop.ulaw2lin(audioop.lin2ulaw(pcm, 2), 2)
    else:
        back = audioop.alaw2lin(audioop.lin2alaw(pcm, 2), 2)
    y = np.frombuffer(back, "<i2").astype(np.float32) / 32768.0
    return resample_poly(y, 2, 1)[: len(x)].astype(np.float32)


def noise(kind, n, rng):
    """Noise-machine beds: 1/f^a spectra (white 0, pink 1, brown 2), and a fan (brown, low-passed, hum)."""
    exponent = {"white": 0.0, "pink": 1.0, "brown": 2.0, "fan": 2.0}[kind]
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n, 1 / RATE)
    f[0] = f[1]
    spectrum *= f ** (-exponent / 2)
    if kind == "fan":
        spectrum *= 1 / (1 + (f / 800) ** 2)
    y = np.fft.irfft(spectrum, n).astype(np.float32)
    if kind == "fan":
        t = np.arange(n) / RATE
        y += 0.2 * np.std(y) * np.sin(2 * np.pi * 50 * t)
    return y / (np.sqrt(np.mean(y**2)) + 1e-12)


def rms_db(x):
    return 20 * math.log10(max(float(np.sqrt(np.mean(x**2))), 1e-9))


def on_bed(x, kind, bed_db, snr_db, rng):
    bed = noise(kind, len(x), rng) * 10 ** (bed_db / 20)
    level = rms_db(x)
    sound = x * 10 ** ((bed_db + snr_db - level) / 20)
    return np.clip(sound + bed, -1, 1).astype(np.float32)


def patches(x):
    n = 1 + max(0, math.ceil((len(x) - PATCH) / HOP))
    x = np.pad(x, (0, PATCH + (n - 1) * HOP - len(x)))
    return [x[i * HOP : i * HOP + PATCH] for i in range(n)]


class Yamnet:
    def __init__(self, path):
        model = onnx.load(path)
        model.graph.output.append(helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, [1, 1024]))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(self, patch):
        scores, embedding = self.session.run(["Identity", EMBEDDING], {"input_1": patch[None]})
        return scores[0], embedding[0]


def condition_audio(x, condition, rng):
    if condition == "clean":
        return x
    if condition == "g711":
        return g711(x, "u")
    if condition == "noise_g711":  # the evaluation's nursery: pink noise at -38 dBFS, the sound 8 dB above
        return g711(on_bed(x, "pink", -38.0, 8.0, rng), "u")
    raise ValueError(condition)


def augmented(x, is_cry, rng):
    """Training copies of one clip: G.711 both laws, clean, and noise-machine beds then G.711.
    Negatives get twice the beds: in a nursery the noise machine runs all night under them."""
    yield g711(x, "u")
    yield g711(x, "a")
    yield x
    for _ in range(3 if is_cry else 6):
        kind = rng.choice(["pink", "white", "brown", "fan"])
        yield g711(on_bed(x, kind, rng.uniform(-45, -32), rng.uniform(0, 14), rng), rng.choice(["u", "a"]))


def detect(probabilities, levels, threshold, hold_patches=20):
    """The rule of src/audio/detector.rs; returns the patch indexes where crying starts."""
    window, starts, crying, quiet = [], [], False, 0
    for i, (p, level) in enumerate(zip(probabilities, levels)):
        window.append(p if level >= GATE_DBFS else 0.0)
        window = window[-SMOOTH:]
        smooth = sum(window) / SMOOTH
        if not crying and len(window) == SMOOTH and smooth >= threshold:
            crying, quiet = True, 0
            starts.append(i)
        elif crying:
            quiet = quiet + 1 if window[-1] < threshold * RELEASE else 0
            if quiet >= hold_patches:
                crying = False
    return starts


def embed_all(yamnet, rows, train_idx, val_idx, labels):
    """Embeddings of every training copy, every validation clip per condition, and the night."""
    rng = np.random.default_rng(SEED)
    X, y, w, fam = [], [], [], []
    for n, i in enumerate(train_idx):
        row, x = rows[i], read(os.path.join(DEV, rows[i]["file"]))
        # A cry window holds pauses for breath: only its voiced patches (within CRY_VOICED_DB of
        # its loudest, measured on the clip as recorded) are labelled cry. Labelling a pause cry
        # would teach the head that a noise bed is crying.
        levels = [rms_db(p) for p in patches(x)]
        keep = [not labels[i] or level >= max(levels) - CRY_VOICED_DB for level in levels]
        for copy in augmented(x, labels[i], rng):
            for patch, kept in zip(patches(copy), keep):
                if not kept or rms_db(patch) < GATE_DBFS:
                    continue
                X.append(yamnet.run(patch)[1])
                y.append(labels[i])
                fam.append(row["family"])
        if n % 50 == 0:
            print(f"  train clip {n}/{len(train_idx)}", flush=True)
    data = {"X": np.array(X), "y": np.array(y), "family": np.array(fam)}

    def embedded(x):
        ps = patches(x)
        return np.array([yamnet.run(p)[1] for p in ps]), np.array([rms_db(p) for p in ps])

    for condition in CONDITIONS:
        crng = np.random.default_rng(SEED + 1)
        for k, i in enumerate(val_idx):
            e, l = embedded(condition_audio(read(os.path.join(DEV, rows[i]["file"])), condition, crng))
            data[f"{condition}/{k}/e"], data[f"{condition}/{k}/l"] = e, l
    data["night/e"], data["night/l"] = embedded(night(rows, val_idx, labels))
    return data


CONDITIONS = ["clean", "g711", "noise_g711"]
NIGHT_MINUTES = 60


def night(rows, val_idx, labels):
    """Validation negatives at random times and gains over a pink bed at -38 dBFS, then G.711."""
    negatives = [read(os.path.join(DEV, rows[i]["file"])) for i in val_idx if not labels[i]]
    rng = np.random.default_rng(SEED + 2)
    bed = noise("pink", NIGHT_MINUTES * 60 * RATE, rng) * 10 ** (-38 / 20)
    t = 0
    while True:
        t += int(rng.uniform(5, 40) * RATE)
        clip = negatives[rng.integers(len(negatives))]
        if t + len(clip) >= len(bed):
            break
        gain_db = -38 + rng.uniform(0, 14) - rms_db(clip)
        bed[t : t + len(clip)] += clip * 10 ** (gain_db / 20)
        t += len(clip)
    return g711(np.clip(bed, -1, 1).astype(np.float32), "u")


def fit(data, negative_weight, c):
    X, y = data["X"], data["y"]
    w = np.array([HARD.get(f, 1.0) for f in data["family"]])
    w = w * np.where(y, (~y).sum() / y.sum(), negative_weight)
    head = LogisticRegression(C=c, max_iter=5000)
    head.fit(X, y, sample_weight=w)
    return head


def evaluate(head, data, rows, val_idx, labels, thresholds):
    report = {"conditions": {}}
    for condition in CONDITIONS:
        curve = {}
        for t in thresholds:
            results = []
            for k, i in enumerate(val_idx):
                p = head.predict_proba(data[f"{condition}/{k}/e"])[:, 1]
                results.append((labels[i], rows[i]["file"], detect(p, data[f"{condition}/{k}/l"], t)))
            # When the patch that started the cry ends, from the clip's start.
            latency = [s[0] * HOP / RATE + PATCH / RATE for c, _, s in results if c and s]
            curve[t] = {"recall": sum(1 for c, _, s in results if c and s),
                        "cries": int(sum(1 for c, _, _ in results if c)),
                        "false_alarms": sum(1 for c, _, s in results if not c and s),
                        "others": int(sum(1 for c, _, _ in results if not c)),
                        "alarm_files": [f for c, f, s in results if not c and s],
                        "missed_files": [f for c, f, s in results if c and not s],
                        "latency_s_median": float(np.median(latency)) if latency else None,
                        "latency_s_max": float(np.max(latency)) if latency else None}
        report["conditions"][condition] = curve
    p = head.predict_proba(data["night/e"])[:, 1]
    report["night_minutes"] = NIGHT_MINUTES
    report["night_alarms"] = {t: len(detect(p, data["night/l"], t)) for t in thresholds}
    return report


def main():
    rows = list(csv.DictReader(open(os.path.join(DEV, "manifest.csv"))))
    groups = np.array([r["group"] for r in rows])
    labels = np.array([r["label"] == "cry" for r in rows])
    split = GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=SEED)
    train_idx, val_idx = next(split.split(rows, labels, groups))
    print(f"{len(rows)} clips: {len(train_idx)} train, {len(val_idx)} validation "
          f"({labels[val_idx].sum()} cries, {(~labels[val_idx]).sum()} others)", flush=True)
    yamnet = Yamnet(YAMNET)
    cache = os.environ.get("CRY_CACHE")
    if cache and os.path.exists(cache):
        data = dict(np.load(cache))
    else:
        data = embed_all(yamnet, rows, train_idx, val_idx, labels)
        if cache:
            np.savez(cache, **data)
    thresholds = [round(float(t), 2) for t in np.arange(0.3, 0.96, 0.05)]
    head = fit(data, NEGATIVE_WEIGHT, C)
    report = evaluate(head, data, rows, val_idx, labels, thresholds)
    for condition, curve in report["conditions"].items():
        print(condition, {t: (c["recall"], c["false_alarms"]) for t, c in curve.items()}, flush=True)
    print("night alarms", report["night_alarms"], flush=True)
    report.update({"seed": SEED, "smooth": SMOOTH, "release": RELEASE, "gate_dbfs": GATE_DBFS,
                   "c": C, "negative_weight": NEGATIVE_WEIGHT, "hard_negative_weights": HARD,
                   "train_patches": int(len(data["y"])), "train_cry_patches": int(data["y"].sum()),
                   "validation_files": sorted(rows[i]["file"] for i in val_idx)})

    # Write the model: YAMNet + `embedding` + `cry`.
    model = onnx.load(YAMNET)
    graph = model.graph
    graph.initializer.extend([
        numpy_helper.from_array(head.coef_.T.astype(np.float32), "cry_head/weight"),
        numpy_helper.from_array(head.intercept_.astype(np.float32), "cry_head/bias"),
    ])
    graph.node.extend([
        helper.make_node("Identity", [EMBEDDING], ["embedding"], name="cry_head/embedding"),
        helper.make_node("Gemm", ["embedding", "cry_head/weight", "cry_head/bias"], ["cry_head/logit"], name="cry_head/gemm"),
        helper.make_node("Sigmoid", ["cry_head/logit"], ["cry"], name="cry_head/sigmoid"),
    ])
    graph.output.extend([
        helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 1024]),
        helper.make_tensor_value_info("cry", TensorProto.FLOAT, [1, 1]),
    ])
    onnx.checker.check_model(model)
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "yamnet-cry.onnx")
    onnx.save(model, path)
    # The shipped file must give the head's own probabilities.
    check = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = patches(read(os.path.join(DEV, rows[val_idx[0]]["file"])))[0]
    got = check.run(["cry"], {"input_1": x[None]})[0][0, 0]
    want = head.predict_proba(yamnet.run(x)[1][None])[0, 1]
    assert abs(got - want) < 1e-4, (got, want)
    report["model_sha256"] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    report["versions"] = {"numpy": np.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__,
                          "scikit-learn": __import__("sklearn").__version__, "scipy": __import__("scipy").__version__}
    json.dump(report, open(os.path.join(OUT, "cry-report.json"), "w"), indent=1, sort_keys=True)
    print("wrote", path, report["model_sha256"])


if __name__ == "__main__":
    main()
