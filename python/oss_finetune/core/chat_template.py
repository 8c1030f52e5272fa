"""The Harmony chat template that exports carry when the tokenizer brings none (the vendored one does not).

Serving stacks (transformers' apply_chat_template, llama.cpp's server) turn a list of messages into tokens
with the template stored beside the weights. This one writes what ``core.harmony.render`` writes for
the same chat read as a data row (``core.data``), tools included:

- the system message with the reasoning effort (``reasoning_effort``, default medium), the date when
  ``current_date`` is given, and the line sending calls to the commentary channel when there are tools;
- the developer message: ``system`` and ``developer`` messages joined as the instructions, then
  ``# Tools`` with the function tools (``tools``, OpenAI's wrapped or the bare form) as the TypeScript-like
  namespace core.harmony writes, parameter schema by schema;
- user turns; assistant turns: ``thinking`` (or ``reasoning_content``) as analysis, kept only after the
  last final answer or, in a whole conversation, in its last turn; ``content`` as the final answer, or as
  a commentary preamble beside ``tool_calls``; each call as ``to=functions.NAME ... <|constrain|>json``
  ending with ``<|call|>``, its arguments as given or, from a dict, as JSON;
- ``tool`` results authored by ``functions.NAME``: their ``name``, else the call their ``tool_call_id``
  names, else the call before them;
- ``<|start|>assistant`` as the generation prompt; with it the trailing assistant messages are left out,
  as in a prompt render, and without it the last final answer ends with ``<|return|>``.

Rendered text is tokenized by the engine, so special-token text inside a message (``<|end|>`` typed out)
becomes structure there, where core.harmony encodes it as characters. Parameters given as JSON text
rather than an object are not read (the data path parses them; Jinja cannot). Schemas nest through
recursive macros, which Jinja2, minja and llama.cpp's own engine all support.
python/tests/test_chat_template.py checks it token for token against core.harmony; docs/export.md says
which engines render the same text, and where they print floats otherwise.
"""

from __future__ import annotations

