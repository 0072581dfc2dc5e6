"""The chat template every babyllama tokenizer carries (Jinja, as `transformers` renders it).

It uses the chat tokens reserved when the tokenizer was trained, so fine-tuning never resizes the embeddings:

    <s><|system|>You are kind.<|end|><|user|>Hi<|end|><|assistant|>Hello!<|end|>

The assistant's words *and* its closing <|end|> sit inside {% generation %} ... {% endgeneration %}, so
`return_assistant_tokens_mask` (and TRL's `assistant_only_loss`) trains exactly those tokens: the answer, and the
token that makes the model stop.
"""

CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "<|system|>{{ message['content'] }}<|end|>"
    "{%- elif message['role'] == 'user' -%}"
    "<|user|>{{ message['content'] }}<|end|>"
    "{%- elif message['role'] == 'assistant' -%}"
    "<|assistant|>{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}"
    "{%- else -%}"
    "{{ raise_exception('unknown chat role: ' ~ message['role'] ~ ' (use system, user or assistant)') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)

END_OF_TURN = "<|end|>"
