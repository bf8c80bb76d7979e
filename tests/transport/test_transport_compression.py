"""Compression on the wire: its typed instruction message, checked as it arrives."""

from __future__ import annotations

import pytest
from hypothesis import given

from extension_strategies import compressions, extensions
from fedhive.core.codecs import Pipeline, Zstd
from fedhive.core.extensions import Compression, Extension
from fedhive.core.messages import ClientConfig
from fedhive.errors import ValidationError
from fedhive.transport.codec import config_from_proto, config_to_proto


@given(
    compressions(),
    extensions().map(lambda e: tuple(x for x in e if not isinstance(x, Compression))),
)
def test_a_compression_instruction_travels_in_its_own_typed_message(
    ask: Compression, others: tuple[Extension, ...]
) -> None:
    config = ClientConfig(extensions=(*others, ask))
    message = config_to_proto(config)
    assert message.extensions.HasField("compression")
    assert dict(message.extra) == {}
    assert config_from_proto(message) == config


def test_a_compression_stage_naming_no_codec_is_refused() -> None:
    config = ClientConfig(extensions=(Compression(pipeline=Pipeline((Zstd(),))),))
    message = config_to_proto(config)
    message.extensions.compression.stages.add()  # an empty oneof
    with pytest.raises(ValidationError, match="names no codec"):
        config_from_proto(message)
    message = config_to_proto(config)
    message.extensions.compression.stages[0].zstd.level = 99
    with pytest.raises(ValidationError, match=r"zstd\.level"):
        config_from_proto(message)
