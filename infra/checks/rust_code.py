"""What a crate's Rust code does (a function's, or the operator CLI's), read from its sources: the production code of its crate
plus the shared crate's modules it compiles (every non-adapter module, and the adapters behind
the `inventory` features its Cargo.toml enables). Test modules (`#[cfg(test)]`) are left out.

- `sdk_calls(crate)`: the AWS SDK operations it calls, as (sdk, OperationName), found as the
  fluent `.operation_name()` calls of the SDK clients a source file uses (`aws_sdk_<x>`),
  checked against the operation list of that service's model (botocore's copy of it).
- `log_messages(crate)`: the messages of its `tracing::<level>!(..., "message")` lines.
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
FUNCTIONS = ROOT / "functions"
SHARED = ROOT / "shared" / "src"

# Rust SDK crate suffix -> botocore service model name.
SDK_MODELS = {"s3": "s3", "sfn": "stepfunctions", "secretsmanager": "secretsmanager",
              "kinesis": "kinesis", "sqs": "sqs", "kms": "kms", "dynamodb": "dynamodb", "sns": "sns",
              "cloudwatch": "cloudwatch", "cloudformation": "cloudformation", "lambda": "lambda",
              "rds": "rds", "elasticache": "elasticache"}


def crate_of(function_resource: dict) -> str | None:
    """The crate a function resource is built from (Metadata.BuildProperties.Binary, which
    SAM passes through the transform)."""
    binary = ((function_resource.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
    if binary and (FUNCTIONS / binary / "Cargo.toml").exists():
        return binary
    return None


def crate_dir(crate: str) -> Path:
    """A function's crate (functions/<name>) or a top-level crate of the workspace (cli)."""
    return FUNCTIONS / crate if (FUNCTIONS / crate / "Cargo.toml").exists() else ROOT / crate


def enabled_features(crate: str) -> set[str]:
    """The `inventory` features the crate's Cargo.toml names, and the features those turn on
    (`s3-client` turns on `aws`), as cargo resolves them."""
    cargo = (crate_dir(crate) / "Cargo.toml").read_text()
    m = re.search(r'^inventory\s*=\s*\{[^}]*features\s*=\s*\[([^\]]*)\]', cargo, flags=re.M)
    named = set(re.findall(r'"([^"]+)"', m.group(1))) if m else set()
    table = tomllib.loads((SHARED.parent / "Cargo.toml").read_text()).get("features", {})
    enabled, todo = set(), list(named)
    while todo:
        f = todo.pop()
        if f not in enabled:
            enabled.add(f)
            todo += [g for g in table.get(f, []) if g in table]
    return enabled


def adapter_modules() -> dict[str, str]:
    """adapter module -> the feature it sits behind (shared/src/adapters/mod.rs)."""
    text = (SHARED / "adapters" / "mod.rs").read_text()
    return {mod: feat for feat, mod in re.findall(r'#\[cfg\(feature = "([^"]+)"\)\]\s*pub mod (\w+);', text)}


def _production(path: Path) -> tuple[str, set[Path]]:
    """The file's text without its inline test module, and the test-only module files it declares."""
    text = path.read_text()
    excluded = set()
    for mod in re.findall(r'#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod (\w+);', text):
        base = path.parent if path.name in ("lib.rs", "main.rs", "mod.rs") else path.parent / path.stem
        excluded |= {base / f"{mod}.rs", base / mod}
    cut = re.search(r'#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod \w+\s*\{', text)
    return (text[:cut.start()] if cut else text), excluded


def _sources_under(root: Path, skip: set[Path] = frozenset()) -> dict[Path, str]:
    files, excluded = {}, set()
    for path in sorted(root.rglob("*.rs")):
        body, ex = _production(path)
        files[path] = body
        excluded |= ex
    return {p: t for p, t in files.items()
            if not any(p == e or e in p.parents for e in excluded | set(skip))}


@functools.lru_cache(maxsize=None)
def production_sources(crate: str) -> dict[Path, str]:
    out = _sources_under(crate_dir(crate) / "src")
    features = enabled_features(crate)
    disabled = {SHARED / "adapters" / m for m, f in adapter_modules().items() if f not in features}
    disabled |= {p.with_suffix(".rs") for p in disabled}
    out.update(_sources_under(SHARED, skip=disabled))
    return out