# Newlines come from expressions, never from text right after a block tag, so that the template renders the
# same with and without trim_blocks (transformers sets it; other engines may not). Dict keys are read with
# `"key" in d` first: Jinja2 answers a missing `d["items"]` with the dict's own method.
HARMONY_CHAT_TEMPLATE = r"""
{#- A JSON value as serde_json writes it (compact; floats as ryu lays them out), for defaults. -#}
{%- macro json_value(v) -%}
{%- if v is boolean or v is none or v is string -%}{{- v | tojson -}}
{%- elif v is float -%}
{#- Whole numbers are spelled out, as engines that print floats with six digits (llama.cpp's) would round them. -#}
{%- set text = v | tojson -%}
{%- if v == 0 -%}{{- "-0.0" if text.startswith("-") else "0.0" -}}
{%- elif v > -10000000000000000 and v < 10000000000000000 and v == v | int -%}{{- (v | int | string) ~ ".0" -}}
{%- elif "e" in text -%}
{%- set mantissa = text.split("e")[0] -%}{%- set exponent = text.split("e")[1] -%}
{%- if exponent == "-05" -%}
{{- ("-" if mantissa.startswith("-") else "") ~ "0.0000" ~ mantissa.replace("-", "").replace(".", "") -}}
{%- elif exponent.startswith("-0") -%}{{- mantissa ~ "e-" ~ exponent[2:] -}}
{%- else -%}{{- mantissa ~ "e" ~ exponent.replace("+", "") -}}
{%- endif -%}
{%- else -%}{{- text -}}
{%- endif -%}
{%- elif v is number -%}{{- v | tojson -}}
{%- elif v is mapping -%}
{{- "{" -}}
{%- for key, item in v.items() -%}{{- ("," if not loop.first else "") ~ (key | tojson) ~ ":" ~ json_value(item) -}}{%- endfor -%}
{{- "}" -}}
{%- else -%}
{{- "[" -}}
{%- for item in v -%}{{- ("," if not loop.first else "") ~ json_value(item) -}}{%- endfor -%}
{{- "]" -}}
{%- endif -%}
{%- endmacro -%}

{#- A string default is quoted unless an enum's values already read as literals; a variant's enum default is JSON. -#}
{%- macro default_note(spec, quote_enum) -%}
{%- set value = spec["default"] -%}
{%- set values = spec["enum"] if "enum" in spec else none -%}
{%- set is_enum = values is iterable and values is not string and values is not mapping and values | length > 0 -%}
{%- if value is string and not is_enum -%}{{- 'default: "' ~ value ~ '"' -}}
{%- elif value is string and not quote_enum -%}{{- "default: " ~ value -}}
{%- else -%}{{- "default: " ~ json_value(value) -}}
{%- endif -%}
{%- endmacro -%}

{%- macro nullable(spec, text) -%}
{%- set flag = spec["nullable"] if "nullable" in spec else none -%}
{{- text ~ (" | null" if flag is boolean and flag and "null" not in text else "") -}}
{%- endmacro -%}

{%- macro ts_type(schema, indent) -%}
{%- set spec = schema if schema is mapping else {} -%}
{%- set variants = spec["oneOf"] if "oneOf" in spec else none -%}
{%- set kind = spec["type"] if "type" in spec else none -%}
{%- set names = namespace(text="", count=0) -%}
{%- if kind is iterable and kind is not string and kind is not mapping -%}
{%- for k in kind -%}{%- if k is string -%}
{%- set names.text = names.text ~ (" | " if names.count else "") ~ ("number" if k == "integer" else k) -%}
{%- set names.count = names.count + 1 -%}
{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- if variants is iterable and variants is not string and variants is not mapping -%}
{%- for variant in variants -%}
{%- set vspec = variant if variant is mapping else {} -%}
{%- set vdesc = vspec["description"] if "description" in vspec and vspec["description"] is string else none -%}
{{- "\n" ~ indent ~ " | " ~ nullable(vspec, ts_type(variant, indent ~ "   ")) -}}
{%- if vdesc is not none or "default" in vspec -%}{{- " //" -}}{%- endif -%}
{%- if vdesc is not none -%}{{- " " ~ vdesc -}}{%- endif -%}
{%- if "default" in vspec -%}{{- " " ~ default_note(vspec, true) -}}{%- endif -%}
{%- endfor -%}
{%- elif names.count -%}{{- names.text -}}
{%- elif kind == "object" -%}
{%- if "description" in spec and spec["description"] is string -%}{{- indent ~ "// " ~ spec["description"] ~ "\n" -}}{%- endif -%}
{{- "{\n" -}}
{%- set props = spec["properties"] if "properties" in spec else none -%}
{%- if props is mapping -%}
{%- set required = spec["required"] if "required" in spec else none -%}
{%- set required = required if required is iterable and required is not string and required is not mapping else [] -%}
{%- for key, prop in props.items() -%}{{- ts_property(key, prop, required, indent) -}}{%- endfor -%}
{%- endif -%}
{{- indent ~ "}" -}}
{%- elif kind == "string" -%}
{%- set values = spec["enum"] if "enum" in spec else none -%}
{%- set literals = namespace(text="", count=0) -%}
{%- if values is iterable and values is not string and values is not mapping -%}
{%- for v in values -%}{%- if v is string -%}
{%- set literals.text = literals.text ~ (" | " if literals.count else "") ~ '"' ~ v ~ '"' -%}
{%- set literals.count = literals.count + 1 -%}
{%- endif -%}{%- endfor -%}
{%- endif -%}
{{- literals.text if literals.count else "string" -}}
{%- elif kind == "number" or kind == "integer" -%}{{- "number" -}}
{%- elif kind == "boolean" -%}{{- "boolean" -}}
{%- elif kind == "array" -%}{{- ts_type(spec["items"], indent) ~ "[]" if "items" in spec else "Array<any>" -}}
{%- else -%}{{- "any" -}}
{%- endif -%}
{%- endmacro -%}

{%- macro ts_property(key, schema, required, indent) -%}
{%- set spec = schema if schema is mapping else {} -%}
{%- set mark = "" if key in required else "?" -%}
{%- set desc = spec["description"] if "description" in spec and spec["description"] is string else none -%}
{%- set variants = spec["oneOf"] if "oneOf" in spec else none -%}
{%- if "title" in spec and spec["title"] is string -%}{{- indent ~ "// " ~ spec["title"] ~ "\n" ~ indent ~ "//\n" -}}{%- endif -%}
{%- if "oneOf" not in spec and desc is not none -%}{{- indent ~ "// " ~ desc ~ "\n" -}}{%- endif -%}
{%- set examples = spec["examples"] if "examples" in spec else none -%}
{%- if examples is iterable and examples is not string and examples is not mapping and examples | length > 0 -%}
{{- indent ~ "// Examples:\n" -}}
{%- for example in examples -%}{%- if example is string -%}{{- indent ~ '// - "' ~ example ~ '"\n' -}}{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- if variants is iterable and variants is not string and variants is not mapping -%}
{%- set first = variants[0] if variants | length > 0 and variants[0] is mapping else {} -%}
{%- set first_desc = first["description"] if "description" in first and first["description"] is string else none -%}
{%- set desc_above = desc is not none and not (first_desc is not none and first_desc == desc) -%}
{%- if desc_above -%}{{- indent ~ "// " ~ desc ~ "\n" -}}{%- endif -%}
{%- if "default" in spec -%}{{- indent ~ "// " ~ default_note(spec, false) ~ "\n" -}}{%- endif -%}
{{- indent ~ key ~ mark ~ ":\n" -}}
{%- for variant in variants -%}
{%- set vspec = variant if variant is mapping else {} -%}
{%- set vdesc = vspec["description"] if "description" in vspec and vspec["description"] is string else none -%}
{%- set show_desc = not (loop.first and desc_above) and vdesc is not none and not (desc is not none and vdesc == desc) -%}
{{- indent ~ " | " ~ nullable(vspec, ts_type(variant, indent ~ "   ")) -}}
{%- if show_desc or "default" in vspec -%}{{- " //" -}}{%- endif -%}
{%- if show_desc -%}{{- " " ~ vdesc -}}{%- endif -%}
{%- if "default" in vspec -%}{{- " " ~ default_note(vspec, false) -}}{%- endif -%}
{{- "\n" -}}
{%- endfor -%}
{{- indent ~ ",\n" -}}
{%- else -%}
{{- indent ~ key ~ mark ~ ": " ~ nullable(spec, ts_type(spec, indent ~ "    ")) ~ "," -}}
{%- if "oneOf" not in spec and "default" in spec -%}{{- " // " ~ default_note(spec, false) -}}{%- endif -%}
{{- "\n" -}}
{%- endif -%}
{%- endmacro -%}

{%- macro tools_namespace(tools) -%}
{{- "## functions\n\nnamespace functions {\n\n" -}}
{%- for tool in tools -%}
{%- if tool is not mapping or ("type" in tool and tool["type"] != "function") -%}
{{- raise_exception("this Harmony template renders function tools only") -}}
{%- endif -%}
{%- set fn = tool["function"] if "function" in tool and tool["function"] is mapping else tool -%}
{%- set description = fn["description"] if "description" in fn and fn["description"] is string else "" -%}
{%- set lines = description.split("\n") -%}
{%- for line in lines -%}
{%- if not loop.last -%}{{- "// " ~ (line[:-1] if line.endswith("\r") else line) ~ "\n" -}}
{%- elif line -%}{{- "// " ~ line ~ "\n" -}}
{%- endif -%}
{%- endfor -%}
{%- set params = fn["parameters"] if "parameters" in fn else none -%}
{%- if params is none -%}{{- "type " ~ fn["name"] ~ " = () => any;\n\n" -}}
{%- else -%}{{- "type " ~ fn["name"] ~ " = (_: " ~ ts_type(params, "") ~ ") => any;\n\n" -}}
{%- endif -%}
{%- endfor -%}
{{- "} // namespace functions" -}}
{%- endmacro -%}

{%- set effort = reasoning_effort if reasoning_effort is defined and reasoning_effort else "medium" -%}
{%- set has_tools = tools is defined and tools is not none and tools | length > 0 -%}
{%- set state = namespace(instructions="", instruction_parts=0, last_user=-1, last_input=-1, last_shown=-1, last_final=-1, last_call="") -%}
{%- for m in messages -%}
{%- if m.role == "system" or m.role == "developer" -%}
{%- set state.instructions = state.instructions ~ ("\n\n" if state.instruction_parts else "") ~ m.content -%}
{%- set state.instruction_parts = state.instruction_parts + 1 -%}
{%- else -%}
{%- set state.last_shown = loop.index0 -%}
{%- endif -%}
{%- if m.role == "user" -%}{%- set state.last_user = loop.index0 -%}{%- endif -%}
{%- if m.role == "user" or m.role == "tool" -%}{%- set state.last_input = loop.index0 -%}{%- endif -%}
{%- endfor -%}
{#- A prompt asks for the trailing assistant messages, so it leaves them out. -#}
{%- set shown_until = state.last_input + 1 if add_generation_prompt else messages | length -%}
{%- for m in messages -%}
{%- if m.role == "assistant" and loop.index0 < shown_until and not ("tool_calls" in m and m.tool_calls) -%}
{%- set state.last_final = loop.index0 -%}
{%- endif -%}
{%- endfor -%}
{#- A data set's instructions that name the language only after blank space get the line in front too. -#}
{%- set instructions = state.instructions -%}
{%- if instructions and not instructions.lower().startswith("reasoning language:") and instructions.lstrip().lower().startswith("reasoning language:") -%}
{%- set language = instructions.lstrip()[19:].lstrip().split("\n")[0].rstrip() -%}
{%- if language -%}{%- set instructions = "reasoning language: " ~ language ~ "\n\n" ~ instructions -%}{%- endif -%}
{%- endif -%}

{{- "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n" -}}
{%- if current_date is defined and current_date -%}{{- "Current date: " ~ current_date ~ "\n" -}}{%- endif -%}
{{- "\nReasoning: " ~ effort ~ "\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message." -}}
{%- if has_tools -%}{{- "\nCalls to these tools must go to the commentary channel: 'functions'." -}}{%- endif -%}
{{- "<|end|>" -}}
{%- if instructions or has_tools -%}
{{- "<|start|>developer<|message|>" -}}
{%- if instructions -%}{{- "# Instructions\n\n" ~ instructions -}}{%- endif -%}
{%- if instructions and has_tools -%}{{- "\n\n" -}}{%- endif -%}
{%- if has_tools -%}{{- "# Tools\n\n" ~ tools_namespace(tools) -}}{%- endif -%}
{{- "<|end|>" -}}
{%- endif -%}

{%- for m in messages -%}
{%- set i = loop.index0 -%}
{%- if m.role == "system" or m.role == "developer" -%}
{%- elif m.role == "user" -%}
{{- "<|start|>user<|message|>" ~ m.content ~ "<|end|>" -}}
{%- elif m.role == "tool" -%}
{%- set author = namespace(name="") -%}
{%- if "name" in m and m.name -%}
{%- set author.name = m.name if m.name.startswith("functions.") else "functions." ~ m.name -%}
{%- elif "tool_call_id" in m and m.tool_call_id -%}
{%- for earlier in messages[:i] -%}
{%- if earlier.role == "assistant" and "tool_calls" in earlier and earlier.tool_calls -%}
{%- for call in earlier.tool_calls -%}
{%- if "id" in call and call.id == m.tool_call_id -%}
{%- set author.name = "functions." ~ (call.function.name if "function" in call else call.name) -%}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- set author.name = author.name or state.last_call -%}
{%- if not author.name -%}
{{- raise_exception("a tool result needs the tool's name, and no tool call comes before it") -}}
{%- endif -%}
{%- set content = m.content if m.content is string else m.content | tojson -%}
{{- "<|start|>" ~ author.name ~ " to=assistant<|channel|>commentary<|message|>" ~ content ~ "<|end|>" -}}
{%- elif m.role == "assistant" -%}
{%- if i < shown_until -%}
{%- set thinking = m.thinking if "thinking" in m else (m.reasoning_content if "reasoning_content" in m else none) -%}
{%- set calls = m.tool_calls if "tool_calls" in m and m.tool_calls else [] -%}
{%- set content = m.content if "content" in m and m.content is not none else none -%}
{#- Reasoning goes once a later final answer exists; a whole conversation's last turn keeps it. -#}
{%- if thinking and (i > state.last_final or (not add_generation_prompt and i > state.last_user)) -%}
{{- "<|start|>assistant<|channel|>analysis<|message|>" ~ thinking ~ "<|end|>" -}}
{%- endif -%}
{%- if calls -%}
{%- if content -%}{{- "<|start|>assistant<|channel|>commentary<|message|>" ~ content ~ "<|end|>" -}}{%- endif -%}
{%- for call in calls -%}
{%- set fn = call.function if "function" in call else call -%}
{%- set arguments = fn.arguments if "arguments" in fn else {} -%}
{%- set state.last_call = "functions." ~ fn.name -%}
{{- "<|start|>assistant to=" ~ state.last_call ~ "<|channel|>commentary <|constrain|>json<|message|>" -}}
{{- (arguments if arguments is string else arguments | tojson) ~ "<|call|>" -}}
{%- endfor -%}
{%- else -%}
{%- set ending = "<|return|>" if i == state.last_shown and not add_generation_prompt else "<|end|>" -%}
{{- "<|start|>assistant<|channel|>final<|message|>" ~ (content or "") ~ ending -}}
{%- endif -%}
{%- endif -%}
{%- else -%}
{{- raise_exception("this Harmony template knows the roles system, developer, user, assistant and tool, not " ~ m.role) -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- "<|start|>assistant" -}}{%- endif -%}
"""
