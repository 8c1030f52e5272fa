"""The Harmony chat template that exports carry when the tokenizer brings none (the vendored one does not).

Serving stacks (transformers' apply_chat_template, vLLM, llama.cpp, Ollama) turn a list of messages into
tokens with the template stored beside the weights. This one writes what ``core.harmony.render`` writes
for a chat without tools: the system message with the reasoning effort (``reasoning_effort``, default
medium), the developer's instructions from a ``system`` or ``developer`` message, user turns, earlier
assistant turns (their ``thinking`` only on the last turn, as Harmony drops reasoning once a final
answer exists), and ``<|start|>assistant`` as the generation prompt. Tools are refused rather than
rendered half right. python/tests/test_export.py checks it token for token against core.harmony.
"""

from __future__ import annotations

# Newlines come from text and expressions, never right after a block tag, so that the template renders the
# same with and without trim_blocks (transformers sets it; other engines may not).
HARMONY_CHAT_TEMPLATE = """\
{%- if tools -%}{{ raise_exception("this Harmony template renders chats without tools") }}{%- endif -%}
{%- set effort = reasoning_effort if reasoning_effort is defined and reasoning_effort else "medium" -%}
{%- set date = "Current date: " + current_date + "\n" if current_date is defined and current_date else "" -%}
<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.
Knowledge cutoff: 2024-06
{{ date }}
Reasoning: {{ effort }}

# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>
{%- set ns = namespace(last_user=-1) -%}
{%- for m in messages -%}{%- if m.role == "user" -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}{%- endfor -%}
{%- for m in messages -%}
{%- if m.role in ("system", "developer") -%}
<|start|>developer<|message|># Instructions

{{ m.content }}<|end|>
{%- elif m.role == "user" -%}
<|start|>user<|message|>{{ m.content }}<|end|>
{%- elif m.role == "assistant" -%}
{%- if m.thinking and loop.index0 > ns.last_user -%}
<|start|>assistant<|channel|>analysis<|message|>{{ m.thinking }}<|end|>
{%- endif -%}
<|start|>assistant<|channel|>final<|message|>{{ m.content }}{{ "<|return|>" if loop.last and not add_generation_prompt else "<|end|>" }}
{%- else -%}
{{ raise_exception("this Harmony template knows the roles system, developer, user and assistant, not " + m.role) }}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}<|start|>assistant{%- endif -%}
"""