@functools.lru_cache(maxsize=None)
def operations(sdk: str) -> dict[str, str]:
    """snake_case fluent name -> OperationName, from the service model."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model(SDK_MODELS[sdk])
    return {xform_name(op): op for op in model.operation_names}


def client_helpers(sources: dict[Path, str]) -> dict[str, str]:
    """fn name -> sdk, for the crate's functions that return an SDK client
    (`fn s3_client(conf: &SdkConfig) -> aws_sdk_s3::Client`): a file that calls one uses that
    SDK without naming its crate."""
    out = {}
    for text in sources.values():
        for name, sdk in re.findall(r'\bfn\s+(\w+)\s*\([^)]*\)\s*->\s*aws_sdk_(\w+)::Client\b', text):
            if sdk in SDK_MODELS:
                out[name] = sdk
    return out


def sdk_calls_in(text: str, helpers: dict[str, str] | None = None) -> set[tuple[str, str]]:
    """(sdk, OperationName) for every SDK operation a source text calls."""
    sdks = {s for s in re.findall(r'\baws_sdk_(\w+)', text) if s in SDK_MODELS}
    sdks |= {sdk for name, sdk in (helpers or {}).items() if re.search(rf'\b{name}\s*\(', text)}
    calls = set(re.findall(r'\.\s*([a-z][a-z0-9_]*)\(\)', text))
    out = set()
    for sdk in sdks:
        ops = operations(sdk)
        out |= {(sdk, ops[c]) for c in calls if c in ops}
    return out


def sdk_calls(crate: str) -> dict[tuple[str, str], list[Path]]:
    """(sdk, OperationName) -> the files that call it."""
    out: dict[tuple[str, str], list[Path]] = {}
    sources = production_sources(crate)
    helpers = client_helpers(sources)
    for path, text in sources.items():
        for call in sdk_calls_in(text, helpers):
            out.setdefault(call, []).append(path)
    return out


def unmapped_sdks(crate: str) -> dict[str, list[Path]]:
    """SDK crates (`aws_sdk_<x>`) the code uses that SDK_MODELS does not map: their calls would
    go unseen, so a check built on sdk_calls must report them."""
    out: dict[str, list[Path]] = {}
    for path, text in production_sources(crate).items():
        for sdk in sorted(set(re.findall(r'\baws_sdk_(\w+)', text)) - set(SDK_MODELS)):
            out.setdefault(sdk, []).append(path)
    return out


def log_messages(crate: str) -> set[str]:
    """The message (last string literal) of every tracing event the crate's code can log."""
    out = set()
    for text in production_sources(crate).values():
        for body in re.findall(r'tracing::(?:trace|debug|info|warn|error)!\((.*?)\);', text, flags=re.S):
            m = re.search(r'"((?:[^"\\]|\\.)*)"\s*,?\s*\)?\s*$', body.strip() + ")")
            if m:
                out.add(m.group(1))
    return out


def log_fields(crate: str) -> dict[str, set[str]]:
    """Message -> the names of the fields logged with it, over every tracing event of the
    crate's code that logs that message (`name = value`, `name = ?value`, `name = %value`)."""
    out: dict[str, set[str]] = {}
    for text in production_sources(crate).values():
        for body in re.findall(r'tracing::(?:trace|debug|info|warn|error)!\((.*?)\);', text, flags=re.S):
            m = re.search(r'"((?:[^"\\]|\\.)*)"\s*,?\s*\)?\s*$', body.strip() + ")")
            if m:
                fields = set(re.findall(r'(?:^|,)\s*([a-z_][a-z0-9_.]*)\s*=(?!=)', body))
                out.setdefault(m.group(1), set()).update(fields)
    return out


def log_layout(init: str | None = None) -> str:
    """Where a tracing event's message sits in the JSON lines the functions write
    (shared/src/adapters/lambda.rs, init_tracing): tracing-subscriber's JSON formatter nests the
    event's fields under "fields" unless `flatten_event(true)` is set."""
    text = init if init is not None else (SHARED / "adapters" / "lambda.rs").read_text()
    if ".json()" not in text:
        return "not JSON"
    return "flattened" if re.search(r"\.flatten_event\(\s*true\s*\)", text) else "fields"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def request_actions(crate: str) -> tuple[set[str], set[str] | None] | None:
    """What a direct invocation of the crate's function may ask for: the `"action"` values its
    request type accepts (the variants of its `enum Action`, as serde names them: each
    variant's `rename`, else `rename_all = "snake_case"`, else the variant's name), and the
    fields of the struct holding it when that struct has `deny_unknown_fields` (None when it
    takes unknown fields). None when the crate's code has no `enum Action`."""
    for text in production_sources(crate).values():
        m = re.search(r'((?:#\[[^\]]*\]\s*)*)pub\s+enum\s+Action\s*\{(.*?)\n\}', text, flags=re.S)
        if not m:
            continue
        snake = 'rename_all = "snake_case"' in m.group(1)
        body = re.sub(r"//[^\n]*", "", m.group(2))
        actions = set()
        for attrs, name in re.findall(r'((?:#\[[^\]]*\]\s*)*)\b([A-Z]\w*)\s*(?:[,({]|$)', body):
            rename = re.search(r'rename\s*=\s*"([^"]+)"', attrs)
            actions.add(rename.group(1) if rename else (_snake(name) if snake else name))
        fields = None
        s = re.search(r'((?:#\[[^\]]*\]\s*)*)pub\s+struct\s+\w+\s*\{([^}]*\baction\s*:\s*Action\b[^}]*)\}', text, flags=re.S)
        if s and "deny_unknown_fields" in s.group(1):
            fields = set(re.findall(r'\bpub\s+(\w+)\s*:', s.group(2)))
        return actions, fields
    return None
