"""openai-harmony as the reference the Harmony tests compare against: our conversations given to it,
and its parses read back as our messages. Shared by test_harmony.py and test_harmony_fuzz.py."""

from __future__ import annotations

from oss_finetune.core import harmony as h
from oss_finetune.core.tokenizer import use_offline_encodings

DATE = "2025-06-28"

use_offline_encodings()
import openai_harmony as oh  # noqa: E402  (needs the offline encodings set first)

ENC = oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)


def tool_descriptions(tools: list[dict]) -> list[oh.ToolDescription]:
    out = []
    for tool in tools:
        fn = h.tool_function(tool)
        out.append(oh.ToolDescription.new(fn["name"], fn.get("description") or "", parameters=fn.get("parameters")))
    return out


def messages(conv: h.Conversation, mode: str = "train") -> list[oh.Message]:
    """The conversation as openai-harmony messages: exactly the ones we show (it is not asked to drop any)."""
    has_system = any(m.role == "system" for m in conv.messages)
    has_developer = any(m.role == "developer" for m in conv.messages)
    msgs = []
    if not has_system:
        effort = oh.ReasoningEffort(conv.reasoning_effort.capitalize())
        system = oh.SystemContent.new().with_reasoning_effort(effort).with_conversation_start_date(DATE)
        msgs.append(oh.Message.from_role_and_content(oh.Role.SYSTEM, system))
    if not has_developer and (conv.instructions() or conv.tools):
        dev = oh.DeveloperContent.new()
        if conv.instructions():
            dev = dev.with_instructions(conv.instructions())
        if conv.tools:
            dev = dev.with_function_tools(tool_descriptions(conv.tools))
        msgs.append(oh.Message.from_role_and_content(oh.Role.DEVELOPER, dev))
    for m in h.visible_messages(conv.messages, mode):
        if m.role == "tool":
            msg = oh.Message.from_author_and_content(oh.Author.new(oh.Role.TOOL, m.name), m.content)
        else:
            msg = oh.Message.from_role_and_content(oh.Role(m.role), m.content)
        if m.channel:
            msg = msg.with_channel(m.channel)
        if m.recipient:
            msg = msg.with_recipient(m.recipient)
        if m.content_type:
            msg = msg.with_content_type(m.content_type)
        msgs.append(msg)
    return msgs


def openai_harmony_ids(conv: h.Conversation, mode: str = "train") -> list[int]:
    ohconv = oh.Conversation.from_messages(messages(conv, mode))
    keep = oh.RenderConversationConfig(auto_drop_analysis=False)
    if mode == "prompt":
        return ENC.render_conversation_for_completion(ohconv, oh.Role.ASSISTANT, keep)
    return ENC.render_conversation_for_training(ohconv, keep)


def parsed_by_openai_harmony(ids: list[int], role: str | None = None) -> list[tuple]:
    """openai-harmony's parse of a completion, as (role, author name, channel, recipient, content type, text)."""
    out = []
    for m in ENC.parse_messages_from_completion_tokens(ids, None if role is None else oh.Role(role)):
        text = "".join(c.text for c in m.content)
        out.append((m.author.role.value, m.author.name, m.channel, m.recipient, m.content_type, text))
    return out


def as_reference_tuples(msgs: list[h.Message]) -> list[tuple]:
    """Our parsed messages in the shape of `parsed_by_openai_harmony`."""
    return [
        (
            m.role,
            m.name if m.role == "tool" else None,
            m.channel,
            m.recipient,
            m.content_type,
            m.content,
        )
        for m in msgs
    ]
