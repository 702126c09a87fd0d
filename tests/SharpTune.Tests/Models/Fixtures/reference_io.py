"""Writing the reference fixtures the make_*_reference.py scripts beside this module compute: a checkpoint folder with
config.json, model.safetensors (written by hand: an 8-byte little-endian header length, a JSON header padded with spaces
to an 8-byte boundary, raw little-endian data, HF names in sorted order) and EXPECTED.json (per prompt: input ids,
last-position logits, greedy ids and, where asked, the logits every cached decode step must give), as
tests/SharpTune.Tests/Models/TransformersExpected.cs reads it.
"""
import json
import os
import struct

import torch


def write_safetensors(path, tensors):
    """float32 tensors as F32, bfloat16 ones as BF16, uint8 ones (MXFP4 blocks and scales) as U8."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        if t.dtype == torch.bfloat16:
            dtype, data = "BF16", t.view(torch.int16).numpy().astype("<i2").tobytes()
        elif t.dtype == torch.uint8:
            dtype, data = "U8", t.numpy().tobytes()
        else:
            dtype, data = "F32", t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)   # the format pads the header with spaces to an 8-byte boundary
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def write_fixture(folder, cfg, weights, forward, prompts, greedy_tokens, step_logits):
    """Writes cfg, the weights and, from forward(cfg, weights, ids) -> (1, T, V) logits, EXPECTED.json into folder.

    Greedy ids come from a full forward per token. With step_logits, each prompt also gets the logits at every position
    from the prompt's last to the one before the last greedy token, from one causal forward over the prompt and its
    greedy continuation: what the prefill and each cached decode step must give.
    """
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(folder, "model.safetensors"), weights)
    write_expected(os.path.join(folder, "EXPECTED.json"), cfg, weights, forward, prompts, greedy_tokens, step_logits)


def write_expected(path, cfg, weights, forward, prompts, greedy_tokens, step_logits):
    """Writes what write_fixture's EXPECTED.json holds, for cfg and the weights, to path."""
    cases = []
    for ids in prompts:
        logits = forward(cfg, weights, ids)[0, -1]
        greedy, seq = [], list(ids)
        for _ in range(greedy_tokens):
            nxt = int(forward(cfg, weights, seq)[0, -1].argmax())
            greedy.append(nxt)
            seq.append(nxt)
        case = {"input_ids": ids, "last_logits": [round(float(v), 7) for v in logits], "greedy_ids": greedy}
        if step_logits:
            full = forward(cfg, weights, seq[:-1])[0]
            case["step_logits"] = [[round(float(v), 6) for v in full[pos]] for pos in range(len(ids) - 1, len(seq) - 1)]
        cases.append(case)
    with open(path, "w") as f:
        json.dump({"prompts": cases}, f)


def write_named_fixtures(here, fixtures, names, random_weights, forward, prompts, greedy_tokens):
    """Writes each (name, make_config, seed) of fixtures into here/name, or only those in names when any are given."""
    for name, make_config, seed in fixtures:
        if names and name not in names:
            continue
        cfg = make_config()
        write_fixture(os.path.join(here, name), cfg, random_weights(cfg, seed), forward, prompts, greedy_tokens, step_logits=True)
