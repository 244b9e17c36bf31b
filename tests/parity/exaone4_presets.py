"""Our model presets (configs/models/NAME.yaml) as transformers' Exaone4Config: the one mapping
shared by the parity tests and the benchmarks."""
import os

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PRESET_DIR = os.path.join(REPO, "configs", "models")


def _scalar(text):
    text = text.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "~", ""):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip("'\"")


def _parse_simple_yaml(text):
    """The subset the preset files use: `key: value` lines, comments, one-line flow mappings."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].rstrip()
        if not line:
            continue
        key, _, value = line.partition(":")
        value = value.strip()
        if value.startswith("{") and value.endswith("}"):
            items = (item.partition(":") for item in value[1:-1].split(",") if item.strip())
            out[key.strip()] = {k.strip(): _scalar(v) for k, _, v in items}
        else:
            out[key.strip()] = _scalar(value)
    return out


def load_preset(name_or_path):
    """A preset by name (configs/models/NAME.yaml) or by file path, as a plain dict."""
    path = name_or_path if os.path.isfile(name_or_path) else os.path.join(PRESET_DIR, name_or_path + ".yaml")
    with open(path) as f:
        text = f.read()
    try:
        import yaml
    except ImportError:
        return _parse_simple_yaml(text)
    return yaml.safe_load(text)


def preset_to_config_kwargs(p):
    """Keyword arguments for Exaone4Config from one of our presets."""
    rope = dict(p.get("rope_scaling") or {"type": "none"})
    rope_type = rope.pop("type", "none")
    rope_parameters = {"rope_type": "default" if rope_type == "none" else rope_type,
                       "rope_theta": float(p["rope_theta"])}
    if rope_type == "llama3":
        rope_parameters.update(factor=float(rope["factor"]),
                               low_freq_factor=float(rope["low_freq_factor"]),
                               high_freq_factor=float(rope["high_freq_factor"]),
                               original_max_position_embeddings=int(rope["original_max_position"]))
    elif rope_type != "none":
        raise ValueError(f"preset rope_scaling.type {rope_type!r}: expected llama3 or none")
    kw = dict(vocab_size=p["vocab_size"], hidden_size=p["hidden_size"],
              intermediate_size=p["intermediate_size"], num_hidden_layers=p["num_layers"],
              num_attention_heads=p["num_heads"], num_key_value_heads=p["num_kv_heads"],
              rms_norm_eps=float(p["rms_norm_eps"]), rope_parameters=rope_parameters,
              max_position_embeddings=p["max_position_embeddings"],
              tie_word_embeddings=bool(p["tie_embeddings"]),
              pad_token_id=p.get("pad_token_id"), bos_token_id=p.get("bos_token_id"),
              eos_token_id=p.get("eos_token_id"))
    # head_dim 0 means hidden / heads: leave it out, transformers would read an explicit None
    # as the head size.
    if p.get("head_dim"):
        kw["head_dim"] = p["head_dim"]
    if p.get("sliding_window"):
        kw["sliding_window"] = p["sliding_window"]
        kw["sliding_window_pattern"] = p.get("sliding_window_pattern", 4)
    else:
        # No window: every layer full attention with RoPE. Exaone4Config cannot derive
        # layer_types when the window is None (pattern 0), so name them.
        kw["sliding_window"] = None
        kw["layer_types"] = ["full_attention"] * p["num_layers"]
    if "layer_types" in p:
        kw["layer_types"] = list(p["layer_types"])
    return kw


def make_config(preset, **overrides):
    """Exaone4Config for a preset name, file path or dict; overrides win."""
    from transformers import Exaone4Config
    p = load_preset(preset) if isinstance(preset, str) else preset
    return Exaone4Config(**{**preset_to_config_kwargs(p), **overrides})
