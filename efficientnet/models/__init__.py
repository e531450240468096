"""Model zoo: one registry of `ModelSpec`s and one builder (keras.layers / keras.ops only)."""

from efficientnet.models.specs import (
    BlockArgs,
    ModelSpec,
    decode_block_string,
    encode_block_args,
    get_spec,
    list_models,
)

__all__ = [
    "BlockArgs",
    "ModelSpec",
    "build",
    "decode_block_string",
    "encode_block_args",
    "get_spec",
    "list_models",
    "tf1_variable_names",
]


def __getattr__(name):
    # The builder imports keras (slow); load it only when asked for.
    if name in ("build", "tf1_variable_names"):
        from efficientnet.models import builder

        return getattr(builder, name)
    raise AttributeError(name)
